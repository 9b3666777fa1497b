// The fused LoRA kernels (lora.h), written once and included by fused_hw.cpp (fused_variant.h) in one namespace
// per variant, after it defines LORA_VW (floats per vector), LORA_NT (tokens per dot tile),
// LORA_NJ (vectors per rank-update tile), LORA_OR and LORA_OJ (rows and vectors per
// outer-product tile) and, for the wide variants, a target pragma. No include guard: by design.
//
// Layouts (ggml order, the first index fastest; row strides in floats from nb[1]):
//   x, mask, dx, dx_base [n_in, T]    y, y_base, dy [n_out, T]    t, dt [r, T]
//   A [n_in, r] (row k of A: n_in floats)   B [r, n_out]   dA [n_in, r]   dB [r, n_out]
//
// Three product shapes, each one F32 sum per output element in a fixed order:
//   dot      out[k, τ] = c · Σ_i M[k][i] · X[i, τ] (⊙ mask)      t = A·xd, dt = s·Bᵀ·dy
//   update   out[j, τ] = base[j, τ] + c · (Σ_k Mt[k][j] · C[k, τ]) (⊙ mask)   y, dx
//   outer    G[k][j]  += c · Σ_τ C[k, τ] · Y[j, τ] (⊙ mask)       gb += s·t·dyᵀ, ga += xd·dtᵀ
// where Bt [r][n_out] is B transposed by the op (r·n_out floats, per thread that needs it).

typedef float vf __attribute__((vector_size(LORA_VW * 4)));

constexpr int64_t VW = LORA_VW;  // floats per vector
constexpr int     NT = LORA_NT;  // tokens per dot tile
constexpr int     NJ = LORA_NJ;  // vectors per update / outer tile
constexpr int     MR = 4;        // rows (k) per dot tile
constexpr int     OR = LORA_OR;  // rows (k) per outer tile
constexpr int     OJ = LORA_OJ;  // vectors per outer tile
constexpr int64_t CW = 128;      // inputs per chunk of backward_a (a multiple of every variant's NJ·VW)

inline vf vload(const float * p) {
    vf v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline void vstore(float * p, vf v) { std::memcpy(p, &v, sizeof v); }

inline vf vsplat(float s) { return s - vf{}; }  // a broadcast (x - 0 is x for every x; vf{} + s would add 0.0 first)

inline float hsum(vf v) {
    float s = 0.0f;
#pragma GCC unroll 16
    for (int l = 0; l < VW; l++) s += v[l];
    return s;
}

struct mat {  // a row-major view: element (i, τ) at p[i + τ·ld]
    const float * p  = nullptr;
    int64_t       ld = 0;
};

// --- dot ---------------------------------------------------------------------------------------

// out[k + τ·ldo] = c · Σ_i M[k·ldm + i] · X(i, τ) (· mask(i, τ)) for k < R_, τ < N_
template <int R_, int N_, bool MASK>
inline void dot_tile(int64_t K, const float * m, int64_t ldm, mat x, mat mask, float c, float * out, int64_t ldo) {
    vf      acc[R_][N_];
    int64_t i = 0;
#pragma GCC unroll 8
    for (int k = 0; k < R_; k++) {
#pragma GCC unroll 8
        for (int n = 0; n < N_; n++) acc[k][n] = vf{};
    }
    for (; i + VW <= K; i += VW) {
        vf xv[N_];
#pragma GCC unroll 8
        for (int n = 0; n < N_; n++) {
            xv[n] = vload(x.p + i + n * x.ld);
            if (MASK) xv[n] *= vload(mask.p + i + n * mask.ld);
        }
#pragma GCC unroll 8
        for (int k = 0; k < R_; k++) {
            const vf mv = vload(m + k * ldm + i);
#pragma GCC unroll 8
            for (int n = 0; n < N_; n++) acc[k][n] += mv * xv[n];
        }
    }
#pragma GCC unroll 8
    for (int k = 0; k < R_; k++) {
#pragma GCC unroll 8
        for (int n = 0; n < N_; n++) {
            float s = hsum(acc[k][n]);
            for (int64_t j = i; j < K; j++) s += m[k * ldm + j] * (MASK ? x.p[j + n * x.ld] * mask.p[j + n * mask.ld] : x.p[j + n * x.ld]);
            out[k + n * ldo] = c * s;
        }
    }
}

template <int N_, bool MASK>
inline void dot_rows(int64_t R, int64_t K, const float * m, int64_t ldm, mat x, mat mask, float c, float * out, int64_t ldo) {
    int64_t k0 = 0;
    for (; k0 + MR <= R; k0 += MR) dot_tile<MR, N_, MASK>(K, m + k0 * ldm, ldm, x, mask, c, out + k0, ldo);
    switch (R - k0) {
        case 3: dot_tile<3, N_, MASK>(K, m + k0 * ldm, ldm, x, mask, c, out + k0, ldo); break;
        case 2: dot_tile<2, N_, MASK>(K, m + k0 * ldm, ldm, x, mask, c, out + k0, ldo); break;
        case 1: dot_tile<1, N_, MASK>(K, m + k0 * ldm, ldm, x, mask, c, out + k0, ldo); break;
        default: break;
    }
}

// out[k + τ·ldo] = c · Σ_i M[k·ldm + i] · X(i, τ) (· mask) for k < R, τ in [t0, t1)
template <bool MASK>
void dot(int64_t R, int64_t K, const float * m, int64_t ldm, mat x, mat mask, float c, float * out, int64_t ldo, int64_t t0, int64_t t1) {
    int64_t t = t0;
    for (; t + NT <= t1; t += NT)
        dot_rows<NT, MASK>(R, K, m, ldm, {x.p + t * x.ld, x.ld}, {mask.p + (MASK ? t * mask.ld : 0), mask.ld}, c, out + t * ldo, ldo);
    for (; t < t1; t++)
        dot_rows<1, MASK>(R, K, m, ldm, {x.p + t * x.ld, x.ld}, {mask.p + (MASK ? t * mask.ld : 0), mask.ld}, c, out + t * ldo, ldo);
}

// --- update ------------------------------------------------------------------------------------

// out(j, τ) = base(j, τ) + c · Σ_k Mt[k·ldmt + j] · C[k + τ·ldc] (· mask(j, τ)) for the N_ tokens
// from τ = 0 and j in [0, N): NJ-vector tiles, then single vectors, then scalars.
template <int N_, bool MASK>
void update_tokens(int64_t       N,
                   int64_t       R,
                   const float * mt,
                   int64_t       ldmt,
                   const float * cc,
                   int64_t       ldc,
                   float         c,
                   mat           base,
                   mat           mask,
                   float *       out,
                   int64_t       ldo) {
    int64_t j = 0;
    for (; j + NJ * VW <= N; j += NJ * VW) {
        vf acc[N_][NJ];
#pragma GCC unroll 8
        for (int n = 0; n < N_; n++) {
#pragma GCC unroll 8
            for (int v = 0; v < NJ; v++) acc[n][v] = vf{};
        }
        for (int64_t k = 0; k < R; k++) {
            vf bv[NJ];
#pragma GCC unroll 8
            for (int v = 0; v < NJ; v++) bv[v] = vload(mt + k * ldmt + j + v * VW);
#pragma GCC unroll 8
            for (int n = 0; n < N_; n++) {
                const vf s = vsplat(cc[k + n * ldc]);
#pragma GCC unroll 8
                for (int v = 0; v < NJ; v++) acc[n][v] += bv[v] * s;
            }
        }
#pragma GCC unroll 8
        for (int n = 0; n < N_; n++) {
#pragma GCC unroll 8
            for (int v = 0; v < NJ; v++) {
                const int64_t o = j + v * VW;
                vf            u = acc[n][v] * c;
                if (MASK) u *= vload(mask.p + o + n * mask.ld);
                vstore(out + o + n * ldo, vload(base.p + o + n * base.ld) + u);
            }
        }
    }
    for (; j + VW <= N; j += VW) {
        vf acc[N_];
#pragma GCC unroll 8
        for (int n = 0; n < N_; n++) acc[n] = vf{};
        for (int64_t k = 0; k < R; k++) {
            const vf bv = vload(mt + k * ldmt + j);
#pragma GCC unroll 8
            for (int n = 0; n < N_; n++) acc[n] += bv * vsplat(cc[k + n * ldc]);
        }
#pragma GCC unroll 8
        for (int n = 0; n < N_; n++) {
            vf u = acc[n] * c;
            if (MASK) u *= vload(mask.p + j + n * mask.ld);
            vstore(out + j + n * ldo, vload(base.p + j + n * base.ld) + u);
        }
    }
    for (; j < N; j++) {
        for (int n = 0; n < N_; n++) {
            float s = 0.0f;
            for (int64_t k = 0; k < R; k++) s += mt[k * ldmt + j] * cc[k + n * ldc];
            float u = s * c;
            if (MASK) u *= mask.p[j + n * mask.ld];
            out[j + n * ldo] = base.p[j + n * base.ld] + u;
        }
    }
}

// the update for τ in [t0, t1), NT tokens at a time
template <bool MASK>
void update(int64_t       N,
            int64_t       R,
            const float * mt,
            int64_t       ldmt,
            const float * cc,
            int64_t       ldc,
            float         c,
            mat           base,
            mat           mask,
            float *       out,
            int64_t       ldo,
            int64_t       t0,
            int64_t       t1) {
    int64_t t = t0;
    for (; t + NT <= t1; t += NT)
        update_tokens<NT, MASK>(N, R, mt, ldmt, cc + t * ldc, ldc, c, {base.p + t * base.ld, base.ld},
                                {mask.p + (MASK ? t * mask.ld : 0), mask.ld}, out + t * ldo, ldo);
    for (; t < t1; t++)
        update_tokens<1, MASK>(N, R, mt, ldmt, cc + t * ldc, ldc, c, {base.p + t * base.ld, base.ld},
                               {mask.p + (MASK ? t * mask.ld : 0), mask.ld}, out + t * ldo, ldo);
}

// --- outer -------------------------------------------------------------------------------------

// G[k·gk + j·gj] = c · Σ_τ C[k + τ·ldc] · Y(j, τ) (· mask) for k < R_, V_ vectors of j from 0
template <int R_, int V_, bool MASK>
inline void outer_tile(int64_t T, const float * cc, int64_t ldc, mat y, mat mask, float c, float * g, int64_t gk, int64_t gj, bool acc_g) {
    vf acc[R_][V_];
#pragma GCC unroll 8
    for (int k = 0; k < R_; k++) {
#pragma GCC unroll 8
        for (int v = 0; v < V_; v++) acc[k][v] = vf{};
    }
    for (int64_t t = 0; t < T; t++) {
        vf yv[V_];
#pragma GCC unroll 8
        for (int v = 0; v < V_; v++) {
            yv[v] = vload(y.p + t * y.ld + v * VW);
            if (MASK) yv[v] *= vload(mask.p + t * mask.ld + v * VW);
        }
#pragma GCC unroll 8
        for (int k = 0; k < R_; k++) {
            const vf s = vsplat(cc[k + t * ldc]);
#pragma GCC unroll 8
            for (int v = 0; v < V_; v++) acc[k][v] += yv[v] * s;
        }
    }
#pragma GCC unroll 8
    for (int k = 0; k < R_; k++) {
#pragma GCC unroll 8
        for (int v = 0; v < V_; v++) {
            const vf r = acc[k][v] * c;
            if (gj == 1) {
                float * o = g + k * gk + v * VW;
                vstore(o, acc_g ? vload(o) + r : r);
            } else {
                for (int l = 0; l < VW; l++) {
                    float & o = g[k * gk + (v * VW + l) * gj];
                    o         = acc_g ? o + r[l] : r[l];
                }
            }
        }
    }
}

template <int V_, bool MASK>
inline void
outer_rows(int64_t R, int64_t T, const float * cc, int64_t ldc, mat y, mat mask, float c, float * g, int64_t gk, int64_t gj, bool acc_g) {
    int64_t k0 = 0;
    for (; k0 + OR <= R; k0 += OR) outer_tile<OR, V_, MASK>(T, cc + k0, ldc, y, mask, c, g + k0 * gk, gk, gj, acc_g);
    switch (R - k0) {
        case 3: outer_tile<3, V_, MASK>(T, cc + k0, ldc, y, mask, c, g + k0 * gk, gk, gj, acc_g); break;
        case 2: outer_tile<2, V_, MASK>(T, cc + k0, ldc, y, mask, c, g + k0 * gk, gk, gj, acc_g); break;
        case 1: outer_tile<1, V_, MASK>(T, cc + k0, ldc, y, mask, c, g + k0 * gk, gk, gj, acc_g); break;
        default: break;
    }
}

// G for j in [j0, j1): NJ-vector tiles, single vectors, then scalars; acc_g: G += instead of =
template <bool MASK>
void outer(int64_t       R,
           int64_t       T,
           const float * cc,
           int64_t       ldc,
           mat           y,
           mat           mask,
           float         c,
           float *       g,
           int64_t       gk,
           int64_t       gj,
           int64_t       j0,
           int64_t       j1,
           bool          acc_g) {
    int64_t j = j0;
    for (; j + OJ * VW <= j1; j += OJ * VW)
        outer_rows<OJ, MASK>(R, T, cc, ldc, {y.p + j, y.ld}, {mask.p + (MASK ? j : 0), mask.ld}, c, g + j * gj, gk, gj, acc_g);
    for (; j + VW <= j1; j += VW)
        outer_rows<1, MASK>(R, T, cc, ldc, {y.p + j, y.ld}, {mask.p + (MASK ? j : 0), mask.ld}, c, g + j * gj, gk, gj, acc_g);
    for (; j < j1; j++) {
        for (int64_t k = 0; k < R; k++) {
            float s = 0.0f;
            for (int64_t t = 0; t < T; t++) s += cc[k + t * ldc] * (MASK ? y.p[j + t * y.ld] * mask.p[j + t * mask.ld] : y.p[j + t * y.ld]);
            float & o = g[k * gk + j * gj];
            o         = acc_g ? o + c * s : c * s;
        }
    }
}

// --- the ops -----------------------------------------------------------------------------------

mat view_of(const ggml_tensor * t) { return t ? mat{(const float *) t->data, (int64_t) (t->nb[1] / sizeof(float))} : mat{}; }

// [lo, hi) of n for thread ith of nth, in multiples of `step` (the last part takes the rest)
void split(int64_t n, int64_t step, int ith, int nth, int64_t & lo, int64_t & hi) {
    const int64_t blocks = (n + step - 1) / step;
    lo                   = std::min(n, blocks * ith / nth * step);
    hi                   = std::min(n, blocks * (ith + 1) / nth * step);
}

// B [r, n_out] -> Bt [r][n_out]
std::vector<float> transpose_b(const ggml_tensor * b) {
    const int64_t      r = b->ne[0], n = b->ne[1];
    const float *      B = (const float *) b->data;
    std::vector<float> bt((size_t) (r * n));
    for (int64_t j = 0; j < n; j++)
        for (int64_t k = 0; k < r; k++) bt[(size_t) (k * n + j)] = B[j * r + k];
    return bt;
}

// dst = t [r, T]; src: x, a, mask or null. Split over tokens.
void forward_t(ggml_tensor * dst, float, int ith, int nth) {
    const ggml_tensor *x = dst->src[0], *a = dst->src[1], *mk = dst->src[2];
    const int64_t      n_in = x->ne[0], T = x->ne[1], r = a->ne[1];
    float *            Tt = (float *) dst->data;
    int64_t            t0, t1;
    split(T, NT, ith, nth, t0, t1);
    if (t0 >= t1) return;
    const float * A = (const float *) a->data;
    if (mk)
        dot<true>(r, n_in, A, n_in, view_of(x), view_of(mk), 1.0f, Tt, r, t0, t1);
    else
        dot<false>(r, n_in, A, n_in, view_of(x), mat{}, 1.0f, Tt, r, t0, t1);
}

// dst = y [n_out, T], in place of y_base; src: y_base, t, b. y = y_base + s·B·t, split over tokens.
void forward_y(ggml_tensor * dst, float s, int ith, int nth) {
    const ggml_tensor *yb = dst->src[0], *t = dst->src[1], *b = dst->src[2];
    const int64_t      n_out = yb->ne[0], T = yb->ne[1], r = b->ne[0];
    int64_t            t0, t1;
    split(T, NT, ith, nth, t0, t1);
    if (t0 >= t1) return;
    const std::vector<float> bt = transpose_b(b);
    update<false>(n_out, r, bt.data(), n_out, (const float *) t->data, r, s, view_of(yb), mat{}, (float *) dst->data, n_out, t0, t1);
}

// dst = dt [r, T]; src: dy, t, b, gb (the adapter's dB accumulator [r, n_out]). dt = s·Bᵀ·dy over
// each thread's tokens; gb += s·t·dyᵀ over its outputs (each element by one thread).
void backward_b(ggml_tensor * dst, float s, int ith, int nth) {
    const ggml_tensor *dy = dst->src[0], *t = dst->src[1], *b = dst->src[2], *gb = dst->src[3];
    const int64_t      n_out = dy->ne[0], T = dy->ne[1], r = b->ne[0];
    int64_t            t0, t1, j0, j1;
    split(T, NT, ith, nth, t0, t1);
    split(n_out, VW * OJ, ith, nth, j0, j1);
    if (t0 < t1) {
        const std::vector<float> bt = transpose_b(b);
        dot<false>(r, n_out, bt.data(), n_out, view_of(dy), mat{}, s, (float *) dst->data, r, t0, t1);
    }
    if (j0 < j1) outer<false>(r, T, (const float *) t->data, r, view_of(dy), mat{}, s, (float *) gb->data, 1, r, j0, j1, true);
}

// dst = dx [n_in, T] in place of dx_base (a 1-float placeholder without dx_base); src: dx_base or
// null, dt, x, a, ga (the adapter's dA accumulator [n_in, r]), mask or null. Split over inputs, in
// chunks of CW inputs: ga += xd·dtᵀ for the chunk, then dx = dx_base + (Aᵀ·dt) ⊙ mask for the
// chunk over all tokens (its x and mask still in cache).
void backward_a(ggml_tensor * dst, int ith, int nth) {
    const ggml_tensor *db = dst->src[0], *dt = dst->src[1], *x = dst->src[2], *a = dst->src[3], *ga = dst->src[4], *mk = dst->src[5];
    const int64_t      n_in = x->ne[0], T = x->ne[1], r = a->ne[1];
    const float *      DT = (const float *) dt->data;
    const float *      A  = (const float *) a->data;
    float *            GA = (float *) ga->data;
    const mat          xv = view_of(x), mv = view_of(mk), bv = view_of(db);
    const int64_t      ldo = db ? (int64_t) (dst->nb[1] / sizeof(float)) : 0;
    int64_t            i0, i1;
    split(n_in, CW, ith, nth, i0, i1);
    for (int64_t c0 = i0; c0 < i1; c0 += CW) {
        const int64_t c1 = std::min(i1, c0 + CW);
        if (mk)
            outer<true>(r, T, DT, r, xv, mv, 1.0f, GA, n_in, 1, c0, c1, true);
        else
            outer<false>(r, T, DT, r, xv, mat{}, 1.0f, GA, n_in, 1, c0, c1, true);
        if (!db) continue;
        const mat base = {bv.p + c0, bv.ld};
        float *   out  = (float *) dst->data + c0;
        if (mk)
            update<true>(c1 - c0, r, A + c0, n_in, DT, r, 1.0f, base, {mv.p + c0, mv.ld}, out, ldo, 0, T);
        else
            update<false>(c1 - c0, r, A + c0, n_in, DT, r, 1.0f, base, mat{}, out, ldo, 0, T);
    }
}

const t2s::lora_kernels kernels = {forward_t, forward_y, backward_b, backward_a};
