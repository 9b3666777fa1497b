// The AMX-BF16 GEMM (amx_gemm.h) on the real tile unit. Only this file holds AMX and AVX-512
// instructions, and only inside the target region below: the rest of the addon stays baseline
// x86-64, and these functions run only after amx.cpp found AMX-BF16 in CPUID and Linux granted
// the tile state. Elsewhere (other compilers, non-x86) amx_hw_compiled() is false and amx_hw_run does nothing.
#include "amx.h"

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 11))
#    define T2S_AMX_HW 1
#    include <immintrin.h>
#endif

#if defined(T2S_AMX_HW)

#    define T2S_TARGET "amx-tile,amx-bf16,avx512f,avx512bw,avx512dq,avx512vl"
#    include "target_push.h"

#    include "amx_gemm.h"
#    include "avx512_transpose.h"

namespace {

struct tile_config {
    uint8_t  palette_id = 1;
    uint8_t  start_row  = 0;
    uint8_t  reserved[14]{};
    uint16_t colsb[16]{};
    uint8_t  rows[16]{};
};

struct hw_unit {
    static void begin() {
        tile_config cfg;
        for (int t = 0; t < 8; t++) {
            cfg.colsb[t] = 64;
            cfg.rows[t]  = 16;
        }
        _tile_loadconfig(&cfg);
    }
    static void end() { _tile_release(); }
    // GCC's tile intrinsics paste the tile number into the instruction text: it must be a literal
#    define T2S_TILES(T, OP)       \
        switch (T) {               \
            case 0: OP(0); break;  \
            case 1: OP(1); break;  \
            case 2: OP(2); break;  \
            case 3: OP(3); break;  \
            case 4: OP(4); break;  \
            case 5: OP(5); break;  \
            case 6: OP(6); break;  \
            default: OP(7); break; \
        }
    template <int T> static void zero() {
#    define T2S_ZERO(n) _tile_zero(n)
        T2S_TILES(T, T2S_ZERO)
    }
    template <int T> static void load(const void * p, int64_t stride) {
#    define T2S_LOAD(n) _tile_loadd(n, p, stride)
        T2S_TILES(T, T2S_LOAD)
    }
    template <int T> static void store(void * p, int64_t stride) {
#    define T2S_STORE(n) _tile_stored(n, p, stride)
        T2S_TILES(T, T2S_STORE)
    }
    // the four products of a 2 x 2 block (amx_gemm.h): C0 = A4·B6, C1 = A4·B7, C2 = A5·B6, C3 = A5·B7
    template <int C, int A, int B> static void dp() {
        static_assert(A == 4 + C / 2 && B == 6 + C % 2, "tile numbers of amx_gemm.h");
        if constexpr (C == 0)
            _tile_dpbf16ps(0, 4, 6);
        else if constexpr (C == 1)
            _tile_dpbf16ps(1, 4, 7);
        else if constexpr (C == 2)
            _tile_dpbf16ps(2, 5, 6);
        else
            _tile_dpbf16ps(3, 5, 7);
    }

    // dst[n·ld + m] = s[m·16 + n]: a 16 x 16 f32 transpose in registers (checked on AVX-512 CPUs
    // without AMX by the same sequence in a standalone program: every element lands right)
    static void transpose16(const float * s, float * dst, int64_t ld) {
        __m512 r[16];
        for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(s + i * 16);
        transpose16_regs(r);
        for (int n = 0; n < 16; n++) _mm512_storeu_ps(dst + n * ld, r[n]);
    }
};

}  // namespace

namespace t2s {
void amx_hw_run(const amx_gemm_args & g, int ith, int nth) { amx_gemm<hw_unit>::run(g, ith, nth); }
bool amx_hw_compiled() { return true; }
}  // namespace t2s

#    include "target_pop.h"

#else

namespace t2s {
bool amx_hw_compiled() { return false; }
void amx_hw_run(const amx_gemm_args &, int, int) {}
}  // namespace t2s

#endif
