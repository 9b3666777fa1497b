// The fused LoRA kernels (lora_impl.h) in three variants: AVX-512 and AVX2+FMA, each inside its
// own target region (GCC >= 11 or clang on x86-64; the rest of the addon stays baseline x86-64),
// and the build's baseline (SSE2 on x86-64; NEON on arm64). lora.cpp picks one by CPUID; a variant
// runs only on a CPU that has its instructions.
#include "lora.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 11))
#    define T2S_LORA_WIDE 1
#endif

namespace t2s_lora_base {
#define LORA_VW 4
#define LORA_OR 4
#define LORA_OJ 2
#define LORA_NT 2
#define LORA_NJ 2
#include "lora_impl.h"
#undef LORA_VW
#undef LORA_OR
#undef LORA_OJ
#undef LORA_NT
#undef LORA_NJ
}  // namespace t2s_lora_base

#if defined(T2S_LORA_WIDE)

#    if defined(__clang__)
#        pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#    else
#        pragma GCC push_options
#        pragma GCC target("avx2,fma")
#    endif
namespace t2s_lora_avx2 {
#    define LORA_VW 8
#    define LORA_OR 4
#    define LORA_OJ 2
#    define LORA_NT 2
#    define LORA_NJ 2
#    include "lora_impl.h"
#    undef LORA_VW
#    undef LORA_OR
#    undef LORA_OJ
#    undef LORA_NT
#    undef LORA_NJ
}  // namespace t2s_lora_avx2
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
namespace t2s_lora_avx512 {
#    define LORA_VW 16
#    define LORA_OR 4
#    define LORA_OJ 4
#    define LORA_NT 4
#    define LORA_NJ 4
#    include "lora_impl.h"
#    undef LORA_VW
#    undef LORA_OR
#    undef LORA_OJ
#    undef LORA_NT
#    undef LORA_NJ
}  // namespace t2s_lora_avx512
#    if defined(__clang__)
#        pragma clang attribute pop
#    else
#        pragma GCC pop_options
#    endif

#endif

namespace t2s {

const lora_kernels * lora_kernels_for(fused_mode m) {
    switch (m) {
        case fused_mode::base: return &t2s_lora_base::kernels;
#if defined(T2S_LORA_WIDE)
        case fused_mode::avx2: return &t2s_lora_avx2::kernels;
        case fused_mode::avx512: return &t2s_lora_avx512::kernels;
#endif
        default: return nullptr;
    }
}

}  // namespace t2s
