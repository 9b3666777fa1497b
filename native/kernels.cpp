// CPU kernels of the text2sql engine: the weight transpose in 64 x 64 tiles (ggml's generic copy
// moves one element at a time through strided loops), with an SSE2 8 x 8 block for 16-bit types.
#include "kernels.h"

#include <algorithm>

#if defined(__x86_64__) && defined(__linux__)
#    include <cpuid.h>
#    include <sys/syscall.h>
#    include <unistd.h>
#endif

namespace t2s {

namespace {

template <typename T>
void transpose_block_scalar(T *          out,
                            const char * src,
                            size_t       nb0,
                            size_t       nb1,
                            int64_t      n0,
                            int64_t      i0b,
                            int64_t      i0e,
                            int64_t      i1b,
                            int64_t      i1e) {
    for (int64_t i1 = i1b; i1 < i1e; i1++) {
        T *          row = out + i1 * n0;
        const char * s1  = src + i1 * nb1;
        for (int64_t i0 = i0b; i0 < i0e; i0++) row[i0] = *(const T *) (s1 + i0 * nb0);
    }
}

template <typename T> void transpose_tiles(const char * src, size_t nb0, size_t nb1, T * out, int64_t n0, int64_t n1, int ith, int nth) {
    const int64_t B        = 64;
    const int64_t n_tiles1 = (n1 + B - 1) / B;
    for (int64_t t1 = ith; t1 < n_tiles1; t1 += nth) {
        const int64_t i1b = t1 * B, i1e = std::min(n1, i1b + B);
        for (int64_t i0b = 0; i0b < n0; i0b += B) {
            const int64_t i0e = std::min(n0, i0b + B);
#if defined(__SSE2__)
            if (sizeof(T) == 2 && nb1 == 2 && i0e - i0b == B && i1e - i1b == B) {
                for (int64_t i0 = i0b; i0 < i0e; i0 += 8) {
                    for (int64_t i1 = i1b; i1 < i1e; i1 += 8) {
                        transpose_8x8_u16(src + i0 * nb0 + i1 * nb1, nb0, (uint16_t *) out + i1 * n0 + i0, n0);
                    }
                }
                continue;
            }
#endif
            transpose_block_scalar<T>(out, src, nb0, nb1, n0, i0b, i0e, i1b, i1e);
        }
    }
}

}  // namespace

bool transpose_copy(const char * src, size_t nb0, size_t nb1, void * out, int64_t n0, int64_t n1, size_t esz, int ith, int nth) {
    switch (esz) {
        case 2: transpose_tiles<uint16_t>(src, nb0, nb1, (uint16_t *) out, n0, n1, ith, nth); return true;
        case 4: transpose_tiles<uint32_t>(src, nb0, nb1, (uint32_t *) out, n0, n1, ith, nth); return true;
        default: return false;
    }
}

void transpose_op(ggml_tensor * dst, const ggml_tensor * a, int ith, int nth, void *) {
    // dst [n0, n1] = a, the transposed view of a weight
    if (!transpose_copy((const char *) a->data, a->nb[0], a->nb[1], dst->data, dst->ne[0], dst->ne[1], ggml_type_size(a->type), ith, nth)) {
        GGML_ABORT("transpose_op: unsupported type %s", ggml_type_name(a->type));
    }
}

amx_tiles cpu_request_amx_tiles() {
#if defined(__x86_64__) && defined(__linux__)
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) || !(edx & (1u << 24))) return amx_tiles::absent;  // AMX-TILE
    const long arch_req_xcomp_perm = 0x1023;
    const long xfeature_xtiledata  = 18;
    return syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0 ? amx_tiles::granted : amx_tiles::denied;
#else
    return amx_tiles::absent;
#endif
}

cpu_features cpu_features_get() {
    cpu_features f;
#if defined(__x86_64__) && defined(__linux__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid(1, &a, &b, &c, &d)) f.fma = c & (1u << 12);
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        f.avx2        = b & (1u << 5);
        f.avx512f     = b & (1u << 16);
        f.avx512_fp16 = d & (1u << 23);
        f.amx_bf16    = d & (1u << 22);
        f.amx_tile    = d & (1u << 24);
        f.amx_int8    = d & (1u << 25);
    }
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx512_bf16 = a & (1u << 5);
#endif
    return f;
}

const char * amx_tiles_name(amx_tiles s) {
    switch (s) {
        case amx_tiles::granted: return "granted";
        case amx_tiles::denied: return "denied";
        default: return "absent";
    }
}

}  // namespace t2s
