#pragma once
// resolve: a host name to the addresses it stands for, through getaddrinfo(3), without
// blocking a loop thread.
//
//     std::vector<corio::address> all = co_await corio::resolve("redis.internal", 6379);
//     auto s = co_await corio::tcp_stream::connect("redis.internal", 6379);  // stream.hpp
//     std::vector<corio::address> v = corio::resolve_blocking("localhost", 80);  // plain code
//
// Contract
// - resolve(host, port, options) yields every address of `host` that getaddrinfo gives
//   for a stream socket (IPv4 and IPv6 unless options.family names one), in getaddrinfo's
//   order (RFC 6724 sorting, tunable in /etc/gai.conf), duplicates removed, each with
//   `port`; never an empty list. No AI_ADDRCONFIG: a name that /etc/hosts gives ::1 keeps
//   ::1 on a machine without a global IPv6 address; a connect to an unreachable family
//   fails at once and the next address is tried (tcp_stream::connect(host, port)).
// - A numeric host ("127.0.0.1", "::1", "[::1]") is converted on the calling thread, with
//   no thread and no lookup.
// - A name: getaddrinfo runs on a thread of resolver_pool() (its own threads, apart from
//   offload's pool, so a slow DNS server never holds up CPU work); the coroutine suspends,
//   its loop runs on, and it resumes on its own loop.
// - Cancellation: the awaiting coroutine's stop token releases it at once with
//   operation_cancelled; options.deadline with timed_out. getaddrinfo cannot be
//   interrupted: it runs to its end on its thread and its result is dropped. A token
//   already stopped starts no lookup.
// - Errors: resolve_error, a std::system_error whose what() names the host and gives
//   gai_strerror's text: `resolve "nohost.invalid": Name or service not known`. Its code()
//   is the EAI_* value in resolve_category(), or the errno in std::system_category() for
//   EAI_SYSTEM. An empty host, or one holding a NUL, is std::invalid_argument.
// - resolve_blocking: the same lookup on the calling thread, for plain code outside a
//   loop; on a loop thread it throws std::logic_error (it would stall every coroutine).
// - Who may touch it: resolve from coroutines on any loop; resolve_blocking from any
//   thread that is not running a loop. resolver_pool() lives until exit, whose static
//   destruction waits for lookups still running (bounded by resolv.conf's timeout and
//   attempts).

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "../coro/task.hpp"
#include "address.hpp"

struct addrinfo;

namespace corio {

class thread_pool;

// A failed name lookup; see the contract.
class resolve_error : public std::system_error {
 public:
  resolve_error(std::error_code code, std::string host);
  // The host that failed, as the caller gave it.
  const std::string& host() const noexcept { return host_; }

 private:
  std::string host_;
};

// The category of getaddrinfo's EAI_* codes; message() is gai_strerror's text.
const std::error_category& resolve_category() noexcept;

struct resolve_options {
  // AF_UNSPEC (IPv4 and IPv6), AF_INET or AF_INET6; anything else is std::invalid_argument.
  int family = AF_UNSPEC;
  // The lookup fails with timed_out when it has no answer by then.
  std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt;
};

// "HOST:PORT" or "[IPV6]:PORT" split for resolve; the host may be a name. Throws
// std::invalid_argument quoting the text for a missing or bad port, an empty host, or an
// IPv6 host without brackets.
struct host_port {
  std::string host;  // without the brackets
  std::uint16_t port;
};
host_port split_host_port(std::string_view text);

// True for a numeric IPv4 or IPv6 host ("10.0.0.1", "::1", "[::1]"): resolving it needs
// no lookup.
bool is_numeric_host(std::string_view host) noexcept;

// See the contract.
[[nodiscard]] task<std::vector<address>> resolve(std::string host, std::uint16_t port, resolve_options options = {});
std::vector<address> resolve_blocking(std::string_view host, std::uint16_t port, int family = AF_UNSPEC);

// The threads resolve() runs getaddrinfo on: 4 threads named "corio-resolve_<i>", made on
// first use.
thread_pool& resolver_pool();

namespace detail {

// What resolve() calls on its thread in place of ::getaddrinfo, for tests (a slow or a
// failing resolver). Set it only while no lookup runs. A replacement must hand back a list
// that ::freeaddrinfo can free (from ::getaddrinfo itself) or fail. Numeric hosts never
// reach it.
using getaddrinfo_fn = int (*)(const char* host, const char* service, const addrinfo* hints, addrinfo** out);
extern getaddrinfo_fn getaddrinfo_hook;

}  // namespace detail

}  // namespace corio
