// Closes the compiler target region that amx_hw.cpp and bf16k_hw.cpp open around their AMX /
// AVX-512 code (each opens its own, with its own targets). No include guard: once per region.
#if defined(__clang__)
#    pragma clang attribute pop
#else
#    pragma GCC pop_options
#endif
