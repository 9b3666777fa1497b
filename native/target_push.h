// Opens a compiler target region for the instruction sets in T2S_TARGET (a string literal the
// includer defines, e.g. "avx2,fma"): every function up to target_pop.h is compiled for them, the
// rest of the addon stays baseline x86-64. Such functions run only after a CPUID check. No include
// guard: once per region; T2S_TARGET is undefined here, after use.
#define T2S_PRAGMA(x)       _Pragma(#x)
#define T2S_TARGET_PUSH_(t) T2S_PRAGMA(clang attribute push(__attribute__((target(t))), apply_to = function))
#define T2S_TARGET_GCC_(t)  T2S_PRAGMA(GCC target(t))
#if defined(__clang__)
T2S_TARGET_PUSH_(T2S_TARGET)
#else
#    pragma GCC push_options
T2S_TARGET_GCC_(T2S_TARGET)
#endif
#undef T2S_TARGET_PUSH_
#undef T2S_TARGET_GCC_
#undef T2S_PRAGMA
#undef T2S_TARGET
