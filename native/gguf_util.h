// GGUF reading helpers shared by model loading (model.cpp) and adapter loading (adapter.cpp):
// the magic check, typed metadata reads, and tensor shapes as text for error messages.
#pragma once

#include "gguf.h"

#include <cstdint>
#include <string>
#include <vector>

namespace t2s {

// Throws unless `path` opens and starts with the GGUF magic; `what` names the file ("model").
void gguf_check_magic(const std::string & path, const char * what);

// Metadata values; kv_int throws when a required key is missing, both throw on a wrong type.
int64_t     kv_int(gguf_context * g, const std::string & key, int64_t def, bool required, const std::string & path);
float       kv_float(gguf_context * g, const std::string & key, float def, const std::string & path);
std::string kv_str(gguf_context * g, const std::string & key);  // "" when missing or not a string

std::string shape_str(const std::vector<int64_t> & ne);         // "[64, 128]"

}  // namespace t2s
