// Closes the compiler target region that target_push.h opened. No include guard: once per region.
#if defined(__clang__)
#    pragma clang attribute pop
#else
#    pragma GCC pop_options
#endif
