#include "resolve.hpp"

#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "../coro/when_any.hpp"
#include "errors.hpp"
#include "event.hpp"
#include "loop.hpp"
#include "thread_pool.hpp"
#include "timer.hpp"

namespace corio {

namespace detail {

getaddrinfo_fn getaddrinfo_hook = &::getaddrinfo;

}  // namespace detail

namespace {

class gai_category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "getaddrinfo"; }
  std::string message(int code) const override { return ::gai_strerror(code); }
};

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

// "[::1]" -> "::1"; the caller's text otherwise.
std::string_view unbracketed(std::string_view host) noexcept {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') return host.substr(1, host.size() - 2);
  return host;
}

std::string checked_host(std::string_view host) {
  if (host.empty()) throw std::invalid_argument("resolve: the host is empty");
  if (host.find('\0') != std::string_view::npos)
    throw std::invalid_argument("resolve: the host " + quoted(host.substr(0, host.find('\0'))) + "... holds a NUL");
  return std::string(unbracketed(host));
}

void check_family(int family) {
  if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6)
    throw std::invalid_argument("resolve: family " + std::to_string(family) +
                                " is none of AF_UNSPEC, AF_INET, AF_INET6");
}

// One getaddrinfo call through `fn`, its list turned into addresses (order kept,
// duplicates dropped). `shown` is the host as the caller gave it, for the error.
std::vector<address> lookup(const std::string& host, std::string_view shown, std::uint16_t port, int family,
                            int flags, detail::getaddrinfo_fn fn) {
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = flags | AI_NUMERICSERV;
  const std::string service = std::to_string(port);
  addrinfo* list = nullptr;
  const int rc = fn(host.c_str(), service.c_str(), &hints, &list);
  if (rc == EAI_SYSTEM) throw resolve_error(std::error_code(errno, std::system_category()), std::string(shown));
  if (rc != 0) throw resolve_error(std::error_code(rc, resolve_category()), std::string(shown));
  const std::unique_ptr<addrinfo, void (*)(addrinfo*)> owned(list, &::freeaddrinfo);
  std::vector<address> out;
  for (const addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    const address a = address::from_sockaddr(ai->ai_addr, ai->ai_addrlen);
    if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
  }
  if (out.empty()) throw resolve_error(std::error_code(EAI_NONAME, resolve_category()), std::string(shown));
  return out;
}

// One lookup on a resolver thread. Shared by that thread and the awaiting coroutine, which
// may leave first (stop, deadline): the thread then finishes into a job nobody reads.
// The result is written before done.set() and read after done.wait(): the event's lock
// orders the two. A failure crosses as data and is thrown again on the awaiting thread: an
// exception object shared by two threads through an exception_ptr would be freed by
// whichever lets go last, and the count that decides it lives in libstdc++, where
// ThreadSanitizer cannot see it order anything.
struct resolve_job {
  std::string host;
  std::string shown;
  std::uint16_t port = 0;
  int family = AF_UNSPEC;
  std::vector<address> result;
  std::optional<std::error_code> lookup_error;  // a resolve_error's code
  std::optional<std::string> other_error;       // the what() of anything else (bad_alloc...)
  event done;

  void run() noexcept {
    try {
      result = lookup(host, shown, port, family, 0, detail::getaddrinfo_hook);
    } catch (const resolve_error& e) {
      lookup_error = e.code();
    } catch (const std::exception& e) {
      other_error = e.what();
    } catch (...) {
      other_error = "unknown exception";
    }
    done.set();
  }

  void rethrow_failure() const {
    if (lookup_error) throw resolve_error(*lookup_error, shown);
    if (other_error) throw std::runtime_error("resolve " + quoted(shown) + ": " + *other_error);
  }
};

task<void> wait_for_job(std::shared_ptr<resolve_job> job) { co_await job->done.wait(); }

std::string ms_text(std::chrono::steady_clock::duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

}  // namespace

resolve_error::resolve_error(std::error_code code, std::string host)
    : std::system_error(code, "resolve " + quoted(host)), host_(std::move(host)) {}

const std::error_category& resolve_category() noexcept {
  static const gai_category category;
  return category;
}

host_port split_host_port(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return std::invalid_argument("bad address " + quoted(text) + ": " + why);
  };
  std::string_view host;
  std::string_view port;
  if (text.starts_with('[')) {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos) throw bad("no ']' after the IPv6 host");
    host = text.substr(1, close - 1);
    if (text.substr(close + 1, 1) != ":") throw bad("no ':PORT' after the IPv6 host");
    port = text.substr(close + 2);
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) throw bad("no ':PORT'");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) throw bad("an IPv6 host needs brackets: [HOST]:PORT");
  }
  if (host.empty()) throw bad("no host before ':PORT'");
  unsigned value = 0;
  const auto r = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || r.ec != std::errc{} || r.ptr != port.data() + port.size() || value > 65535)
    throw bad("the port " + quoted(port) + " is not a number in 0..65535");
  return {std::string(host), static_cast<std::uint16_t>(value)};
}

bool is_numeric_host(std::string_view host) noexcept {
  host = unbracketed(host);
  char text[INET6_ADDRSTRLEN];
  if (host.empty() || host.size() >= sizeof text) return false;
  std::copy(host.begin(), host.end(), text);
  text[host.size()] = '\0';
  in6_addr storage;
  return ::inet_pton(AF_INET, text, &storage) == 1 || ::inet_pton(AF_INET6, text, &storage) == 1;
}

thread_pool& resolver_pool() {
  static thread_pool pool(4, "corio-resolve");
  return pool;
}

task<std::vector<address>> resolve(std::string host, std::uint16_t port, resolve_options options) {
  std::string name = checked_host(host);
  check_family(options.family);
  // AI_NUMERICHOST: getaddrinfo only parses (no NSS, no I/O), so it may run here.
  if (is_numeric_host(name))
    co_return lookup(name, host, port, options.family, AI_NUMERICHOST, &::getaddrinfo);

  const std::stop_token token = co_await this_coro::stop_token;
  if (token.stop_requested()) throw operation_cancelled("resolve " + quoted(host));
  auto job = std::make_shared<resolve_job>();
  job->host = std::move(name);
  job->shown = host;
  job->port = port;
  job->family = options.family;
  (void)resolver_pool().submit([job] { job->run(); });  // fire and forget: the job outlives a leaver

  try {
    if (options.deadline) {
      const auto started = std::chrono::steady_clock::now();
      auto r = co_await when_any(wait_for_job(job), sleep_until(*options.deadline));
      if (r.index() == 1)
        throw timed_out("resolve " + quoted(host) + ": no answer within " + ms_text(*options.deadline - started));
    } else {
      co_await wait_for_job(job);
    }
  } catch (const operation_cancelled&) {  // the event wait's own text does not name the host
    throw operation_cancelled("resolve " + quoted(host));
  }
  job->rethrow_failure();
  co_return std::move(job->result);
}

std::vector<address> resolve_blocking(std::string_view host, std::uint16_t port, int family) {
  if (loop::current() != nullptr)
    throw std::logic_error("corio::resolve_blocking(" + quoted(host) +
                           "): called on a loop thread, where it would stall every coroutine (co_await "
                           "corio::resolve instead)");
  const std::string name = checked_host(host);
  check_family(family);
  if (is_numeric_host(name)) return lookup(name, host, port, family, AI_NUMERICHOST, &::getaddrinfo);
  return lookup(name, host, port, family, 0, detail::getaddrinfo_hook);
}

}  // namespace corio
