// GGUF reading helpers shared by model loading (model.cpp) and adapter loading (adapter.cpp).
#include "gguf_util.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace t2s {

void gguf_check_magic(const std::string & path, const char * what) {
    FILE * f = fopen(path.c_str(), "rb");
    if (!f) throw std::runtime_error(std::string("cannot open ") + what + " file '" + path + "': " + strerror(errno));
    char         magic[4] = {0};
    const size_t n        = fread(magic, 1, 4, f);
    fclose(f);
    if (n != 4 || memcmp(magic, "GGUF", 4) != 0) {
        throw std::runtime_error("'" + path + "' is not a GGUF file (it does not start with the GGUF magic)");
    }
}

int64_t kv_int(gguf_context * g, const std::string & key, int64_t def, bool required, const std::string & path) {
    const int64_t id = gguf_find_key(g, key.c_str());
    if (id < 0) {
        if (required) throw std::runtime_error(path + ": GGUF metadata key '" + key + "' is missing");
        return def;
    }
    switch (gguf_get_kv_type(g, id)) {
        case GGUF_TYPE_UINT32: return gguf_get_val_u32(g, id);
        case GGUF_TYPE_INT32: return gguf_get_val_i32(g, id);
        case GGUF_TYPE_UINT64: return (int64_t) gguf_get_val_u64(g, id);
        case GGUF_TYPE_INT64: return gguf_get_val_i64(g, id);
        case GGUF_TYPE_UINT16: return gguf_get_val_u16(g, id);
        default: throw std::runtime_error(path + ": GGUF metadata key '" + key + "' is not an integer");
    }
}

float kv_float(gguf_context * g, const std::string & key, float def, const std::string & path) {
    const int64_t id = gguf_find_key(g, key.c_str());
    if (id < 0) return def;
    switch (gguf_get_kv_type(g, id)) {
        case GGUF_TYPE_FLOAT32: return gguf_get_val_f32(g, id);
        case GGUF_TYPE_FLOAT64: return (float) gguf_get_val_f64(g, id);
        default: throw std::runtime_error(path + ": GGUF metadata key '" + key + "' is not a float");
    }
}

std::string kv_str(gguf_context * g, const std::string & key) {
    const int64_t id = gguf_find_key(g, key.c_str());
    if (id < 0 || gguf_get_kv_type(g, id) != GGUF_TYPE_STRING) return "";
    return gguf_get_val_str(g, id);
}

std::string shape_str(const std::vector<int64_t> & ne) {
    std::string s = "[";
    for (size_t i = 0; i < ne.size(); i++) s += (i ? ", " : "") + std::to_string(ne[i]);
    return s + "]";
}

}  // namespace t2s
