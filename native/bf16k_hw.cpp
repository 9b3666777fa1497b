// The AVX512-BF16 GEMM (bf16k.h) and the activations' BF16 rounding. Only this file holds
// AVX-512 instructions, and only inside the target region below: the rest of the addon stays
// baseline x86-64, and these functions run only after amx_mode_from_env found AVX512_BF16 in
// CPUID. Elsewhere (other compilers, non-x86) bf16k_compiled() is false and bf16k_run does nothing.
#include "bf16k.h"

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 11))
#    define T2S_BF16K_HW 1
#    include <immintrin.h>
#endif

#if defined(T2S_BF16K_HW)

#    define T2S_TARGET "avx512f,avx512bw,avx512dq,avx512vl,avx512bf16"
#    include "target_push.h"

#    include "avx512_transpose.h"

namespace {

using t2s::bf16k_args;

constexpr int MR = 8;    // rows of C per micro-tile (tokens)
constexpr int NR = 3;    // panels of 16 columns per micro-tile (weight columns)
constexpr int KC = 256;  // K-pairs per K-block: a packed block of NR panels is 48 KiB (L1 on Zen 5), C is passed over K/512 times

inline __m512bh as_bh(__m512i v) { return (__m512bh) v; }

inline __mmask32 mask32(int64_t n) { return n >= 32 ? ~(__mmask32) 0 : n <= 0 ? 0 : (((__mmask32) 1 << n) - 1); }

inline __mmask16 mask16(int64_t n) { return n >= 16 ? (__mmask16) 0xffff : n <= 0 ? 0 : (__mmask16) ((1u << n) - 1); }

// C[MR rows, NP panels] (+)= A · B over kc pairs. a: A at the tile's first row and pair; bp[j]:
// panel j at the first pair (32 bf16 a pair-row); first: start from zero, else from C; rows,
// cols: C's valid rows and columns (A holds zeros in its padding rows, so all MR rows are read).
template <int NP>
void tile(const uint16_t *         a,
          int64_t                  lda,
          const uint16_t * const * bp,
          int64_t                  kc,
          float *                  c,
          int64_t                  ldc,
          bool                     first,
          int64_t                  rows,
          int64_t                  cols) {
    __m512          acc[MR][NP];
    const __mmask16 last = mask16(cols - 16 * (NP - 1));
    for (int i = 0; i < MR; i++) {
        for (int j = 0; j < NP; j++) {
            const __mmask16 mk = j == NP - 1 ? last : (__mmask16) 0xffff;
            acc[i][j]          = first || i >= rows ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mk, c + i * ldc + 16 * j);
        }
    }
    for (int64_t kk = 0; kk < kc; kk++) {
        __m512i b[NP];
        for (int j = 0; j < NP; j++) b[j] = _mm512_loadu_si512(bp[j] + kk * 32);
        for (int i = 0; i < MR; i++) {
            int32_t p;
            memcpy(&p, a + i * lda + 2 * kk, 4);  // the pair A(i, 2kk), A(i, 2kk + 1)
            const __m512i av = _mm512_set1_epi32(p);
            for (int j = 0; j < NP; j++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], as_bh(av), as_bh(b[j]));
        }
    }
    for (int i = 0; i < MR && i < rows; i++) {
        for (int j = 0; j < NP; j++) {
            const __mmask16 mk = j == NP - 1 ? last : (__mmask16) 0xffff;
            _mm512_mask_storeu_ps(c + i * ldc + 16 * j, mk, acc[i][j]);
        }
    }
}

// r[n] = the n-th dwords of r[0..15] (a 16 x 16 dword transpose)
void transpose16(__m512i * ri) {
    __m512 r[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_castsi512_ps(ri[i]);
    transpose16_regs(r);
    for (int i = 0; i < 16; i++) ri[i] = _mm512_castps_si512(r[i]);
}

// Panel nb's pairs [kp0, kp0 + kc) of B into dst [kc][16 cols][2], zeros past K and N, from W's
// rows. W·x (w_cols): column n is W's row n, a pair is one dword of it: 16 rows x 16 pairs at a
// time, transposed. Wᵀ·dy: a pair-row is W's rows 2kk and 2kk + 1, 16 columns each, interleaved.
void pack_panel(const bf16k_args & g, int64_t nb, int64_t kp0, int64_t kc, uint16_t * dst) {
    const int64_t n0 = nb * 16;
    if (g.w_cols) {
        for (int64_t q = 0; q < kc; q += 16) {
            const int64_t k0 = 2 * (kp0 + q);
            __m512i       r[16];
            for (int n = 0; n < 16; n++) {
                r[n] = n0 + n < g.N ? _mm512_maskz_loadu_epi16(mask32(g.K - k0), g.w + (n0 + n) * g.ldw + k0) : _mm512_setzero_si512();
            }
            transpose16(r);
            for (int kk = 0; kk < 16; kk++) _mm512_storeu_si512(dst + (q + kk) * 32, r[kk]);
        }
        return;
    }
    const __m512i   idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3,
                                           18, 2, 17, 1, 16, 0);  // out[2n] = row 2kk's n, out[2n + 1] = row 2kk + 1's n
    const __mmask16 mn  = mask16(g.N - n0);
    for (int64_t kk = 0; kk < kc; kk++) {
        const int64_t k  = 2 * (kp0 + kk);
        const __m256i r0 = k < g.K ? _mm256_maskz_loadu_epi16(mn, g.w + k * g.ldw + n0) : _mm256_setzero_si256();
        const __m256i r1 = k + 1 < g.K ? _mm256_maskz_loadu_epi16(mn, g.w + (k + 1) * g.ldw + n0) : _mm256_setzero_si256();
        const __m512i v  = _mm512_inserti64x4(_mm512_castsi256_si512(r0), r1, 1);
        _mm512_storeu_si512(dst + kk * 32, _mm512_permutexvar_epi16(idx, v));
    }
}

// The W bytes that packing the next K-block reads (rows of row_bytes, stride apart), prefetched
// into L2 a slice per micro-tile while this block computes: the packing then finds them there
// instead of waiting on memory for 48 rows at once.
struct ahead {
    const char * base   = nullptr;
    int64_t      stride = 0, lines = 0, total = 0, done = 0, per_tile = 0;

    ahead(const bf16k_args & g, int64_t nb0, int64_t np, int64_t kp0, int64_t kc) {
        if (g.b || np <= 0) return;
        const int64_t k0 = 2 * kp0, n0 = 16 * nb0;
        const int64_t kn = (g.K - k0 < 2 * kc ? g.K - k0 : 2 * kc), nn = (g.N - n0 < 16 * np ? g.N - n0 : 16 * np);
        if (kn <= 0 || nn <= 0) return;
        // W·x: rows n of k-elements; Wᵀ·dy: rows k of n-elements
        base   = (const char *) (g.w_cols ? g.w + n0 * g.ldw + k0 : g.w + k0 * g.ldw + n0);
        stride = g.ldw * 2;
        lines  = ((g.w_cols ? kn : nn) * 2 + 63) / 64 + 1;
        total  = lines * (g.w_cols ? nn : kn);
    }
    void some() {
        for (int64_t n = 0; n < per_tile && done < total; n++, done++) {
            _mm_prefetch(base + (done / lines) * stride + (done % lines) * 64, _MM_HINT_T1);
        }
    }
};

// One K-block of a group of np panels from panel nb0: every MR rows of C against it.
template <int NP> void block(const bf16k_args & g, const uint16_t * const * bp, int64_t nb0, int64_t kp0, int64_t kc, ahead & pf) {
    const int64_t n0 = nb0 * 16, cols = g.N - n0 < 16 * NP ? g.N - n0 : 16 * NP;
    pf.per_tile = (pf.total + (g.M + MR - 1) / MR - 1) / ((g.M + MR - 1) / MR);
    for (int64_t m0 = 0; m0 < g.M; m0 += MR) {
        pf.some();
        tile<NP>(g.a + m0 * g.lda + 2 * kp0, g.lda, bp, kc, g.c + m0 * g.ldc + n0, g.ldc, kp0 == 0, g.M - m0, cols);
    }
}

// The per-thread packing buffer: NR·KC pair-rows of 32 bf16 (48 KiB), freed when the thread ends
struct pack_buf {
    uint16_t * p = nullptr;
    ~pack_buf() { _mm_free(p); }
};
thread_local pack_buf t_buf;

}  // namespace

namespace t2s {

bool bf16k_compiled() { return true; }

void bf16k_run(const bf16k_args & g, int ith, int nth) {
    // thread ith's panels [p0, p1), in groups of up to NR
    const int64_t npan = (g.N + 15) / 16, nkp = (g.K + 31) / 32 * 16;
    const int64_t p0 = npan * ith / nth, p1 = npan * (ith + 1) / nth;
    auto          width = [&](int64_t nb) {
        return p1 - nb < NR ? p1 - nb : (int64_t) NR;
    };
    if (!g.b && !t_buf.p) t_buf.p = (uint16_t *) _mm_malloc(sizeof(uint16_t) * NR * KC * 32, 64);
    for (int64_t nb0 = p0; nb0 < p1; nb0 += NR) {
        const int64_t np = width(nb0);
        for (int64_t kp0 = 0; kp0 < nkp; kp0 += KC) {
            const int64_t    kc = nkp - kp0 < KC ? nkp - kp0 : KC;
            const uint16_t * bp[NR];
            for (int64_t j = 0; j < np; j++) {
                if (g.b) {
                    bp[j] = g.b + (nb0 + j) * g.b_panel + kp0 * 32;
                } else {
                    pack_panel(g, nb0 + j, kp0, kc, t_buf.p + j * KC * 32);
                    bp[j] = t_buf.p + j * KC * 32;
                }
            }
            // the next K-block of this group, else the first of the next group (none past this thread's)
            const int64_t nkp0 = kp0 + KC < nkp ? kp0 + KC : 0, nnb0 = nkp0 ? nb0 : nb0 + NR;
            ahead         pf(g, nnb0, nnb0 < p1 ? width(nnb0) : 0, nkp0, nkp - nkp0 < KC ? nkp - nkp0 : KC);
            if (np == 3)
                block<3>(g, bp, nb0, kp0, kc, pf);
            else if (np == 2)
                block<2>(g, bp, nb0, kp0, kc, pf);
            else
                block<1>(g, bp, nb0, kp0, kc, pf);
        }
    }
}

void bf16k_round_rows(const float * x, int64_t ldx, int64_t K, int64_t T, uint16_t * dst, int64_t lda, int64_t Tp, int ith, int nth) {
    const __m512i lsb = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff), abs = _mm512_set1_epi32(0x7fffffff);
    const __m512i inf = _mm512_set1_epi32(0x7f800000), quiet = _mm512_set1_epi32(64);
    for (int64_t t = ith; t < Tp; t += nth) {
        uint16_t * row = dst + t * lda;
        int64_t    k   = 0;
        if (t < T) {
            const float * src = x + t * ldx;
            for (; k < K; k += 16) {
                // ggml_compute_fp32_to_bf16: (u + 0x7fff + ((u >> 16) & 1)) >> 16, a NaN kept quiet
                const __mmask16 mk = mask16(K - k);
                const __m512i   u  = _mm512_maskz_loadu_epi32(mk, src + k);
                const __m512i   r =
                    _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(u, 16), lsb))), 16);
                const __mmask16 nan  = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs), inf);
                const __m512i   bits = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), quiet);
                _mm256_mask_storeu_epi16(row + k, mk, _mm512_cvtepi32_epi16(bits));
            }
            k = K;
        }
        for (; k < lda; k++) row[k] = 0;
    }
}

}  // namespace t2s

#    include "target_pop.h"

#else

namespace t2s {
void bf16k_run(const bf16k_args &, int, int) {}
void bf16k_round_rows(const float *, int64_t, int64_t, int64_t, uint16_t *, int64_t, int64_t, int, int) {}
bool bf16k_compiled() { return false; }
}  // namespace t2s

#endif
