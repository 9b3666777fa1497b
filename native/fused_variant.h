// One variant of the fused CPU kernels, inside the includer's namespace: the attention, SwiGLU and
// head ops (fused_impl.h) in namespace ops, the LoRA products (lora_impl.h) in namespace lora, each
// with the widths fused_hw.cpp defines before (FUSED_VW, FUSED_NV, FUSED_MR; LORA_VW, LORA_NT, LORA_NJ,
// LORA_OR, LORA_OJ), undefined here after use. No include guard: once per variant, by design.
namespace ops {
#include "fused_impl.h"
}  // namespace ops
namespace lora {
#include "lora_impl.h"
}  // namespace lora
#undef FUSED_VW
#undef FUSED_NV
#undef FUSED_MR
#undef LORA_VW
#undef LORA_NT
#undef LORA_NJ
#undef LORA_OR
#undef LORA_OJ
