// address: parsing IPv4, IPv6 and Unix-domain endpoints, and exact messages on bad input.
#include <doctest/doctest.h>

#include <corio/runtime/address.hpp>

#include <netinet/in.h>

#include <stdexcept>
#include <string>

using corio::address;

namespace {

std::string parse_error(const std::string& text) {
  try {
    (void)address::parse(text);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("an IPv4 endpoint parses to AF_INET with its port and prints back the same") {
  const address a = address::parse("127.0.0.1:8080");
  CHECK(a.family_kind() == address::kind::ipv4);
  CHECK(a.domain() == AF_INET);
  CHECK(a.port() == 8080);
  CHECK(a.size() == sizeof(sockaddr_in));
  CHECK(a.to_string() == "127.0.0.1:8080");
  CHECK(address::parse("0.0.0.0:0").to_string() == "0.0.0.0:0");
  CHECK(address::parse("255.255.255.255:65535").port() == 65535);
}

TEST_CASE("an IPv6 endpoint needs brackets and prints in canonical form") {
  const address a = address::parse("[::1]:80");
  CHECK(a.family_kind() == address::kind::ipv6);
  CHECK(a.domain() == AF_INET6);
  CHECK(a.port() == 80);
  CHECK(a.to_string() == "[::1]:80");
  CHECK(address::parse("[2001:db8:0:0:0:0:0:1]:443").to_string() == "[2001:db8::1]:443");
  CHECK(address::parse("[::]:0").to_string() == "[::]:0");
}

TEST_CASE("unix paths parse with the unix: prefix, as absolute or ./ paths, and abstract names") {
  const address a = address::parse("unix:/tmp/x.sock");
  CHECK(a.family_kind() == address::kind::unix_path);
  CHECK(a.domain() == AF_UNIX);
  CHECK(a.path() == "/tmp/x.sock");
  CHECK(a.port() == 0);
  CHECK(a.to_string() == "unix:/tmp/x.sock");
  CHECK(address::parse("/tmp/x.sock") == a);
  CHECK(address::parse("./rel.sock").path() == "./rel.sock");
  CHECK(address::parse("unix:rel.sock").path() == "rel.sock");
  const address abstract = address::parse("unix:@corio-test");
  CHECK(abstract.path() == "@corio-test");
  CHECK(abstract.to_string() == "unix:@corio-test");
  CHECK(abstract.size() == offsetof(sockaddr_un, sun_path) + 11);
  CHECK(address().to_string() == "unix:");
}

TEST_CASE("to_string and parse round-trip and equality compares the endpoint") {
  for (const char* text : {"10.1.2.3:9", "[fe80::1]:1", "unix:/a/b", "unix:@x"}) {
    CAPTURE(text);
    CHECK(address::parse(address::parse(text).to_string()) == address::parse(text));
  }
  CHECK(address::parse("127.0.0.1:1") != address::parse("127.0.0.1:2"));
  CHECK(address::parse("127.0.0.1:1") != address::parse("[::1]:1"));
  CHECK(address::parse("127.0.0.1:1").with_port(99).to_string() == "127.0.0.1:99");
  CHECK_THROWS_AS((void)address::parse("unix:/x").with_port(1), std::logic_error);
}

TEST_CASE("bad input throws invalid_argument quoting the input and saying what is wrong") {
  CHECK(parse_error("") == R"(bad address "": empty address)");
  CHECK(parse_error("1.2.3:80") == R"(bad address "1.2.3:80": "1.2.3" is not a numeric IPv4 address)");
  CHECK(parse_error("127.0.0.1") == R"(bad address "127.0.0.1": missing port (expected HOST:PORT))");
  CHECK(parse_error("127.0.0.1:") == R"(bad address "127.0.0.1:": missing port (expected HOST:PORT))");
  CHECK(parse_error("127.0.0.1:70000") == R"(bad address "127.0.0.1:70000": port 70000 is out of range 0..65535)");
  CHECK(parse_error("127.0.0.1:99999999999999999999999") ==
        R"(bad address "127.0.0.1:99999999999999999999999": port 99999999999999999999999 is out of range 0..65535)");
  CHECK(parse_error("127.0.0.1:8x") == R"(bad address "127.0.0.1:8x": port "8x" is not a decimal number)");
  CHECK(parse_error("127.0.0.1:-1") == R"(bad address "127.0.0.1:-1": port "-1" is not a decimal number)");
  CHECK(parse_error(":80") == R"(bad address ":80": missing host (expected HOST:PORT; use 0.0.0.0 for any))");
  CHECK(parse_error("localhost:80") ==
        R"(bad address "localhost:80": "localhost" is not a numeric IPv4 address (host names are not resolved))");
  CHECK(parse_error("::1:80") == R"(bad address "::1:80": an IPv6 address needs brackets, as in [::1]:80)");
  CHECK(parse_error("[::1]") == R"(bad address "[::1]": missing port (expected [IPV6]:PORT))");
  CHECK(parse_error("[::1:80") == R"(bad address "[::1:80": missing ']' after the IPv6 address)");
  CHECK(parse_error("[::1]80") == R"(bad address "[::1]80": expected ':' after ']')");
  CHECK(parse_error("[::g]:80") == R"(bad address "[::g]:80": "::g" is not a numeric IPv6 address)");
  CHECK(parse_error("[fe80::1%eth0]:80") == R"(bad address "[fe80::1%eth0]:80": IPv6 scope ids are not supported)");
  CHECK(parse_error("unix:") == R"(bad address "unix:": empty unix socket path)");
  const std::string long_path = "/" + std::string(107, 'a');
  CHECK(parse_error(long_path) ==
        "bad address \"" + long_path + "\": unix socket path is 108 bytes; the limit is 107");
  CHECK(address::parse("/" + std::string(106, 'a')).path().size() == 107);
}
