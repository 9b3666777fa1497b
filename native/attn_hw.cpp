// The fused attention kernels (attn_impl.h) in three variants: AVX-512 and AVX2+FMA, each inside
// its own target region (GCC >= 11 or clang on x86-64; the rest of the addon stays baseline
// x86-64), and the build's baseline (SSE2 on x86-64; NEON on arm64). attn.cpp picks
// one by CPUID; a variant runs only on a CPU that has its instructions.
#include "attn.h"

#include <algorithm>
#include <cmath>
#include <cstring>

// ggml's row softmax (ggml-cpu vec.cpp, built for this machine with the rest of ggml): y = exp(x - max),
// returns the sum in double. The fused forward uses it so that P is computed as SOFT_MAX computes it.
extern "C" double ggml_vec_soft_max_f32(const int n, float * y, const float * x, float max);

#if defined(__x86_64__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 11))
#    define T2S_ATTN_WIDE 1
#endif

namespace t2s_attn_base {
#define ATTN_VW 4
#define ATTN_NV 2
#include "attn_impl.h"
#undef ATTN_VW
#undef ATTN_NV
}  // namespace t2s_attn_base

#if defined(T2S_ATTN_WIDE)

#    if defined(__clang__)
#        pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#    else
#        pragma GCC push_options
#        pragma GCC target("avx2,fma")
#    endif
namespace t2s_attn_avx2 {
#    define ATTN_VW 8
#    define ATTN_NV 2
#    include "attn_impl.h"
#    undef ATTN_VW
#    undef ATTN_NV
}  // namespace t2s_attn_avx2
#    if defined(__clang__)
#        pragma clang attribute pop
#    else
#        pragma GCC pop_options
#    endif

#    if defined(__clang__)
#        pragma clang attribute push(__attribute__((target("avx512f,avx512vl,fma"))), apply_to = function)
#    else
#        pragma GCC push_options
#        pragma GCC target("avx512f,avx512vl,fma")
#    endif
namespace t2s_attn_avx512 {
#    define ATTN_VW 16
#    define ATTN_NV 4
#    include "attn_impl.h"
#    undef ATTN_VW
#    undef ATTN_NV
}  // namespace t2s_attn_avx512
#    if defined(__clang__)
#        pragma clang attribute pop
#    else
#        pragma GCC pop_options
#    endif

#endif

namespace t2s {

const attn_kernels * attn_kernels_for(attn_mode m) {
    switch (m) {
        case attn_mode::base: return &t2s_attn_base::kernels;
#if defined(T2S_ATTN_WIDE)
        case attn_mode::avx2: return &t2s_attn_avx2::kernels;
        case attn_mode::avx512: return &t2s_attn_avx512::kernels;
#endif
        default: return nullptr;
    }
}

}  // namespace t2s
