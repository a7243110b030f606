#pragma once
// address: where a socket listens or connects — an IPv4 or IPv6 endpoint, or a Unix-domain
// socket path. A value type (a sockaddr_storage and its length), cheap to copy.
//
//     auto a = corio::address::parse("127.0.0.1:8080");
//     auto b = corio::address::parse("[::1]:80");
//     auto c = corio::address::parse("unix:/run/app.sock");   // or just "/run/app.sock"
//     auto d = corio::address::parse("unix:@app");             // Linux abstract namespace
//     a.to_string() == "127.0.0.1:8080"
//
// Grammar (parse): `IPV4:PORT`, `[IPV6]:PORT`, `unix:PATH`, or a PATH starting with '/'
// or "./". Hosts are numeric only: parse never resolves names (no blocking DNS on a
// loop thread); "localhost:80" is refused with a message that says so. For names use
// corio::resolve (resolve.hpp), or tcp_stream::connect(host, port) (stream.hpp). IPv6 scope ids
// ("%eth0") are not supported. PORT is decimal 0..65535 (0: the kernel picks one at bind).
// A Unix path must fit sun_path (at most 107 bytes); "@name" is the abstract namespace.
//
// Errors: bad input throws std::invalid_argument whose message quotes the input and says
// what is wrong: `bad address "1.2.3:80": "1.2.3" is not a numeric IPv4 address`.

#include <sys/socket.h>
#include <sys/un.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace corio {

class address {
 public:
  enum class kind { ipv4, ipv6, unix_path };

  // Parses the grammar above; throws std::invalid_argument on bad input.
  static address parse(std::string_view text);
  // From a kernel-filled sockaddr (accept, getsockname). Throws std::invalid_argument for
  // a family other than AF_INET, AF_INET6, AF_UNIX, or a length that does not fit.
  static address from_sockaddr(const sockaddr* sa, socklen_t length);
  // The address of a socket's own end (getsockname) or its peer's (getpeername).
  static address local_of(int fd);
  static address peer_of(int fd);

  // An unnamed Unix-domain address (what accept reports for a client that did not bind).
  address() noexcept;

  kind family_kind() const noexcept { return kind_; }
  bool is_ip() const noexcept { return kind_ != kind::unix_path; }
  // AF_INET, AF_INET6 or AF_UNIX.
  int domain() const noexcept { return storage_.ss_family; }
  // The port of an IP address; 0 for a Unix-domain address.
  std::uint16_t port() const noexcept;
  // The same address with another port; throws std::logic_error for a Unix address.
  address with_port(std::uint16_t port) const;
  // The path of a Unix address ("@name" for the abstract namespace, "" when unnamed).
  std::string path() const;

  // "127.0.0.1:8080", "[::1]:80", "unix:/tmp/x.sock", "unix:@name", "unix:" (unnamed).
  // parse(to_string()) gives back an equal address.
  std::string to_string() const;

  const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
  socklen_t size() const noexcept { return length_; }

  friend bool operator==(const address& a, const address& b) noexcept;

 private:
  sockaddr_storage storage_{};
  socklen_t length_ = 0;
  kind kind_ = kind::unix_path;
};

}  // namespace corio
