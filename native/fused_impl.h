// The fused attention, SwiGLU and head kernels (fused.h), written once and included by fused_hw.cpp (fused_variant.h) inside one
// namespace per variant, after it defines FUSED_VW (floats per vector), FUSED_NV (vectors per
// micro-tile row) and FUSED_MR (rows per micro-tile) and, for the wide variants, a target pragma. No include guard: by design.
//
// Layouts (ggml order, the first index fastest):
//   q, d_o, dq  [hd, n_head, T]   k, v, dk, dv [hd, n_kv, T]   kt, vt [T_pad, hd, n_kv]
//   P, dS       [T_pad, T, n_head]: row i of head h holds keys 0..i, zeros after

typedef float vf __attribute__((vector_size(FUSED_VW * 4)));

constexpr int64_t VW = FUSED_VW;  // floats per vector
constexpr int     NV = FUSED_NV;  // vectors per micro-tile row
constexpr int     MR = FUSED_MR;  // rows per micro-tile
constexpr int64_t IB = 32;        // query (or key) rows per task

inline vf vload(const float * p) {
    vf v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline void vstore(float * p, vf v) { std::memcpy(p, &v, sizeof v); }

// C[M, N] (= or +=) A[M, K]·B[K, N] for M <= MR rows and N = NVT vectors:
// A(m, k) = a[m·lam + k·lak], B(k, n) = b[k·ldb + n], C(m, n) = c[m·ldc + n].
template <int M, int NVT>
inline void tile(int64_t K, const float * a, int64_t lam, int64_t lak, const float * b, int64_t ldb, float * c, int64_t ldc, bool acc) {
    vf r[M][NVT];
#pragma GCC unroll 8
    for (int m = 0; m < M; m++) {
#pragma GCC unroll 8
        for (int v = 0; v < NVT; v++) r[m][v] = acc ? vload(c + m * ldc + v * VW) : vf{};
    }
    for (int64_t k = 0; k < K; k++) {
        const float * bk = b + k * ldb;
        const float * ak = a + k * lak;
        vf            bv[NVT];
#pragma GCC unroll 8
        for (int v = 0; v < NVT; v++) bv[v] = vload(bk + v * VW);
#pragma GCC unroll 8
        for (int m = 0; m < M; m++) {
            const float s = ak[m * lam];
#pragma GCC unroll 8
            for (int v = 0; v < NVT; v++) r[m][v] += bv[v] * s;
        }
    }
#pragma GCC unroll 8
    for (int m = 0; m < M; m++) {
#pragma GCC unroll 8
        for (int v = 0; v < NVT; v++) vstore(c + m * ldc + v * VW, r[m][v]);
    }
}

// the last M < MR rows of gemm_rows: one tile of exactly M rows
template <int M, int NVT>
inline void tile_tail(int64_t       rows,
                      int64_t       K,
                      const float * a,
                      int64_t       lam,
                      int64_t       lak,
                      const float * b,
                      int64_t       ldb,
                      float *       c,
                      int64_t       ldc,
                      bool          acc) {
    if constexpr (M > 0) {
        if (rows == M)
            tile<M, NVT>(K, a, lam, lak, b, ldb, c, ldc, acc);
        else
            tile_tail<M - 1, NVT>(rows, K, a, lam, lak, b, ldb, c, ldc, acc);
    }
}

template <int NVT>
void gemm_rows(int64_t       M,
               int64_t       K,
               const float * a,
               int64_t       lam,
               int64_t       lak,
               const float * b,
               int64_t       ldb,
               float *       c,
               int64_t       ldc,
               bool          acc) {
    int64_t m0 = 0;
    for (; m0 + MR <= M; m0 += MR) tile<MR, NVT>(K, a + m0 * lam, lam, lak, b, ldb, c + m0 * ldc, ldc, acc);
    tile_tail<MR - 1, NVT>(M - m0, K, a + m0 * lam, lam, lak, b, ldb, c + m0 * ldc, ldc, acc);
}

// C[M, N] (= or +=) A[M, K]·B[K, N], strides as tile(); N a multiple of VW. Each C element is one
// F32 sum over k in order.
void gemm(int64_t       M,
          int64_t       N,
          int64_t       K,
          const float * a,
          int64_t       lam,
          int64_t       lak,
          const float * b,
          int64_t       ldb,
          float *       c,
          int64_t       ldc,
          bool          acc) {
    int64_t n0 = 0;
    for (; n0 + VW * NV <= N; n0 += VW * NV) gemm_rows<NV>(M, K, a, lam, lak, b + n0, ldb, c + n0, ldc, acc);
    for (; n0 < N; n0 += VW) gemm_rows<1>(M, K, a, lam, lak, b + n0, ldb, c + n0, ldc, acc);
}

int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

// The row loops of the softmax and its backward, in vectors with a scalar tail.

// row[0, n) *= scale; returns their max
float scale_max(float * row, int n, float scale) {
    vf  mv = vf{} - INFINITY;
    int k  = 0;
    for (; k + VW <= n; k += VW) {
        const vf x = vload(row + k) * scale;
        vstore(row + k, x);
        mv = x > mv ? x : mv;
    }
    float m = -INFINITY;
    for (int l = 0; l < VW; l++) m = std::max(m, mv[l]);
    for (; k < n; k++) {
        row[k] *= scale;
        m = std::max(m, row[k]);
    }
    return m;
}

// row[0, n) *= s, row[n, Tp) = 0
void scale_zero(float * row, int n, int64_t Tp, float s) {
    int k = 0;
    for (; k + VW <= n; k += VW) vstore(row + k, vload(row + k) * s);
    for (; k < n; k++) row[k] *= s;
    for (int64_t c = n; c < Tp; c++) row[c] = 0.0f;
}

// ggml's soft_max_ext_back on one row: dS = ((dP - dot(P, dP)) ⊙ P) · scale over [0, n), zeros to Tp;
// row holds dP in and dS out. The dot sums in F32 lanes, then in double.
void softmax_back_row(float * row, const float * pr, int n, int64_t Tp, float scale) {
    vf  acc = vf{};
    int c   = 0;
    for (; c + VW <= n; c += VW) acc += vload(row + c) * vload(pr + c);
    double dot = 0.0;
    for (int l = 0; l < VW; l++) dot += acc[l];
    for (; c < n; c++) dot += (double) row[c] * pr[c];
    const float df = (float) dot;
    c              = 0;
    for (; c + VW <= n; c += VW) vstore(row + c, (vload(row + c) - df) * vload(pr + c) * scale);
    for (; c < n; c++) row[c] = (row[c] - df) * pr[c] * scale;
    for (int64_t k = n; k < Tp; k++) row[k] = 0.0f;
}

// x [hd, n_kv, T] -> dst [T_pad, hd, n_kv], zero past T
void pack_t(ggml_tensor * dst, const ggml_tensor * x, int ith, int nth) {
    const int64_t hd = x->ne[0], nkv = x->ne[1], T = x->ne[2], Tp = dst->ne[0];
    const float * X = (const float *) x->data;
    float *       D = (float *) dst->data;
    for (int64_t r = ith; r < nkv * hd; r += nth) {
        const int64_t j = r / hd, d = r % hd;
        float *       out = D + r * Tp;  // row (d, j) of dst
        for (int64_t t = 0; t < T; t++) out[t] = X[(t * nkv + j) * hd + d];
        for (int64_t t = T; t < Tp; t++) out[t] = 0.0f;
    }
}

// dst = [O [hd, n_head, T] | P [T_pad, T, n_head]]; src: q, kt, v
void forward(ggml_tensor * dst, int ith, int nth) {
    const ggml_tensor *q = dst->src[0], *kt = dst->src[1], *v = dst->src[2];
    const int64_t      hd = q->ne[0], nh = q->ne[1], T = q->ne[2], nkv = v->ne[1], Tp = kt->ne[0], grp = nh / nkv;
    const float        scale = 1.0f / std::sqrt((float) hd);
    const float *      Q = (const float *) q->data, *KT = (const float *) kt->data, *V = (const float *) v->data;
    float *            O  = (float *) dst->data;
    float *            P  = O + hd * nh * T;
    const int64_t      nb = (T + IB - 1) / IB;
    for (int64_t t = ith; t < nh * nb; t += nth) {
        const int64_t h = t % nh, i0 = t / nh * IB, i1 = std::min(T, i0 + IB), j = h / grp;
        float *       Ph = P + (h * T + i0) * Tp;  // rows i0..i1 of head h
        // S = Q·Kᵀ for the keys before i1
        gemm(i1 - i0, round16(i1), hd, Q + i0 * nh * hd + h * hd, nh * hd, 1, KT + j * hd * Tp, Tp, Ph, Tp, false);
        for (int64_t i = i0; i < i1; i++) {
            // ggml's soft_max_ext: scale, (mask: 0 up to the diagonal), max, exp and sum, 1/sum
            float *      row = Ph + (i - i0) * Tp;
            const int    n   = (int) i + 1;
            const float  mx  = scale_max(row, n, scale);
            const double sum = 1.0 / ggml_vec_soft_max_f32(n, row, row, mx);
            scale_zero(row, n, Tp, (float) sum);
        }
        // O = P·V over the keys before i1
        gemm(i1 - i0, hd, i1, Ph, Tp, 1, V + j * hd, nkv * hd, O + i0 * nh * hd + h * hd, nh * hd, false);
    }
}

// dst = [dQ [hd, n_head, T] | dS [T_pad, T, n_head]]; src: d_o, P, vt, k
void backward_q(ggml_tensor * dst, int ith, int nth) {
    const ggml_tensor *d_o = dst->src[0], *p = dst->src[1], *vt = dst->src[2], *k = dst->src[3];
    const int64_t      hd = d_o->ne[0], nh = d_o->ne[1], T = d_o->ne[2], nkv = k->ne[1], Tp = vt->ne[0], grp = nh / nkv;
    const float        scale = 1.0f / std::sqrt((float) hd);
    const float *      DO = (const float *) d_o->data, *P = (const float *) p->data, *VT = (const float *) vt->data;
    const float *      K  = (const float *) k->data;
    float *            DQ = (float *) dst->data;
    float *            DS = DQ + hd * nh * T;
    const int64_t      nb = (T + IB - 1) / IB;
    for (int64_t t = ith; t < nh * nb; t += nth) {
        const int64_t h = t % nh, i0 = t / nh * IB, i1 = std::min(T, i0 + IB), j = h / grp;
        float *       Sh = DS + (h * T + i0) * Tp;
        const float * Ph = P + (h * T + i0) * Tp;
        // dP = dO·Vᵀ for the keys before i1, into dS's rows
        gemm(i1 - i0, round16(i1), hd, DO + i0 * nh * hd + h * hd, nh * hd, 1, VT + j * hd * Tp, Tp, Sh, Tp, false);
        for (int64_t i = i0; i < i1; i++) {
            // ggml's soft_max_ext_back: dS = ((dP - dot(P, dP)) ⊙ P) · scale
            float *       row = Sh + (i - i0) * Tp;
            const float * pr  = Ph + (i - i0) * Tp;
            const int     n   = (int) i + 1;
            softmax_back_row(row, pr, n, Tp, scale);
        }
        // dQ = dS·K over the keys before i1
        gemm(i1 - i0, hd, i1, Sh, Tp, 1, K + j * hd, nkv * hd, DQ + i0 * nh * hd + h * hd, nh * hd, false);
    }
}

// dst = [dK [hd, n_kv, T] | dV [hd, n_kv, T]]; src: d_o, P, backward_q's output (dS), q
void backward_kv(ggml_tensor * dst, int ith, int nth) {
    const ggml_tensor *d_o = dst->src[0], *p = dst->src[1], *bq = dst->src[2], *q = dst->src[3];
    const int64_t      hd = d_o->ne[0], nh = d_o->ne[1], T = d_o->ne[2], Tp = p->ne[0];
    const int64_t      nkv = dst->ne[0] / (2 * hd * T), grp = nh / nkv;
    const float *      DO = (const float *) d_o->data, *P = (const float *) p->data, *Q = (const float *) q->data;
    const float *      DS = (const float *) bq->data + hd * nh * T;
    float *            DK = (float *) dst->data;
    float *            DV = DK + hd * nkv * T;
    const int64_t      nb = (T + IB - 1) / IB;
    for (int64_t t = ith; t < nkv * nb; t += nth) {
        const int64_t j = t % nkv, j0 = t / nkv * IB, j1 = std::min(T, j0 + IB);
        for (int64_t g = 0; g < grp; g++) {
            const int64_t h  = j * grp + g;
            // queries i >= j0 (P and dS are zero above the diagonal): A(m, k) = P[i = j0 + k][key j0 + m]
            const float * Pa = P + (h * T + j0) * Tp + j0;
            const float * Sa = DS + (h * T + j0) * Tp + j0;
            gemm(j1 - j0, hd, T - j0, Pa, 1, Tp, DO + j0 * nh * hd + h * hd, nh * hd, DV + j0 * nkv * hd + j * hd, nkv * hd, g > 0);
            gemm(j1 - j0, hd, T - j0, Sa, 1, Tp, Q + j0 * nh * hd + h * hd, nh * hd, DK + j0 * nkv * hd + j * hd, nkv * hd, g > 0);
        }
    }
}

typedef int32_t vi __attribute__((vector_size(FUSED_VW * 4)));

// exp(x) as ggml's ggml_v_expf computes it on AVX2 / SSE2 (ARM's routine: at most 1.45 ulp + 0.5),
// for x clamped to [-87, 88], so without its branches for the range ends. There exp(x) is a normal
// float; outside, the SwiGLU backward below needs only that exp(-g) is tiny or huge.
inline vf v_exp(vf x) {
    const vf lo = vf{} - 87.0f, hi = vf{} + 88.0f;
    x          = x < lo ? lo : x;
    x          = x > hi ? hi : x;
    const vf r = vf{} + 0x1.8p23f;
    const vf z = x * 0x1.715476p+0f + r;
    const vf n = z - r;
    const vf b = (x - n * 0x1.62e4p-1f) - n * 0x1.7f7d1cp-20f;
    const vi e = (vi) z << 23;
    const vf k = (vf) (e + (vi) (vf{} + 1.0f));  // 2^n
    const vf u = b * b;
    const vf j = ((0x1.0e4020p-7f * b + 0x1.573e2ep-5f) * u + (0x1.555e66p-3f * b + 0x1.fffdb6p-2f)) * u + 0x1.ffffecp-1f * b;
    return j * k + k;
}

// Threads take contiguous chunks of n elements, in whole vectors: [i0, i1) of thread ith.
void chunk_of(int64_t n, int ith, int nth, int64_t & i0, int64_t & i1) {
    const int64_t chunk = ((n + nth - 1) / nth + VW - 1) / VW * VW;
    i0                  = std::min(n, ith * chunk);
    i1                  = std::min(n, i0 + chunk);
}

// silu(x) ⊙ u and its backward twin's du, dg for da, one vector: the values of both the F32 ops and
// the BF16-writing ones (one expression each, so the two write the same values)
inline vf swiglu_v(vf x, vf u) { return x / (1.0f + v_exp(vf{} - x)) * u; }

inline void swiglu_back_v(vf a, vf x, vf w, vf & du, vf & dg) {
    const vf e = 1.0f + v_exp(vf{} - x);
    const vf s = 1.0f / e;
    du         = a * (x / e);
    dg         = a * w * s * (1.0f + x * (1.0f - s));
}

// dst = silu(g) ⊙ u = g / (1 + exp(-g)) ⊙ u, as ggml's SILU then MUL; src: g, u.
void swiglu(ggml_tensor * dst, int ith, int nth) {
    const ggml_tensor *g = dst->src[0], *u = dst->src[1];
    const float *      G = (const float *) g->data, *U = (const float *) u->data;
    float *            D = (float *) dst->data;
    int64_t            i0, i1;
    chunk_of(ggml_nelements(g), ith, nth, i0, i1);
    int64_t i = i0;
    for (; i + VW <= i1; i += VW) {
        vstore(D + i, swiglu_v(vload(G + i), vload(U + i)));
    }
    for (; i < i1; i++) D[i] = G[i] / (1.0f + std::exp(-G[i])) * U[i];
}

// v rounded to BF16 at p as bf16k_round_rows rounds it (ggml_compute_fp32_to_bf16: round to nearest
// even, a NaN kept quiet): (u + 0x7fff + ((u >> 16) & 1)) >> 16, a NaN's (u >> 16) | 64
typedef uint32_t vu __attribute__((vector_size(FUSED_VW * 4)));
typedef uint16_t vh __attribute__((vector_size(FUSED_VW * 2)));

inline void vstore_bf16(uint16_t * p, vf v) {
    vu u;
    std::memcpy(&u, &v, sizeof u);
    const vu r   = (u + (0x7fffu + ((u >> 16) & 1u))) >> 16;
    const vu q   = (u >> 16) | 64u;
    const vu nan = (vu) ((u & 0x7fffffffu) > 0x7f800000u);  // all ones where NaN
    const vh h   = __builtin_convertvector((q & nan) | (r & ~nan), vh);
    std::memcpy(p, &h, sizeof h);
}

// dst [lda, T_pad] bf16 = swiglu's silu(g) ⊙ u, each value as swiglu computes it (n % VW == 0: all of
// it in vectors there too), rounded as bf16k_round rounds it, zero past n and T: the A of the down
// projection's product, made without the F32 tensor; src: g, u [n, T]. Rows to threads in turn.
void swiglu_bf16(ggml_tensor * dst, int ith, int nth) {
    const ggml_tensor *g = dst->src[0], *u = dst->src[1];
    const int64_t      n = g->ne[0], T = g->ne[1], lda = dst->ne[0], Tp = dst->ne[1];
    GGML_ASSERT(n % VW == 0 && lda >= n && Tp >= T);
    for (int64_t t = ith; t < Tp; t += nth) {
        uint16_t * row = (uint16_t *) dst->data + t * lda;
        int64_t    i   = 0;
        if (t < T) {
            const float *G = (const float *) g->data + t * n, *U = (const float *) u->data + t * n;
            for (; i < n; i += VW) {
                vstore_bf16(row + i, swiglu_v(vload(G + i), vload(U + i)));
            }
        }
        for (; i < lda; i++) row[i] = 0;
    }
}

// dst [lda, 2·T_pad] bf16 = [dg | du], swiglu_back's values (n % VW == 0) rounded as bf16k_round
// rounds them, zero padded: the A of the gate and up projections' Wᵀ·dy; src: da, g, u [n, T].
void swiglu_back_bf16(ggml_tensor * dst, int ith, int nth) {
    const ggml_tensor *da = dst->src[0], *g = dst->src[1], *u = dst->src[2];
    const int64_t      n = da->ne[0], T = da->ne[1], lda = dst->ne[0], Tp = dst->ne[1] / 2;
    GGML_ASSERT(n % VW == 0 && lda >= n && Tp >= T);
    for (int64_t t = ith; t < Tp; t += nth) {
        uint16_t * dg = (uint16_t *) dst->data + t * lda;
        uint16_t * du = dg + Tp * lda;
        int64_t    i  = 0;
        if (t < T) {
            const float *A = (const float *) da->data + t * n, *G = (const float *) g->data + t * n, *U = (const float *) u->data + t * n;
            for (; i < n; i += VW) {
                vf dui, dgi;
                swiglu_back_v(vload(A + i), vload(G + i), vload(U + i), dui, dgi);
                vstore_bf16(du + i, dui);
                vstore_bf16(dg + i, dgi);
            }
        }
        for (; i < lda; i++) dg[i] = du[i] = 0;
    }
}

// dst = [dg | du], each as da; src: da, g, u. The backward twin of a = silu(g) ⊙ u (ggml_swiglu_split):
// du = da ⊙ silu(g), dg = (da ⊙ u) ⊙ s ⊙ (1 + g ⊙ (1 - s)), s = sigmoid(g): SILU_BACK's formula, with
// silu(g) = g / (1 + exp(-g)) as the forward computes it.
void swiglu_back(ggml_tensor * dst, int ith, int nth) {
    const ggml_tensor *da = dst->src[0], *g = dst->src[1], *u = dst->src[2];
    const int64_t      n = ggml_nelements(da);
    const float *      A = (const float *) da->data, *G = (const float *) g->data, *U = (const float *) u->data;
    float *            DG = (float *) dst->data;
    float *            DU = DG + n;
    int64_t            i0, i1;
    chunk_of(n, ith, nth, i0, i1);
    int64_t i = i0;
    for (; i + VW <= i1; i += VW) {
        vf du, dg;
        swiglu_back_v(vload(A + i), vload(G + i), vload(U + i), du, dg);
        vstore(DU + i, du);
        vstore(DG + i, dg);
    }
    for (; i < i1; i++) {
        const float e = 1.0f + std::exp(-G[i]), s = 1.0f / e;
        DU[i] = A[i] * (G[i] / e);
        DG[i] = A[i] * U[i] * s * (1.0f + G[i] * (1.0f - s));
    }
}

// max and 1/Σexp(z - max) of row zr [V], as ggml's SOFT_MAX: P = exp(z - max) · inv written to pr
// when pr is set (else the exps go to scratch), the double sum returned in sum
float softmax_row(const float * zr, int64_t V, float * pr, double & sum) {
    vf      mv = vf{} - INFINITY;
    int64_t k  = 0;
    for (; k + VW <= V; k += VW) {
        const vf x = vload(zr + k);
        mv         = x > mv ? x : mv;
    }
    float mx = -INFINITY;
    for (int l = 0; l < VW; l++) mx = std::max(mx, mv[l]);
    for (; k < V; k++) mx = std::max(mx, zr[k]);
    sum = ggml_vec_soft_max_f32((int) V, pr, zr, mx);
    return mx;
}

// dst = [P at each target [n_t] | its exact log (double sums, as a float) [n_t]]; src: z [V, n_t], tgt_flat.
// Row i's P is ggml's SOFT_MAX's; the log is (z_t - max) - log Σ exp(z - max).
void ce_stats(ggml_tensor * dst, int ith, int nth) {
    const ggml_tensor *z = dst->src[0], *tg = dst->src[1];
    const int64_t      V = z->ne[0], n_t = z->ne[1];
    const float *      Z  = (const float *) z->data;
    const int32_t *    TG = (const int32_t *) tg->data;
    float *            PT = (float *) dst->data;
    float *            LP = PT + n_t;
    std::vector<float> row(V);
    for (int64_t i = ith; i < n_t; i += nth) {
        const float * zr = Z + i * V;
        double        sum;
        const float   mx = softmax_row(zr, V, row.data(), sum);
        const int64_t t  = TG[i] - i * V;  // the target's column
        PT[i]            = row[t] * (float) (1.0 / sum);
        LP[i]            = (float) (((double) zr[t] - mx) - std::log(sum));
    }
}

// dst = z, in place: P - onehot (⊙ w) [V, n_t]; src: z, tgt_flat, the stats and the argmax (order only), tw or null
// Per row as ggml's SOFT_MAX (max, ggml_vec_soft_max_f32, 1/sum), SUB and MUL.
void ce_back(ggml_tensor * dst, int ith, int nth) {
    const ggml_tensor *tg = dst->src[1], *tw = dst->src[4];
    const int64_t      V = dst->ne[0], n_t = dst->ne[1];
    const int32_t *    TG = (const int32_t *) tg->data;
    float *            D  = (float *) dst->data;
    for (int64_t i = ith; i < n_t; i += nth) {
        float * dr = D + i * V;
        double  sum;
        softmax_row(dr, V, dr, sum);
        scale_zero(dr, (int) V, V, (float) (1.0 / sum));
        dr[TG[i] - i * V] -= 1.0f;
        if (tw) {
            const float w = ((const float *) tw->data)[i];
            int64_t     k = 0;
            for (; k + VW <= V; k += VW) vstore(dr + k, vload(dr + k) * w);
            for (; k < V; k++) dr[k] *= w;
        }
    }
}

// RMS norms over rows of n floats (fused.h), as ggml's RMS_NORM then MUL, and MUL, RMS_NORM_BACK then
// ADD compute them, bit for bit: each row's sums of products in double in ggml's order (element 0
// first), NRM rows side by side so that their sequential sums overlap instead of waiting on one
// another (ggml's loop adds one element per double-add latency). No FMA contraction in here
// (FUSED_NO_CONTRACT): where ggml's build fuses a multiply-add (RMS_NORM_BACK's (dz + x·c)·rrms
// under -march=native with FMA), `fma` asks for the same fused operation explicitly.
constexpr int64_t NRM = 8;

// The row pointers of group r0 (rows past the last repeat it: their sums are computed, not used)
inline void norm_rows(const float * base, int64_t n, int64_t r0, int64_t nr, const float * (&rp)[NRM]) {
    for (int64_t j = 0; j < NRM; j++) rp[j] = base + (r0 + std::min(j, nr - 1)) * n;
}

// y = (x·scale)·w: RMS_NORM's x·scale, then MUL's ·w
FUSED_NO_CONTRACT void norm_scale_row(const float * __restrict x,
                                      float scale,
                                      const float * __restrict w,
                                      float * __restrict y,
                                      int64_t n) {
    FUSED_NO_CONTRACT_BODY
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] * scale) * w[i];
}

// y = ((dh·w) + x·c)·rrms (+ r first): RMS_NORM_BACK's element with MUL's dz = dh·w, then ADD's r + dx;
// fma: (dz + x·c) as one fused multiply-add, as ggml's build computes it
FUSED_NO_CONTRACT void norm_back_row(const float * __restrict x,
                                     const float * __restrict dh,
                                     const float * __restrict w,
                                     const float * __restrict r,
                                     float c,
                                     float rrms,
                                     bool  fma,
                                     float * __restrict y,
                                     int64_t n) {
    FUSED_NO_CONTRACT_BODY
    if (fma && r) {
        for (int64_t i = 0; i < n; i++) y[i] = r[i] + __builtin_fmaf(x[i], c, dh[i] * w[i]) * rrms;
    } else if (fma) {
        for (int64_t i = 0; i < n; i++) y[i] = __builtin_fmaf(x[i], c, dh[i] * w[i]) * rrms;
    } else if (r) {
        for (int64_t i = 0; i < n; i++) y[i] = r[i] + (dh[i] * w[i] + x[i] * c) * rrms;
    } else {
        for (int64_t i = 0; i < n; i++) y[i] = (dh[i] * w[i] + x[i] * c) * rrms;
    }
}

// dst = rms_norm(x) ⊙ w [n, rows]; src: x [n, rows], w [n]. Groups of NRM rows to threads in turn.
FUSED_NO_CONTRACT void rms_norm(ggml_tensor * dst, int ith, int nth, float eps) {
    FUSED_NO_CONTRACT_BODY
    const ggml_tensor *x = dst->src[0], *w = dst->src[1];
    const int64_t      n = x->ne[0], rows = ggml_nrows(x);
    const float *      X = (const float *) x->data, *W = (const float *) w->data;
    float *            D = (float *) dst->data;
    for (int64_t r0 = ith * NRM; r0 < rows; r0 += nth * NRM) {
        const int64_t nr = std::min(NRM, rows - r0);
        const float * xr[NRM];
        norm_rows(X, n, r0, nr, xr);
        double s[NRM] = {};
        for (int64_t i = 0; i < n; i++) {
            for (int64_t j = 0; j < NRM; j++) s[j] += (double) (xr[j][i] * xr[j][i]);
        }
        for (int64_t j = 0; j < nr; j++) {
            const float mean  = s[j] / n;  // ggml: sum/ne00 in double, then float
            const float scale = 1.0f / sqrtf(mean + eps);
            norm_scale_row(xr[j], scale, W, D + (r0 + j) * n, n);
        }
    }
}

// dst = dres + rms_norm_back(x, dh ⊙ w) [n, rows]; src: x, dh [n, rows], w [n], dres [n, rows] or null.
// ggml: dz = dh ⊙ w (MUL); per row sxx = Σ x², sxz = Σ x·dz (double), rrms = 1/sqrt(sxx/n + eps),
// c = -sxz / (sxx + eps·n), dx = (dz + x·c)·rrms (RMS_NORM_BACK); dres + dx (ADD).
FUSED_NO_CONTRACT void rms_norm_back(ggml_tensor * dst, int ith, int nth, float eps, bool fma) {
    FUSED_NO_CONTRACT_BODY
    const ggml_tensor *x = dst->src[0], *dh = dst->src[1], *w = dst->src[2], *res = dst->src[3];
    const int64_t      n = x->ne[0], rows = ggml_nrows(x);
    const float *      X = (const float *) x->data, *DH = (const float *) dh->data, *W = (const float *) w->data;
    const float *      R     = res ? (const float *) res->data : nullptr;
    float *            D     = (float *) dst->data;
    const float        eps_n = eps * n;
    for (int64_t r0 = ith * NRM; r0 < rows; r0 += nth * NRM) {
        const int64_t nr = std::min(NRM, rows - r0);
        const float * xr[NRM], *dr[NRM];
        norm_rows(X, n, r0, nr, xr);
        norm_rows(DH, n, r0, nr, dr);
        double sxx[NRM] = {}, sxz[NRM] = {};
        for (int64_t i = 0; i < n; i++) {
            for (int64_t j = 0; j < NRM; j++) {
                const float dz = dr[j][i] * W[i];
                sxx[j] += (double) (xr[j][i] * xr[j][i]);
                sxz[j] += (double) (xr[j][i] * dz);
            }
        }
        for (int64_t j = 0; j < nr; j++) {
            const float mean_eps = (float) sxx[j] / n + eps;
            const float sum_eps  = (float) sxx[j] + eps_n;
            const float rrms     = 1.0f / sqrtf(mean_eps);
            const float c        = (float) (-sxz[j]) / sum_eps;
            norm_back_row(xr[j], dr[j], W, R ? R + (r0 + j) * n : nullptr, c, rrms, fma, D + (r0 + j) * n, n);
        }
    }
}

const t2s::fused_kernels kernels = {pack_t,   forward, backward_q, backward_kv,   swiglu,      swiglu_back,
                                    ce_stats, ce_back, rms_norm,   rms_norm_back, swiglu_bf16, swiglu_back_bf16};
