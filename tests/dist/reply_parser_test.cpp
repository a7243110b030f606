// reply_parser: every reply kind, replies split at every byte, errors (kind and text),
// the cost of a 1M-element reply trickled in byte by byte (linear), and memory that does
// not follow a count or a length the peer announced before its bytes arrived.
#include <doctest/doctest.h>

#include <corio/dist/reply_parser.hpp>

#include <cstdlib>
#include <new>
#include <optional>
#include <string>
#include <vector>

using corio::resp::protocol_error;
using corio::resp::reply;
using corio::resp::reply_parser;

namespace {

// Bytes allocated with operator new on this thread: the memory test's meter.
thread_local std::size_t allocated = 0;

std::vector<reply> parse_all(std::string_view in) {
  reply_parser p;
  p.feed(in);
  std::vector<reply> out;
  while (auto r = p.next()) out.push_back(std::move(*r));
  return out;
}

reply bulk(std::string s) { return {reply::kind::bulk, 0, std::move(s), {}}; }
reply integer(std::int64_t v) { return {reply::kind::integer, v, {}, {}}; }

protocol_error::kind error_of(std::string_view in) {
  reply_parser p;
  p.feed(in);
  try {
    while (p.next()) {
    }
  } catch (const protocol_error& e) {
    return e.which();
  }
  FAIL("no protocol_error for " << in);
  return protocol_error::kind::bad_type_byte;
}

}  // namespace

void* operator new(std::size_t n) {
  allocated += n;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

TEST_CASE("every reply kind parses into its tree") {
  const auto all = parse_all("+OK\r\n-ERR no\r\n:-42\r\n$5\r\na\r\nbc\r\n$-1\r\n*-1\r\n*0\r\n*2\r\n:1\r\n*1\r\n$0\r\n\r\n");
  REQUIRE(all.size() == 8);
  CHECK((all[0].type == reply::kind::status && all[0].str == "OK"));
  CHECK((all[1].is_error() && all[1].str == "ERR no"));
  CHECK(all[2] == integer(-42));
  CHECK(all[3] == bulk("a\r\nbc"));
  CHECK(all[4].is_nil());
  CHECK(all[5].is_nil());
  CHECK((all[6].type == reply::kind::array && all[6].elements.empty()));
  CHECK(encode(all[7]) == "*2\r\n:1\r\n*1\r\n$0\r\n\r\n");
  CHECK(parse_all("+a\rb\r\n")[0].str == "a\rb");  // a line ends at "\r\n", as in hiredis
}

TEST_CASE("a reply split at every byte parses as whole") {
  const std::string in = "*3\r\n$4\r\nab\r\n\r\n*2\r\n+x\r\n$-1\r\n:123\r\n-E\r\n";
  const auto whole = parse_all(in);
  REQUIRE(whole.size() == 2);
  for (std::size_t cut = 1; cut < in.size(); ++cut) {
    reply_parser p;
    p.feed(in.substr(0, cut));
    std::vector<reply> got;
    while (auto r = p.next()) got.push_back(std::move(*r));
    p.feed(in.substr(cut));
    while (auto r = p.next()) got.push_back(std::move(*r));
    CHECK(got == whole);
    CHECK(!p.mid_reply());
  }
}

TEST_CASE("malformed replies throw protocol_error of their kind and leave the parser failed") {
  using k = protocol_error::kind;
  CHECK(error_of("x") == k::bad_type_byte);
  CHECK(error_of(":12a\r\n") == k::bad_integer);
  CHECK(error_of(":01\r\n") == k::bad_integer);
  CHECK(error_of("$abc\r\n") == k::bad_bulk_length);
  CHECK(error_of("$-2\r\n") == k::bulk_out_of_range);
  CHECK(error_of("*x\r\n") == k::bad_array_length);
  CHECK(error_of("*2147483648\r\n") == k::array_out_of_range);
  CHECK(error_of("*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*") == k::too_deep);
  CHECK(error_of("$3\r\nabcXY") == k::missing_crlf);
  CHECK(error_of("$536870913\r\n") == k::bulk_too_long);
  CHECK(error_of("+" + std::string(70000, 'a')) == k::line_too_long);

  reply_parser p;
  p.feed("\x01");
  try {
    (void)p.next();
    FAIL("no error");
  } catch (const protocol_error& e) {
    CHECK(std::string(e.what()) == "RESP protocol error from the server: got \"\\x01\" as reply type byte");
  }
  p.feed("+OK\r\n");
  CHECK_THROWS_AS((void)p.next(), protocol_error);
}

TEST_CASE("a 1M-element reply trickled in byte by byte costs linear work") {
  std::string in = "*1000000\r\n";
  for (int i = 0; i < 1000000; ++i) in += (i % 2 == 0) ? ":7\r\n" : "$2\r\nab\r\n";
  reply_parser p;
  std::optional<reply> r;
  for (std::size_t i = 0; i < in.size() && !r; ++i) {
    p.feed(std::string_view(in).substr(i, 1));
    r = p.next();
  }
  REQUIRE(r.has_value());
  REQUIRE(r->elements.size() == 1000000);
  CHECK(r->elements[0] == integer(7));
  CHECK(r->elements[999999] == bulk("ab"));
  MESSAGE("bytes scanned: " << p.bytes_scanned() << " for " << in.size() << " bytes");
  CHECK(p.bytes_scanned() <= 2 * in.size());
  CHECK(p.buffered() == 0);
}

TEST_CASE("an announced count or length allocates nothing before its bytes arrive") {
  reply_parser p;
  (void)p.prepare(16 * 1024);  // the buffer a client would read into
  const std::size_t before = allocated;
  p.feed("*1000000000\r\n*2147483647\r\n$536870912\r\n");
  CHECK_FALSE(p.next().has_value());
  CHECK(allocated - before < 4096);
  p.feed("abc");  // 3 of the bulk's bytes
  CHECK_FALSE(p.next().has_value());
  CHECK(allocated - before < 4096);
  CHECK(p.mid_reply());
}

TEST_CASE("a 4 MiB bulk arriving in 1 KiB reads is copied once, not re-scanned") {
  const std::string data(4 << 20, 'z');
  const std::string in = "$" + std::to_string(data.size()) + "\r\n" + data + "\r\n";
  reply_parser p;
  std::optional<reply> r;
  for (std::size_t at = 0; at < in.size() && !r; at += 1024) {
    p.feed(std::string_view(in).substr(at, 1024));
    r = p.next();
  }
  REQUIRE(r.has_value());
  CHECK(r->str == data);
  CHECK(p.bytes_scanned() <= in.size() + 16);
}
