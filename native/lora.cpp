// The fused LoRA ops (lora.h): the mode, the graph nodes and their profile names. The kernels are
// fused_hw.cpp's.
#include "lora.h"

#include "kernels.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace t2s {

namespace {

// Custom op userdata: the mode in the low 8 bits, the adapter scale's F32 bits above.
static_assert(sizeof(uintptr_t) >= 8, "the fused LoRA ops pack the scale into the userdata pointer");

void * userdata(fused_mode m, float s) {
    if (!lora_kernels_for(m)) GGML_ABORT("fused LoRA: this build has no %s kernel", fused_mode_name(m));
    uint32_t bits;
    std::memcpy(&bits, &s, sizeof bits);
    return (void *) (((uintptr_t) bits << 8) | (uintptr_t) m);
}

const lora_kernels & kernels_of(void * ud) { return *lora_kernels_for((fused_mode) ((uintptr_t) ud & 0xff)); }

float scale_of(void * ud) {
    const uint32_t bits = (uint32_t) ((uintptr_t) ud >> 8);
    float          s;
    std::memcpy(&s, &bits, sizeof s);
    return s;
}

void forward_t_op(ggml_tensor * dst, int ith, int nth, void * ud) { kernels_of(ud).forward_t(dst, scale_of(ud), ith, nth); }
void forward_y_op(ggml_tensor * dst, int ith, int nth, void * ud) { kernels_of(ud).forward_y(dst, scale_of(ud), ith, nth); }
void backward_b_op(ggml_tensor * dst, int ith, int nth, void * ud) { kernels_of(ud).backward_b(dst, scale_of(ud), ith, nth); }
void backward_a_op(ggml_tensor * dst, int ith, int nth, void * ud) { kernels_of(ud).backward_a(dst, ith, nth); }

// an F32 [n, T] activation the kernels read: rows contiguous, any row stride
void check_rows(const ggml_tensor * t, int64_t n, int64_t T) {
    GGML_ASSERT(t->type == GGML_TYPE_F32 && t->ne[0] == n && t->ne[1] == T && t->ne[2] == 1 && t->ne[3] == 1);
    GGML_ASSERT(t->nb[0] == sizeof(float) && t->nb[1] % sizeof(float) == 0);
}

}  // namespace

lora_fwd_out lora_forward(ggml_context * ctx,
                          fused_mode     m,
                          ggml_tensor *  x,
                          ggml_tensor *  mask,
                          ggml_tensor *  a,
                          ggml_tensor *  b,
                          ggml_tensor *  y_base,
                          float          s) {
    const int64_t n_in = x->ne[0], T = x->ne[1], r = a->ne[1], n_out = b->ne[1];
    check_rows(x, n_in, T);
    if (mask) check_rows(mask, n_in, T);
    GGML_ASSERT(a->type == GGML_TYPE_F32 && b->type == GGML_TYPE_F32 && ggml_is_contiguous(a) && ggml_is_contiguous(b));
    GGML_ASSERT(a->ne[0] == n_in && b->ne[0] == r);
    lora_fwd_out  out;
    ggml_tensor * at[] = {x, a, mask};
    out.t = ggml_custom_4d(ctx, GGML_TYPE_F32, r, T, 1, 1, at, mask ? 3 : 2, forward_t_op, GGML_N_TASKS_MAX, userdata(m, s));  // [r, T]
    ggml_set_name(out.t, "lora.forward_t");
    out.y = nullptr;
    if (y_base) {
        check_rows(y_base, n_out, T);
        ggml_tensor * ay[] = {out.t, b};
        out.y              = ggml_custom_inplace(ctx, y_base, ay, 2, forward_y_op, GGML_N_TASKS_MAX, userdata(m, s));  // [n_out, T]
        ggml_set_name(out.y, "lora.forward_y");
    }
    return out;
}

ggml_tensor *
lora_backward_b(ggml_context * ctx, fused_mode m, ggml_tensor * dy, ggml_tensor * t, ggml_tensor * b, ggml_tensor * gb, float s) {
    const int64_t n_out = dy->ne[0], T = dy->ne[1], r = b->ne[0];
    check_rows(dy, n_out, T);
    GGML_ASSERT(t->type == GGML_TYPE_F32 && ggml_is_contiguous(t) && t->ne[0] == r && t->ne[1] == T);
    GGML_ASSERT(b->type == GGML_TYPE_F32 && ggml_is_contiguous(b) && b->ne[1] == n_out);
    GGML_ASSERT(ggml_are_same_shape(b, gb) && gb->type == GGML_TYPE_F32 && ggml_is_contiguous(gb));
    ggml_tensor * args[] = {dy, t, b, gb};
    ggml_tensor * dt = ggml_custom_4d(ctx, GGML_TYPE_F32, r, T, 1, 1, args, 4, backward_b_op, GGML_N_TASKS_MAX, userdata(m, s));  // [r, T]
    ggml_set_name(dt, "lora.backward_b");
    return dt;
}

ggml_tensor * lora_backward_a(ggml_context * ctx,
                              fused_mode     m,
                              ggml_tensor *  dt,
                              ggml_tensor *  x,
                              ggml_tensor *  mask,
                              ggml_tensor *  a,
                              ggml_tensor *  ga,
                              ggml_tensor *  dx_base) {
    const int64_t n_in = x->ne[0], T = x->ne[1], r = a->ne[1];
    check_rows(x, n_in, T);
    if (mask) check_rows(mask, n_in, T);
    GGML_ASSERT(a->type == GGML_TYPE_F32 && ggml_is_contiguous(a) && a->ne[0] == n_in);
    GGML_ASSERT(ggml_are_same_shape(a, ga) && ga->type == GGML_TYPE_F32 && ggml_is_contiguous(ga));
    GGML_ASSERT(dt->ne[0] == r && dt->ne[1] == T && ggml_is_contiguous(dt));
    ggml_tensor * o;
    if (dx_base) {
        check_rows(dx_base, n_in, T);
        ggml_tensor * args[] = {dt, x, a, ga, mask};
        o = ggml_custom_inplace(ctx, dx_base, args, mask ? 5 : 4, backward_a_op, GGML_N_TASKS_MAX, userdata(m, 1.0f));  // [n_in, T]
    } else {
        ggml_tensor * args[] = {nullptr, dt, x, a, ga, mask};
        o = ggml_custom_4d(ctx, GGML_TYPE_F32, 1, 1, 1, 1, args, mask ? 6 : 5, backward_a_op, GGML_N_TASKS_MAX, userdata(m, 1.0f));  // [1]
    }
    ggml_set_name(o, "lora.backward_a");
    return o;
}

bool lora_is_op(const ggml_tensor * t) { return t->op == GGML_OP_CUSTOM && std::strncmp(t->name, "lora.", 5) == 0; }

std::string lora_profile_key(const ggml_tensor * t, fused_mode m) {
    return std::string("LORA ") + (t->name + 5) + " f32 (LoRA) [" + fused_mode_name(m) + "]";  // "LORA forward_t f32 (LoRA) [fused-avx512]"
}

double lora_flop(const ggml_tensor * t) {
    if (!lora_is_op(t)) return 0.0;
    const std::string n = t->name;
    if (n == "lora.forward_t") return 2.0 * (double) t->src[1]->ne[1] * (double) ggml_nelements(t->src[0]);   // 2·r·n_in·T
    if (n == "lora.forward_y") return 2.0 * (double) t->src[2]->ne[0] * (double) ggml_nelements(t);           // 2·r·n_out·T
    if (n == "lora.backward_b") return 4.0 * (double) t->src[2]->ne[0] * (double) ggml_nelements(t->src[0]);  // 2·r·n_out·T, twice
    const ggml_tensor *x = t->src[2], *a = t->src[3];
    return (t->src[0] ? 4.0 : 2.0) * (double) a->ne[1] * (double) ggml_nelements(x);                          // dA, and dx
}

}  // namespace t2s
