// The AMX-BF16 path (amx.h): runtime detection and the mode, the scalar emulation of the tile
// unit, the per-call BF16 rounding and packing of activations, the weight packing, the graph's
// custom ops, the test hook and the roofline microbenchmark. The GEMM itself is amx_gemm.h, here on the emulated unit and in
// amx_hw.cpp on the real one.
#include "amx.h"
#include "amx_gemm.h"
#include "bf16k.h"
#include "kernels.h"

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

#if defined(__x86_64__)
#    include <cpuid.h>
#endif

namespace t2s {

namespace {

// ---------------------------------------------------------------------------------------------
// The emulated tile unit: eight 1 KiB tiles per thread, every tile 16 rows x 64 bytes.
//
// TDPBF16PS as Intel's pseudo-code states it, for each row m, then each K-pair k in order, then
// each column n: c[m][n] += a[m][2k]·b[k][2n]; c[m][n] += a[m][2k+1]·b[k][2n+1]. Each product
// of two BF16 values is exact in F32 (8-bit significands); each addition rounds to nearest even
// in F32; input denormals count as zero and output denormals are flushed (DAZ, FTZ). The
// hardware may order the additions of one instruction differently (the tests bound any F32
// summation order, not this one).

struct emu_tiles {
    alignas(64) uint8_t t[8][16 * 64];
};
thread_local emu_tiles g_emu;

inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t) h << 16;
    float    f;
    memcpy(&f, &u, 4);
    return f;
}

inline float daz_ftz(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (u & 0x7f800000u) == 0 ? (u & 0x80000000u ? -0.0f : 0.0f) : f;
}

struct emu_unit {
    static void                  begin() {}
    static void                  end() {}
    template <int T> static void zero() { memset(g_emu.t[T], 0, sizeof g_emu.t[T]); }
    template <int T> static void load(const void * p, int64_t stride) {
        for (int r = 0; r < 16; r++) memcpy(g_emu.t[T] + r * 64, (const uint8_t *) p + r * stride, 64);
    }
    template <int T> static void store(void * p, int64_t stride) {
        for (int r = 0; r < 16; r++) memcpy((uint8_t *) p + r * stride, g_emu.t[T] + r * 64, 64);
    }
    template <int C, int A, int B> static void dp() {
        float    c[16 * 16];
        uint16_t a[16 * 32], b[16 * 32];
        memcpy(c, g_emu.t[C], sizeof c);
        memcpy(a, g_emu.t[A], sizeof a);
        memcpy(b, g_emu.t[B], sizeof b);
        for (int m = 0; m < 16; m++) {
            for (int k = 0; k < 16; k++) {
                const float a0 = daz_ftz(bf16_to_f32(a[m * 32 + 2 * k])), a1 = daz_ftz(bf16_to_f32(a[m * 32 + 2 * k + 1]));
                for (int n = 0; n < 16; n++) {
                    const float b0 = daz_ftz(bf16_to_f32(b[k * 32 + 2 * n])), b1 = daz_ftz(bf16_to_f32(b[k * 32 + 2 * n + 1]));
                    float &     acc = c[m * 16 + n];
                    acc             = daz_ftz(acc + a0 * b0);
                    acc             = daz_ftz(acc + a1 * b1);
                }
            }
        }
        memcpy(g_emu.t[C], c, sizeof c);
    }
    static void transpose16(const float * s, float * dst, int64_t ld) {
        for (int n = 0; n < 16; n++)
            for (int m = 0; m < 16; m++) dst[n * ld + m] = s[m * 16 + n];
    }
};

// F32 -> BF16 bits, round to nearest even, NaN kept quiet: ggml's ggml_compute_fp32_to_bf16, which
// its BF16 mul_mat applies to the activations (vec_dot_type)
inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t) ((u >> 16) | 64);
    return (uint16_t) ((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

inline int64_t pad16(int64_t n) { return (n + 15) / 16 * 16; }
inline int64_t pad32(int64_t n) { return (n + 31) / 32 * 32; }

// VNNI panels of B (k, n) = get(k, n), zero past K and N; thread ith of nth packs every nth panel.
// Whole blocks (32 k x 16 n inside K x N) go through full(blk, k0, n0), the same values by a faster loop.
template <typename F, typename G> void pack_b(F get, G full, int64_t K, int64_t N, uint16_t * dst, int ith, int nth) {
    const int64_t nkb = pad32(K) / 32, nnb = pad16(N) / 16;
    for (int64_t nb = ith; nb < nnb; nb += nth) {
        uint16_t * panel = dst + nb * nkb * 512;
        for (int64_t kb = 0; kb < nkb; kb++) {
            uint16_t * blk = panel + kb * 512;
            if (kb * 32 + 32 <= K && nb * 16 + 16 <= N) {
                full(blk, kb * 32, nb * 16);
                continue;
            }
            for (int64_t kk = 0; kk < 16; kk++) {
                for (int64_t n = 0; n < 16; n++) {
                    for (int64_t j = 0; j < 2; j++) {
                        const int64_t k = kb * 32 + 2 * kk + j, col = nb * 16 + n;
                        blk[kk * 32 + n * 2 + j] = k < K && col < N ? get(k, col) : (uint16_t) 0;
                    }
                }
            }
        }
    }
}

// Custom op userdata: the mode in the low 2 bits, the first K block of B (head chunks) above.
inline amx_mode ud_mode(void * ud) { return (amx_mode) ((intptr_t) ud & 3); }
inline int64_t  ud_kb0(void * ud) { return (int64_t) ((intptr_t) ud >> 2); }

void run_gemm(amx_mode m, const amx_gemm_args & g, int ith, int nth) {
    if (m == amx_mode::hw)
        amx_hw_run(g, ith, nth);
    else
        amx_gemm<emu_unit>::run(g, ith, nth);
}

// dst [Kp32·16, Tp16/16] bf16 = x [K, T] f32 rounded to BF16, as B panels (k, n = token)
void pack_act_op(ggml_tensor * dst, int ith, int nth, void *) {
    const ggml_tensor * x   = dst->src[0];
    const char *        xd  = (const char *) x->data;
    const size_t        nb1 = x->nb[1];
    auto                get = [&](int64_t k, int64_t t) {
        return f32_to_bf16(*(const float *) (xd + t * nb1 + k * sizeof(float)));
    };
    auto full = [&](uint16_t * blk, int64_t k0, int64_t t0) {
        for (int64_t n = 0; n < 16; n++) {
            const float * row = (const float *) (xd + (t0 + n) * nb1) + k0;  // 32 values of token t0 + n
            for (int64_t kk = 0; kk < 16; kk++) {
                blk[kk * 32 + n * 2]     = f32_to_bf16(row[2 * kk]);
                blk[kk * 32 + n * 2 + 1] = f32_to_bf16(row[2 * kk + 1]);
            }
        }
    };
    pack_b(get, full, x->ne[0], x->ne[1], (uint16_t *) dst->data, ith, nth);
}

// dst [Kp32, Tp16] bf16 = dy [K, T] f32 rounded to BF16, row-major with zero padding (A of Wᵀ·dy)
void conv_rows_op(ggml_tensor * dst, int ith, int nth, void *) {
    const ggml_tensor * dy = dst->src[0];
    const int64_t       K = dy->ne[0], T = dy->ne[1], Kp = dst->ne[0], Tp = dst->ne[1];
    for (int64_t t = ith; t < Tp; t += nth) {
        uint16_t *    row = (uint16_t *) dst->data + t * Kp;
        const float * src = (const float *) ((const char *) dy->data + t * dy->nb[1]);
        int64_t       k   = 0;
        if (t < T)
            for (; k < K; k++) row[k] = f32_to_bf16(src[k]);
        for (; k < Kp; k++) row[k] = 0;
    }
}

// dst = B panels of a weight (or a view of its rows) w [n_in, rows]: B(k = row, n = column)
void pack_w_op(ggml_tensor * dst, int ith, int nth, void *) {
    const ggml_tensor * w = dst->src[0];
    amx_pack_b_bf16((const uint16_t *) w->data, (int64_t) (w->nb[1] / 2), 1, w->ne[1], w->ne[0], (uint16_t *) dst->data, ith, nth);
}

// dst [n_out, T] = W·x: A = W's rows, B = the packed activations, C = yᵀ (stored transposed)
void fwd_op(ggml_tensor * dst, int ith, int nth, void * ud) {
    const ggml_tensor * w = dst->src[0];
    const ggml_tensor * b = dst->src[1];
    amx_gemm_args       g{};
    g.a       = (const uint16_t *) w->data;
    g.lda     = (int64_t) (w->nb[1] / 2);
    g.M       = w->ne[1];
    g.K       = w->ne[0];
    g.N       = dst->ne[1];
    g.b       = (const uint16_t *) b->data;
    g.b_panel = b->ne[0];
    g.c       = (float *) dst->data;
    g.ldcm    = 1;
    g.ldcn    = (int64_t) (dst->nb[1] / sizeof(float));
    run_gemm(ud_mode(ud), g, ith, nth);
}

// dst [n_in, T] = Wᵀ·dy: A = dy rounded (padded rows), B = W's panels from block kb0, C = dx
void bwd_op(ggml_tensor * dst, int ith, int nth, void * ud) {
    const ggml_tensor * a = dst->src[0];
    const ggml_tensor * b = dst->src[1];
    amx_gemm_args       g{};
    g.a        = (const uint16_t *) a->data;
    g.lda      = a->ne[0];
    g.a_padded = true;
    g.M        = dst->ne[1];
    g.K        = a->ne[0];
    g.N        = dst->ne[0];
    g.b        = (const uint16_t *) b->data + ud_kb0(ud) * 512;
    g.b_panel  = b->ne[0];
    g.c        = (float *) dst->data;
    g.ldcm     = (int64_t) (dst->nb[1] / sizeof(float));
    g.ldcn     = 1;
    g.split_n  = true;
    run_gemm(ud_mode(ud), g, ith, nth);
}

void * make_ud(amx_mode m, int64_t kb0) { return (void *) (intptr_t) ((kb0 << 2) | (intptr_t) m); }

}  // namespace

const char * amx_mode_name(amx_mode m) {
    switch (m) {
        case amx_mode::hw: return "amx-bf16";
        case amx_mode::emulate: return "amx-bf16-emulated";
        case amx_mode::avx512: return "avx512-bf16";
        default: return "ggml";
    }
}

bool cpu_has_amx_bf16() {
#if defined(__x86_64__)
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    return (edx & (1u << 22)) && (edx & (1u << 24));  // AMX-BF16, AMX-TILE
#else
    return false;
#endif
}

namespace {

// Where AMX is not in use: the AVX512-BF16 GEMM where CPUID reports AVX512_BF16, unless
// TEXT2SQL_AVX512BF16=0 (a value not understood is added to `note`).
amx_mode avx512_mode_from_env(std::string & note) {
    const char *      v  = getenv("TEXT2SQL_AVX512BF16");
    const std::string s  = v ? v : "";
    const bool        on = !(s == "0" || s == "off");
    if (on && !s.empty() && s != "1" && s != "auto")
        note += (note.empty() ? "" : "; ") + ("TEXT2SQL_AVX512BF16='" + s + "' is not one of 0, 1, auto; using auto");
    return on && cpu_has_avx512_bf16() && bf16k_compiled() ? amx_mode::avx512 : amx_mode::off;
}

// An AMX CPU whose tiles cannot be used (`why`): the kernel that runs instead, named in the note
amx_mode amx_fallback(const std::string & why, std::string & note) {
    std::string    rest;
    const amx_mode m = avx512_mode_from_env(rest);
    note             = why + (m == amx_mode::avx512 ? "; using text2sql's AVX512-BF16 GEMM" : "; using ggml's kernels") +
                       (rest.empty() ? "" : "; " + rest);
    return m;
}

}  // namespace

amx_mode amx_mode_from_env(std::string & note) {
    note.clear();
    const char *      v = getenv("TEXT2SQL_AMX");
    const std::string s = v ? v : "";
    if (s == "0" || s == "off") return amx_mode::off;
    if (s == "emulate") return amx_mode::emulate;
    if (!s.empty() && s != "1" && s != "auto") {
        note = "TEXT2SQL_AMX='" + s + "' is not one of 0, 1, auto, emulate; using auto";
    }
    if (!cpu_has_amx_bf16()) return avx512_mode_from_env(note);
    if (!amx_hw_compiled())
        return amx_fallback("this CPU has AMX-BF16 but the engine was built without AMX code (compiler too old or not x86-64)", note);
    if (cpu_request_amx_tiles() == amx_tiles::granted) return amx_mode::hw;
    return amx_fallback("this CPU has AMX-BF16 but Linux denied the tile state (arch_prctl)", note);
}

void amx_pack_b_bf16(const uint16_t * src, int64_t sk, int64_t sn, int64_t K, int64_t N, uint16_t * dst, int ith, int nth) {
    auto get = [&](int64_t k, int64_t n) {
        return src[k * sk + n * sn];
    };
    auto full = [&](uint16_t * blk, int64_t k0, int64_t n0) {
        for (int64_t kk = 0; kk < 16; kk++) {
            const uint16_t * r0 = src + (k0 + 2 * kk) * sk + n0 * sn;  // rows k, k + 1 of B
            const uint16_t * r1 = r0 + sk;
            uint16_t *       o  = blk + kk * 32;
            if (sn == 1) {
                for (int64_t n = 0; n < 16; n++) {
                    o[2 * n]     = r0[n];
                    o[2 * n + 1] = r1[n];
                }
            } else {
                for (int64_t n = 0; n < 16; n++) {
                    o[2 * n]     = r0[n * sn];
                    o[2 * n + 1] = r1[n * sn];
                }
            }
        }
    };
    pack_b(get, full, K, N, dst, ith, nth);
}

ggml_tensor * amx_prepare_x(ggml_context * ctx, amx_mode m, ggml_tensor * x) {
    if (m == amx_mode::avx512) return bf16k_round(ctx, x);  // [lda, Tp]
    const int64_t K = x->ne[0], T = x->ne[1];
    GGML_ASSERT(x->type == GGML_TYPE_F32 && x->nb[0] == 4);
    ggml_tensor * xs[1] = {x};
    ggml_tensor * xb    = ggml_custom_4d(ctx, GGML_TYPE_BF16, pad32(K) * 16, pad16(T) / 16, 1, 1, xs, 1, pack_act_op, GGML_N_TASKS_MAX,
                                         nullptr);  // [Kp·16, Tp/16]  x as B panels
    ggml_set_name(xb, "amx.pack_x");
    return xb;
}

ggml_tensor * amx_mul_mat(ggml_context * ctx, amx_mode m, ggml_tensor * w, ggml_tensor * x, ggml_tensor * xp) {
    GGML_ASSERT(!xp || xp->src[0] == x);
    if (m == amx_mode::avx512) return bf16k_mul_mat(ctx, w, x, xp);  // [n_out, T]
    const int64_t K = w->ne[0], N = w->ne[1], T = x->ne[1];
    GGML_ASSERT(w->type == GGML_TYPE_BF16 && x->type == GGML_TYPE_F32 && x->ne[0] == K && w->nb[0] == 2 && x->nb[0] == 4);
    ggml_tensor * xb    = xp ? xp : amx_prepare_x(ctx, m, x);  // [Kp·16, Tp/16]  x as B panels
    ggml_tensor * ab[2] = {w, xb};
    ggml_tensor * y     = ggml_custom_4d(ctx, GGML_TYPE_F32, N, T, 1, 1, ab, 2, fwd_op, GGML_N_TASKS_MAX, make_ud(m, 0));  // [n_out, T]
    ggml_set_name(y, "amx.mul_mat");
    return y;
}

ggml_tensor * amx_mul_mat_t(ggml_context * ctx, amx_mode m, ggml_tensor * w, ggml_tensor * w_packed, int64_t k0, ggml_tensor * dy) {
    if (m == amx_mode::avx512) return bf16k_mul_mat_t(ctx, w, w_packed, k0, dy);  // [n_in, T]
    const int64_t n_in = w->ne[0], K = w->ne[1], T = dy->ne[1];
    GGML_ASSERT(w->type == GGML_TYPE_BF16 && dy->type == GGML_TYPE_F32 && dy->ne[0] == K && w->nb[0] == 2 && dy->nb[0] == 4);
    GGML_ASSERT(k0 % 32 == 0);
    ggml_tensor * dys[1] = {dy};
    ggml_tensor * a      = ggml_custom_4d(ctx, GGML_TYPE_BF16, pad32(K), pad16(T), 1, 1, dys, 1, conv_rows_op, GGML_N_TASKS_MAX,
                                          nullptr);  // [Kp, Tp]  dy rounded, row-major
    ggml_set_name(a, "amx.round_dy");
    ggml_tensor * b = w_packed;
    if (!b) {
        ggml_tensor * ws[1] = {w};
        b                   = ggml_custom_4d(ctx, GGML_TYPE_BF16, pad32(K) * 16, pad16(n_in) / 16, 1, 1, ws, 1, pack_w_op, GGML_N_TASKS_MAX,
                                             nullptr);  // [Kp·16, Np/16]  W as B panels
        ggml_set_name(b, "amx.pack_w");
    }
    ggml_tensor * ab[2] = {a, b};
    ggml_tensor * dx =
        ggml_custom_4d(ctx, GGML_TYPE_F32, n_in, T, 1, 1, ab, 2, bwd_op, GGML_N_TASKS_MAX, make_ud(m, k0 / 32));  // [n_in, T]
    ggml_set_name(dx, "amx.mul_mat_t");
    return dx;
}

std::string ggml_cpu_mul_mat_kernel(ggml_type t) {
    // llamafile's tinyBLAS (sgemm.cpp) takes every product of 2+ tokens whose activation type
    // it has a kernel for; one token goes through ggml's vec_dot of the same types
    const bool   avx512 = ggml_cpu_has_avx512(), avx2 = ggml_cpu_has_avx2();
    const char * simd = avx512 ? "AVX-512" : avx2 ? "AVX2" : "no SIMD kernel: vec_dot";
    switch (t) {
        case GGML_TYPE_F32: return std::string("tinyBLAS f32 (") + simd + ")";
        case GGML_TYPE_F16:
            return std::string("tinyBLAS f16 (") +
                   (avx512              ? "AVX-512" :
                    ggml_cpu_has_f16c() ? "F16C" :
                                          "vec_dot") +
                   "), activations to F16";
        case GGML_TYPE_BF16:
            return std::string("tinyBLAS bf16 (") + (ggml_cpu_has_avx512_bf16() ? "AVX512-BF16 vdpbf16ps" : simd) +
                   "), activations to BF16";
        default: return std::string("ggml vec_dot ") + ggml_type_name(t);
    }
}

bool amx_is_op(const ggml_tensor * t) { return t->op == GGML_OP_CUSTOM && strncmp(t->name, "amx.", 4) == 0; }

namespace {

// One CPU graph for the test hook and the microbenchmark: the backend, a no-alloc context for the
// tensors, then (after the graph is built) its buffers. init/free pair; free also after a throw.
struct cpu_graph_run {
    ggml_backend_t        be = nullptr;
    std::vector<uint8_t>  meta;
    ggml_context *        ctx = nullptr;
    ggml_cgraph *         gf  = nullptr;
    ggml_backend_buffer_t buf = nullptr;
    ggml_gallocr_t        ga  = nullptr;
    ~cpu_graph_run();
};

void cpu_graph_run_free(cpu_graph_run & r) {
    if (r.ga) ggml_gallocr_free(r.ga);
    if (r.buf) ggml_backend_buffer_free(r.buf);
    if (r.ctx) ggml_free(r.ctx);
    if (r.be) ggml_backend_free(r.be);
    r.ga  = nullptr;
    r.buf = nullptr;
    r.ctx = nullptr;
    r.be  = nullptr;
}

cpu_graph_run::~cpu_graph_run() { cpu_graph_run_free(*this); }

// The backend with n_threads and the context; mode hw needs the tile unit
void cpu_graph_run_init(cpu_graph_run & r, amx_mode mode, int n_threads) {
    if (mode == amx_mode::hw && !(amx_hw_compiled() && cpu_has_amx_bf16() && cpu_request_amx_tiles() == amx_tiles::granted))
        throw std::runtime_error("the AMX tile unit is not available on this CPU");
    if (mode == amx_mode::avx512 && !(bf16k_compiled() && cpu_has_avx512_bf16()))
        throw std::runtime_error("the AVX512-BF16 kernel is not available on this CPU (or this build)");
    r.be = ggml_backend_cpu_init();
    if (!r.be) throw std::runtime_error("failed to initialise the CPU backend");
    ggml_backend_cpu_set_n_threads(r.be, n_threads > 0 ? n_threads : 1);
    r.meta.resize(ggml_tensor_overhead() * 16 + ggml_graph_overhead());
    ggml_init_params ip = {r.meta.size(), r.meta.data(), true};
    r.ctx               = ggml_init(ip);
}

// The graph of `out` with its tensors allocated
void cpu_graph_run_alloc(cpu_graph_run & r, ggml_tensor * out) {
    r.gf = ggml_new_graph(r.ctx);
    ggml_build_forward_expand(r.gf, out);
    r.buf = ggml_backend_alloc_ctx_tensors(r.ctx, r.be);
    r.ga  = ggml_gallocr_new(ggml_backend_get_default_buffer_type(r.be));
    if (!r.buf || !ggml_gallocr_alloc_graph(r.ga, r.gf)) throw std::runtime_error("out of memory");
}

void cpu_graph_run_compute(cpu_graph_run & r) {
    if (ggml_backend_graph_compute(r.be, r.gf) != GGML_STATUS_SUCCESS) throw std::runtime_error("graph compute failed");
}

}  // namespace

void amx_matmul_test(amx_mode         mode,
                     bool             transpose,
                     const uint16_t * w,
                     const float *    x,
                     int64_t          K,
                     int64_t          N,
                     int64_t          T,
                     int              n_threads,
                     float *          y,
                     bool             packed) {
    if (K <= 0 || N <= 0 || T <= 0) throw std::runtime_error("K, N and T must be positive");
    cpu_graph_run r;
    cpu_graph_run_init(r, mode, n_threads);
    ggml_context * ctx    = r.ctx;
    // W·x: W [K, N]; Wᵀ·x: W [N, K] (K rows). ggml's mul_mat takes the contiguous transpose.
    const bool     ggml_t = transpose && mode == amx_mode::off;
    ggml_tensor *  wt     = ggml_new_tensor_2d(ctx, GGML_TYPE_BF16, transpose && !ggml_t ? N : K, transpose && !ggml_t ? K : N);
    ggml_tensor *  xt     = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, K, T);                                              // [K, T]
    packed                = packed && transpose && mode != amx_mode::off;
    ggml_tensor * wp      = packed ? ggml_new_tensor_2d(ctx, GGML_TYPE_BF16, pad32(K) * 16, pad16(N) / 16) : nullptr;  // [Kp·16, Np/16]
    ggml_tensor * out     = mode == amx_mode::off ? ggml_mul_mat(ctx, wt, xt) :
                            transpose             ? amx_mul_mat_t(ctx, mode, wt, wp, 0, xt) :
                                                    amx_mul_mat(ctx, mode, wt, xt);  // [N, T]
    cpu_graph_run_alloc(r, out);
    if (ggml_t) {
        std::vector<uint16_t> tw((size_t) K * N);
        for (int64_t k = 0; k < K; k++)
            for (int64_t n = 0; n < N; n++) tw[n * K + k] = w[k * N + n];
        ggml_backend_tensor_set(wt, tw.data(), 0, tw.size() * 2);
    } else {
        ggml_backend_tensor_set(wt, w, 0, (size_t) K * N * 2);
    }
    if (wp) {
        std::vector<uint16_t> pw(ggml_nelements(wp));
        amx_pack_b_bf16(w, N, 1, K, N, pw.data(), 0, 1);  // B(k, n) = W[k][n]
        ggml_backend_tensor_set(wp, pw.data(), 0, pw.size() * 2);
    }
    ggml_backend_tensor_set(xt, x, 0, (size_t) K * T * 4);
    cpu_graph_run_compute(r);
    ggml_backend_tensor_get(out, y, 0, (size_t) N * T * 4);
}

void matmul_bench(amx_mode mode, ggml_type type, int64_t K, int64_t N, int64_t T, int n_threads, int reps, double * ms) {
    if (K <= 0 || N <= 0 || T <= 0 || reps < 1) throw std::runtime_error("K, N, T and reps must be positive");
    if (type != GGML_TYPE_F32 && type != GGML_TYPE_F16 && type != GGML_TYPE_BF16)
        throw std::runtime_error("the weight type must be f32, f16 or bf16");
    if (mode != amx_mode::off && type != GGML_TYPE_BF16) throw std::runtime_error("the AMX and AVX512-BF16 kernels take bf16 weights only");
    cpu_graph_run r;
    cpu_graph_run_init(r, mode, n_threads);
    ggml_tensor * w = ggml_new_tensor_2d(r.ctx, type, K, N);                                               // [K, N]
    ggml_tensor * x = ggml_new_tensor_2d(r.ctx, GGML_TYPE_F32, K, T);                                      // [K, T]
    ggml_tensor * y = mode == amx_mode::off ? ggml_mul_mat(r.ctx, w, x) : amx_mul_mat(r.ctx, mode, w, x);  // [N, T]
    cpu_graph_run_alloc(r, y);
    // seeded values in [-1/16, 1/16): the kernel's speed does not depend on them, only no denormals
    uint32_t           s = 12345;
    std::vector<float> v((size_t) std::max(K * N, K * T));
    for (float & f : v) f = (float) ((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f / 8.0f - 0.0625f;
    std::vector<uint8_t> wb(ggml_nbytes(w));
    if (type == GGML_TYPE_F32) memcpy(wb.data(), v.data(), wb.size());
    if (type == GGML_TYPE_F16) ggml_fp32_to_fp16_row(v.data(), (ggml_fp16_t *) wb.data(), K * N);
    if (type == GGML_TYPE_BF16) ggml_fp32_to_bf16_row(v.data(), (ggml_bf16_t *) wb.data(), K * N);
    ggml_backend_tensor_set(w, wb.data(), 0, wb.size());
    ggml_backend_tensor_set(x, v.data(), 0, (size_t) K * T * 4);
    for (int i = -1; i < reps; i++) {  // i = -1: the untimed run (page faults, thread start)
        const auto t0 = std::chrono::steady_clock::now();
        cpu_graph_run_compute(r);
        if (i >= 0) ms[i] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }
}

}  // namespace t2s
