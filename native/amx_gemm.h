// The AMX-BF16 GEMM's blocking, packing reads and edge handling, written once over a tile unit U
// (amx.h explains the products). Included by amx.cpp (U = the scalar emulation) and amx_hw.cpp
// (U = the real tiles, compiled there for AMX): everything here is in an unnamed namespace, so
// each file gets its own copy, compiled for its own target, and the linker never merges them.
//
// U provides, with tile numbers as template arguments (C tiles 0-3, A tiles 4-5, B tiles 6-7,
// every tile configured as 16 rows x 64 bytes):
//   begin(), end()                    configure / release the tiles (per thread, per call)
//   zero<T>(), load<T>(p, stride), store<T>(p, stride), dp<C, A, B>() (TDPBF16PS)
//   transpose16(s, dst, ld)           dst[n·ld + m] = s[m·16 + n] for a full 16 x 16 f32 tile
#pragma once

#include "amx.h"

#include <cstdint>
#include <cstring>

namespace {

using t2s::amx_gemm_args;

template <class U> struct amx_gemm {
    // The A tile of rows [m0, m0 + 16) and columns [k0, k0 + 32): in place, or a zero-padded copy
    static const uint16_t * a_tile(const amx_gemm_args & g, int64_t m0, int64_t k0, uint16_t * scratch, int64_t & stride) {
        if (g.a_padded || (m0 + 16 <= g.M && k0 + 32 <= g.K)) {
            stride = g.lda * 2;
            return g.a + m0 * g.lda + k0;
        }
        for (int64_t r = 0; r < 16; r++) {
            for (int64_t c = 0; c < 32; c++) {
                const bool in       = m0 + r < g.M && k0 + c < g.K;
                scratch[r * 32 + c] = in ? g.a[(m0 + r) * g.lda + k0 + c] : (uint16_t) 0;
            }
        }
        stride = 64;
        return scratch;
    }

    // C tile s (16 x 16 f32) to C rows [m0, m0 + 16), columns [n0, n0 + 16), inside M x N
    static void write_c(const amx_gemm_args & g, const float * s, int64_t m0, int64_t n0) {
        const int64_t rows = g.M - m0 < 16 ? g.M - m0 : 16;
        const int64_t cols = g.N - n0 < 16 ? g.N - n0 : 16;
        if (g.ldcn == 1) {
            for (int64_t r = 0; r < rows; r++) memcpy(g.c + (m0 + r) * g.ldcm + n0, s + r * 16, (size_t) cols * sizeof(float));
        } else if (g.ldcm == 1 && rows == 16 && cols == 16) {
            U::transpose16(s, g.c + n0 * g.ldcn + m0, g.ldcn);
        } else {
            for (int64_t n = 0; n < cols; n++) {
                for (int64_t r = 0; r < rows; r++) g.c[(m0 + r) * g.ldcm + (n0 + n) * g.ldcn] = s[r * 16 + n];
            }
        }
    }

    // One block of MT x NT tiles (up to 32 x 32 of C) over all of K
    template <int MT, int NT> static void block(const amx_gemm_args & g, int64_t m0, int64_t n0) {
        alignas(64) uint16_t scratch[2][16 * 32];
        alignas(64) float    cs[16 * 16];
        U::template zero<0>();
        if constexpr (NT == 2) U::template zero<1>();
        if constexpr (MT == 2) U::template zero<2>();
        if constexpr (MT == 2 && NT == 2) U::template zero<3>();
        const uint16_t * b0 = g.b + (n0 / 16) * g.b_panel;
        const int64_t    nk = (g.K + 31) / 32;
        for (int64_t kb = 0; kb < nk; kb++) {
            int64_t          s0 = 0, s1 = 0;
            const uint16_t * a0 = a_tile(g, m0, kb * 32, scratch[0], s0);
            U::template load<4>(a0, s0);
            if constexpr (MT == 2) {
                const uint16_t * a1 = a_tile(g, m0 + 16, kb * 32, scratch[1], s1);
                U::template load<5>(a1, s1);
            }
            U::template load<6>(b0 + kb * 512, 64);
            if constexpr (NT == 2) U::template load<7>(b0 + g.b_panel + kb * 512, 64);
            U::template dp<0, 4, 6>();
            if constexpr (NT == 2) U::template dp<1, 4, 7>();
            if constexpr (MT == 2) U::template dp<2, 5, 6>();
            if constexpr (MT == 2 && NT == 2) U::template dp<3, 5, 7>();
        }
        U::template store<0>(cs, 64);
        write_c(g, cs, m0, n0);
        if constexpr (NT == 2) {
            U::template store<1>(cs, 64);
            write_c(g, cs, m0, n0 + 16);
        }
        if constexpr (MT == 2) {
            U::template store<2>(cs, 64);
            write_c(g, cs, m0 + 16, n0);
        }
        if constexpr (MT == 2 && NT == 2) {
            U::template store<3>(cs, 64);
            write_c(g, cs, m0 + 16, n0 + 16);
        }
    }

    // Thread ith of nth: every nth 32-wide block of the weights' dimension, against all blocks of the other.
    static void run(const amx_gemm_args & g, int ith, int nth) {
        const int64_t nbm = (g.M + 31) / 32, nbn = (g.N + 31) / 32;
        const int64_t outer = g.split_n ? nbn : nbm, inner = g.split_n ? nbm : nbn;
        if (ith >= outer) return;
        U::begin();
        for (int64_t o = ith; o < outer; o += nth) {
            for (int64_t i = 0; i < inner; i++) {
                const int64_t m0 = (g.split_n ? i : o) * 32, n0 = (g.split_n ? o : i) * 32;
                const bool    m2 = g.M - m0 > 16, n2 = g.N - n0 > 16;
                if (m2 && n2)
                    block<2, 2>(g, m0, n0);
                else if (m2)
                    block<2, 1>(g, m0, n0);
                else if (n2)
                    block<1, 2>(g, m0, n0);
                else
                    block<1, 1>(g, m0, n0);
            }
        }
        U::end();
    }
};

}  // namespace
