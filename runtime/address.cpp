#include "address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstddef>
#include <cstring>
#include <stdexcept>

#include "errors.hpp"

namespace corio {
namespace {

constexpr std::size_t path_offset = offsetof(sockaddr_un, sun_path);
constexpr std::size_t max_unix_path = sizeof(sockaddr_un::sun_path) - 1;  // room for the NUL

[[noreturn]] void bad(std::string_view text, const std::string& why) {
  throw std::invalid_argument("bad address \"" + std::string(text) + "\": " + why);
}

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

std::uint16_t parse_port(std::string_view text, std::string_view port) {
  if (port.empty()) bad(text, "missing port (expected HOST:PORT)");
  unsigned long value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (end != port.data() + port.size() || port.front() == '+' || port.front() == '-')
    bad(text, "port " + quoted(port) + " is not a decimal number");
  if (ec == std::errc::result_out_of_range || value > 65535)
    bad(text, "port " + std::string(port) + " is out of range 0..65535");
  return static_cast<std::uint16_t>(value);
}

}  // namespace

address::address() noexcept {
  storage_.ss_family = AF_UNIX;
  length_ = sizeof(sa_family_t);
}

address address::parse(std::string_view text) {
  if (text.empty()) bad(text, "empty address");
  address a;
  std::string_view path;
  if (text.starts_with("unix:")) {
    path = text.substr(5);
  } else if (text.starts_with("/") || text.starts_with("./")) {
    path = text;
  }
  if (!path.data()) {
    // An IP endpoint: [IPV6]:PORT or IPV4:PORT.
    std::string_view host, port;
    const bool v6 = text.front() == '[';
    if (v6) {
      const auto close = text.find(']');
      if (close == std::string_view::npos) bad(text, "missing ']' after the IPv6 address");
      host = text.substr(1, close - 1);
      const auto rest = text.substr(close + 1);
      if (rest.empty()) bad(text, "missing port (expected [IPV6]:PORT)");
      if (rest.front() != ':') bad(text, "expected ':' after ']'");
      port = rest.substr(1);
    } else {
      const auto colon = text.rfind(':');
      if (colon == std::string_view::npos) bad(text, "missing port (expected HOST:PORT)");
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
      if (host.find(':') != std::string_view::npos)
        bad(text, "an IPv6 address needs brackets, as in [::1]:80");
    }
    const std::string host_z(host);
    if (v6) {
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(&a.storage_);
      if (host.find('%') != std::string_view::npos) bad(text, "IPv6 scope ids are not supported");
      if (::inet_pton(AF_INET6, host_z.c_str(), &sin6->sin6_addr) != 1)
        bad(text, quoted(host) + " is not a numeric IPv6 address");
      sin6->sin6_family = AF_INET6;
      sin6->sin6_port = htons(parse_port(text, port));
      a.length_ = sizeof(sockaddr_in6);
      a.kind_ = kind::ipv6;
    } else {
      auto* sin = reinterpret_cast<sockaddr_in*>(&a.storage_);
      if (host.empty()) bad(text, "missing host (expected HOST:PORT; use 0.0.0.0 for any)");
      if (::inet_pton(AF_INET, host_z.c_str(), &sin->sin_addr) != 1) {
        const bool name = host.find_first_not_of("0123456789.") != std::string_view::npos;
        bad(text, name ? quoted(host) + " is not a numeric IPv4 address (host names are not resolved)"
                       : quoted(host) + " is not a numeric IPv4 address");
      }
      sin->sin_family = AF_INET;
      sin->sin_port = htons(parse_port(text, port));
      a.length_ = sizeof(sockaddr_in);
      a.kind_ = kind::ipv4;
    }
    return a;
  }
  if (path.empty()) bad(text, "empty unix socket path");
  if (path.size() > max_unix_path)
    bad(text, "unix socket path is " + std::to_string(path.size()) + " bytes; the limit is " +
                  std::to_string(max_unix_path));
  if (path.find('\0') != std::string_view::npos) bad(text, "unix socket path contains a NUL byte");
  auto* sun = reinterpret_cast<sockaddr_un*>(&a.storage_);
  sun->sun_family = AF_UNIX;
  std::memcpy(sun->sun_path, path.data(), path.size());
  if (path.front() == '@') {
    // Abstract namespace: a leading NUL, no terminator; the length delimits the name.
    sun->sun_path[0] = '\0';
    a.length_ = static_cast<socklen_t>(path_offset + path.size());
  } else {
    a.length_ = static_cast<socklen_t>(path_offset + path.size() + 1);
  }
  a.kind_ = kind::unix_path;
  return a;
}

address address::from_sockaddr(const sockaddr* sa, socklen_t length) {
  address a;
  if (length < sizeof(sa_family_t) || length > sizeof(sockaddr_storage))
    throw std::invalid_argument("address::from_sockaddr: bad length " + std::to_string(length));
  switch (sa->sa_family) {
    case AF_INET:
      if (length < sizeof(sockaddr_in)) break;
      std::memcpy(&a.storage_, sa, sizeof(sockaddr_in));
      a.length_ = sizeof(sockaddr_in);
      a.kind_ = kind::ipv4;
      return a;
    case AF_INET6:
      if (length < sizeof(sockaddr_in6)) break;
      std::memcpy(&a.storage_, sa, sizeof(sockaddr_in6));
      a.length_ = sizeof(sockaddr_in6);
      a.kind_ = kind::ipv6;
      return a;
    case AF_UNIX:
      if (length > sizeof(sockaddr_un)) break;
      std::memcpy(&a.storage_, sa, length);
      a.length_ = length;
      a.kind_ = kind::unix_path;
      return a;
    default:
      throw std::invalid_argument("address::from_sockaddr: unsupported family " +
                                  std::to_string(sa->sa_family));
  }
  throw std::invalid_argument("address::from_sockaddr: length " + std::to_string(length) +
                              " does not fit family " + std::to_string(sa->sa_family));
}

address address::local_of(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  detail::check_errno(::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len),
                      "getsockname fd " + std::to_string(fd));
  return from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

address address::peer_of(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  detail::check_errno(::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len),
                      "getpeername fd " + std::to_string(fd));
  return from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

std::uint16_t address::port() const noexcept {
  switch (kind_) {
    case kind::ipv4: return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
    case kind::ipv6: return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
    case kind::unix_path: break;
  }
  return 0;
}

address address::with_port(std::uint16_t port) const {
  address a = *this;
  switch (kind_) {
    case kind::ipv4: reinterpret_cast<sockaddr_in*>(&a.storage_)->sin_port = htons(port); break;
    case kind::ipv6: reinterpret_cast<sockaddr_in6*>(&a.storage_)->sin6_port = htons(port); break;
    case kind::unix_path: throw std::logic_error("address::with_port: " + to_string() + " has no port");
  }
  return a;
}

std::string address::path() const {
  if (kind_ != kind::unix_path || length_ <= path_offset) return {};
  const auto* sun = reinterpret_cast<const sockaddr_un*>(&storage_);
  const std::size_t n = length_ - path_offset;
  if (sun->sun_path[0] == '\0') return "@" + std::string(sun->sun_path + 1, n - 1);
  return std::string(sun->sun_path, ::strnlen(sun->sun_path, n));
}

std::string address::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  switch (kind_) {
    case kind::ipv4:
      ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, buf, sizeof buf);
      return std::string(buf) + ":" + std::to_string(port());
    case kind::ipv6:
      ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, buf, sizeof buf);
      return "[" + std::string(buf) + "]:" + std::to_string(port());
    case kind::unix_path: break;
  }
  return "unix:" + path();
}

bool operator==(const address& a, const address& b) noexcept {
  if (a.kind_ != b.kind_ || a.length_ != b.length_) return false;
  switch (a.kind_) {
    case address::kind::ipv4: {
      const auto* x = reinterpret_cast<const sockaddr_in*>(&a.storage_);
      const auto* y = reinterpret_cast<const sockaddr_in*>(&b.storage_);
      return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    case address::kind::ipv6: {
      const auto* x = reinterpret_cast<const sockaddr_in6*>(&a.storage_);
      const auto* y = reinterpret_cast<const sockaddr_in6*>(&b.storage_);
      return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
             std::memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    case address::kind::unix_path: break;
  }
  return a.path() == b.path();
}

}  // namespace corio
