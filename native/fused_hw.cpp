// The fused attention kernels (fused_impl.h) in three variants: AVX-512 and AVX2+FMA, each inside
// its own target region (GCC >= 11 or clang on x86-64; the rest of the addon stays baseline
// x86-64), and the build's baseline (SSE2 on x86-64; NEON on arm64). fused.cpp picks
// one by CPUID; a variant runs only on a CPU that has its instructions.
#include "fused.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

// ggml's row softmax (ggml-cpu vec.cpp, built for this machine with the rest of ggml): y = exp(x - max),
// returns the sum in double. The fused forward uses it so that P is computed as SOFT_MAX computes it.
extern "C" double ggml_vec_soft_max_f32(const int n, float * y, const float * x, float max);

#if defined(__x86_64__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 11))
#    define T2S_FUSED_WIDE 1
#endif

namespace t2s_fused_base {
#define FUSED_VW 4
#define FUSED_NV 2
#include "fused_impl.h"
#undef FUSED_VW
#undef FUSED_NV
}  // namespace t2s_fused_base

#if defined(T2S_FUSED_WIDE)

#    if defined(__clang__)
#        pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#    else
#        pragma GCC push_options
#        pragma GCC target("avx2,fma")
#    endif
namespace t2s_fused_avx2 {
#    define FUSED_VW 8
#    define FUSED_NV 2
#    include "fused_impl.h"
#    undef FUSED_VW
#    undef FUSED_NV
}  // namespace t2s_fused_avx2
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
namespace t2s_fused_avx512 {
#    define FUSED_VW 16
#    define FUSED_NV 4
#    include "fused_impl.h"
#    undef FUSED_VW
#    undef FUSED_NV
}  // namespace t2s_fused_avx512
#    if defined(__clang__)
#        pragma clang attribute pop
#    else
#        pragma GCC pop_options
#    endif

#endif

namespace t2s {

const fused_kernels * fused_kernels_for(fused_mode m) {
    switch (m) {
        case fused_mode::base: return &t2s_fused_base::kernels;
#if defined(T2S_FUSED_WIDE)
        case fused_mode::avx2: return &t2s_fused_avx2::kernels;
        case fused_mode::avx512: return &t2s_fused_avx512::kernels;
#endif
        default: return nullptr;
    }
}

}  // namespace t2s
