#pragma once
// Where a Redis is, from the address text of redis::options: "HOST:PORT" (a name, a
// numeric IPv4 or a bracketed IPv6 host), "redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]",
// "unix:/path" or "/path". The port defaults to 6379, the host to 127.0.0.1. A name is
// kept as written: the connection resolves it at every (re)connect (runtime/resolve.hpp),
// so a name whose address changed is followed.

#include <string>
#include <string_view>
#include <vector>

namespace corio::redis {

// The address part of options::address parsed (tests, error texts).
struct endpoint {
  std::string address;  // "127.0.0.1:6379", "redis.internal:6379", "[::1]:6379", "unix:/p"
  std::string user;
  std::string password;
  int db = 0;
};
// True for the text of a Unix-domain socket ("unix:/p", "/p", "./p"); false for HOST:PORT.
bool is_unix_address(std::string_view address) noexcept;
// Throws std::invalid_argument quoting the address without its password: a bad port, a
// bad Unix path, an IPv6 host without brackets.
endpoint parse_endpoint(std::string_view text);
// A comma-separated list of addresses (the seeds of a cluster; one for a single Redis).
// Throws std::invalid_argument for an empty list or item, or a bad address.
std::vector<endpoint> parse_seeds(std::string_view text);
// The list without credentials, for messages: "127.0.0.1:7000,127.0.0.1:7001".
std::string seeds_text(std::string_view text);

}  // namespace corio::redis
