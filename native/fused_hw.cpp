// The fused CPU kernels (fused_impl.h: attention, SwiGLU, the head; lora_impl.h: the LoRA
// products) in three variants: AVX-512 and AVX2+FMA, each inside its own target region (GCC >= 11
// or clang on x86-64; the rest of the addon stays baseline x86-64), and the build's baseline (SSE2
// on x86-64; NEON on arm64). fused.cpp and lora.cpp pick one by CPUID; a variant runs only on a
// CPU that has its instructions.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fused.h"
#include "lora.h"

// ggml's row softmax (ggml-cpu vec.cpp, built for this machine with the rest of ggml): y = exp(x - max),
// returns the sum in double. The fused forward uses it so that P is computed as SOFT_MAX computes it.
extern "C" double ggml_vec_soft_max_f32(const int n, float * y, const float * x, float max);

#if defined(__x86_64__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 11))
#    define T2S_FUSED_WIDE 1
#endif

// The RMS norms (fused_impl.h) reproduce ggml's float operations one for one: no multiply-add
// contracted into an FMA that ggml does not make (each variant below may use FMA elsewhere).
#if defined(__clang__)
#    define FUSED_NO_CONTRACT
#    define FUSED_NO_CONTRACT_BODY _Pragma("clang fp contract(off)")
#else
#    define FUSED_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#    define FUSED_NO_CONTRACT_BODY
#endif

namespace t2s_fused_base {
#define FUSED_VW 4
#define FUSED_NV 2
#define FUSED_MR 4
#define LORA_VW  4
#define LORA_OR  4
#define LORA_OJ  2
#define LORA_NT  2
#define LORA_NJ  2
#include "fused_variant.h"
}  // namespace t2s_fused_base

#if defined(T2S_FUSED_WIDE)

#    define T2S_TARGET "avx2,fma"
#    include "target_push.h"
namespace t2s_fused_avx2 {
#    define FUSED_VW 8
#    define FUSED_NV 2
#    define FUSED_MR 6
#    define LORA_VW  8
#    define LORA_OR  4
#    define LORA_OJ  2
#    define LORA_NT  2
#    define LORA_NJ  2
#    include "fused_variant.h"
}  // namespace t2s_fused_avx2
#    include "target_pop.h"

#    define T2S_TARGET "avx512f,avx512vl,fma"
#    include "target_push.h"
namespace t2s_fused_avx512 {
#    define FUSED_VW 16
#    define FUSED_NV 4
#    define FUSED_MR 6
#    define LORA_VW  16
#    define LORA_OR  4
#    define LORA_OJ  4
#    define LORA_NT  4
#    define LORA_NJ  4
#    include "fused_variant.h"
}  // namespace t2s_fused_avx512
#    include "target_pop.h"

#endif

namespace t2s {

const fused_kernels * fused_kernels_for(fused_mode m) {
    switch (m) {
        case fused_mode::base: return &t2s_fused_base::ops::kernels;
#if defined(T2S_FUSED_WIDE)
        case fused_mode::avx2: return &t2s_fused_avx2::ops::kernels;
        case fused_mode::avx512: return &t2s_fused_avx512::ops::kernels;
#endif
        default: return nullptr;
    }
}

const lora_kernels * lora_kernels_for(fused_mode m) {
    switch (m) {
        case fused_mode::base: return &t2s_fused_base::lora::kernels;
#if defined(T2S_FUSED_WIDE)
        case fused_mode::avx2: return &t2s_fused_avx2::lora::kernels;
        case fused_mode::avx512: return &t2s_fused_avx512::lora::kernels;
#endif
        default: return nullptr;
    }
}

}  // namespace t2s
