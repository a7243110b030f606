#pragma once
// Where a Redis is, from the address text of redis::options: "HOST:PORT" (numeric, or
// "localhost"), "redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]", "unix:/path" or "/path".
// The port defaults to 6379, the host to 127.0.0.1; names are not resolved.

#include <string>
#include <string_view>

namespace corio::redis {

// The address part of options::address parsed (tests, error texts).
struct endpoint {
  std::string address;  // for corio::address::parse: "127.0.0.1:6379", "unix:/p"
  std::string user;
  std::string password;
  int db = 0;
};
// Throws std::invalid_argument quoting the address without its password.
endpoint parse_endpoint(std::string_view text);

}  // namespace corio::redis
