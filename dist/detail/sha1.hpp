#pragma once
// SHA-1 (FIPS 180-4), only to name Lua scripts as Redis does: EVALSHA takes the SHA-1 of a
// script's body in 40 lowercase hex digits, and SCRIPT LOAD must answer exactly that
// (lua_script.hpp checks it). Not for anything that needs a secure hash.

#include <string>
#include <string_view>

namespace corio::dist::detail {

// The SHA-1 of `data` in 40 lowercase hex digits, as SCRIPT LOAD answers it.
std::string sha1_hex(std::string_view data);

}  // namespace corio::dist::detail
