#pragma once
// Where a Redis is, from the address text of redis::options: "HOST:PORT" (numeric, or
// "localhost"), "redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]", "unix:/path" or "/path".
// The port defaults to 6379, the host to 127.0.0.1; names are not resolved.

#include <string>
#include <string_view>
#include <vector>

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
// A comma-separated list of addresses (the seeds of a cluster; one for a single Redis).
// Throws std::invalid_argument for an empty list or item, or a bad address.
std::vector<endpoint> parse_seeds(std::string_view text);
// The list without credentials, for messages: "127.0.0.1:7000,127.0.0.1:7001".
std::string seeds_text(std::string_view text);

}  // namespace corio::redis
