// command_parser: requests whole and in pieces (every split point gives the same result),
// Redis' error texts, and the cost of a 1M-argument request trickled in byte by byte
// (linear: the parser keeps its place instead of parsing from the command's start).
#include <doctest/doctest.h>

#include <corio/dist/command_parser.hpp>

#include <string>
#include <string_view>
#include <vector>

using corio::resp::command_parser;
using corio::resp::parse_command;
using corio::resp::parse_status;

namespace {

// Feeds `input` one more byte per call, as a slow client would, and returns the
// arguments of the first command.
std::vector<std::string> trickle(command_parser& p, std::string_view input) {
  std::vector<std::string_view> argv;
  for (std::size_t n = 1; n <= input.size(); ++n) {
    const auto r = p.parse(input.substr(0, n), argv);
    if (r.status == parse_status::complete) {
      REQUIRE(r.consumed == n);
      return {argv.begin(), argv.end()};
    }
    REQUIRE(r.status == parse_status::incomplete);
  }
  FAIL("the command never completed");
  return {};
}

}  // namespace

TEST_CASE("a multibulk command parses whole into views of the buffer") {
  const std::string in = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva\r\nl\r\n*1\r\n$4\r\nPING\r\n";
  std::vector<std::string_view> argv;
  const auto r = parse_command(in, argv);
  REQUIRE(r.status == parse_status::complete);
  CHECK(r.consumed == in.find("*1"));
  CHECK(argv == std::vector<std::string_view>{"SET", "k", "va\r\nl"});
  CHECK(argv[0].data() == in.data() + 8);
}

TEST_CASE("an inline command splits on blanks and keeps quoted words") {
  std::vector<std::string_view> argv;
  const std::string in = "SET  'a b' \"c\"\r\n";
  const auto r = parse_command(in, argv);
  REQUIRE(r.status == parse_status::complete);
  CHECK(r.consumed == in.size());
  CHECK(argv == std::vector<std::string_view>{"SET", "a b", "c"});
}

TEST_CASE("a command split at every byte gives the same arguments as whole") {
  const std::string in = "*4\r\n$3\r\nSET\r\n$0\r\n\r\n$10\r\n0123456789\r\n$2\r\n\r\n\r\n";
  for (std::size_t cut = 1; cut < in.size(); ++cut) {
    command_parser p;
    std::vector<std::string_view> argv;
    auto r = p.parse(std::string_view(in).substr(0, cut), argv);
    REQUIRE(r.status == parse_status::incomplete);
    CHECK(r.need > cut);
    CHECK(argv.empty());
    r = p.parse(in, argv);
    REQUIRE(r.status == parse_status::complete);
    CHECK(argv == std::vector<std::string_view>{"SET", "", "0123456789", "\r\n"});
  }
  command_parser p;
  CHECK(trickle(p, "PING hello\r\n") == std::vector<std::string>{"PING", "hello"});
  CHECK(trickle(p, in) == std::vector<std::string>{"SET", "", "0123456789", "\r\n"});
}

TEST_CASE("the parser accepts a moved buffer between calls: it keeps offsets, not pointers") {
  const std::string in = "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
  command_parser p;
  std::vector<std::string_view> argv;
  std::string first(in.substr(0, 15));
  REQUIRE(p.parse(first, argv).status == parse_status::incomplete);
  first.assign(64, 'x');  // the old bytes are gone
  const std::string moved = in;
  REQUIRE(p.parse(moved, argv).status == parse_status::complete);
  CHECK(argv == std::vector<std::string_view>{"GET", "key"});
}

TEST_CASE("malformed requests give Redis' error texts and reset the parser") {
  struct row {
    std::string in;
    std::string text;
  };
  const row rows[] = {
      {"*x\r\n", "Protocol error: invalid multibulk length"},
      {"*1048577\r\n", "Protocol error: invalid multibulk length"},
      {"*1\r\n:1\r\n", "Protocol error: expected '$', got ':'"},
      {"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"},
      {"*1\r\n$536870913\r\n", "Protocol error: invalid bulk length"},
      {"*1\r\n$01\r\nx\r\n", "Protocol error: invalid bulk length"},
      {"*1\r\n$1\r\nxyz", "Protocol error: expected CRLF after bulk data"},
      {"SET 'a\r\n", "Protocol error: unbalanced quotes in request"},
      {"*" + std::string(70000, '1'), "Protocol error: too big mbulk count string"},
      {"*1\r\n$" + std::string(70000, '1'), "Protocol error: too big bulk count string"},
      {std::string(70000, 'a'), "Protocol error: too big inline request"},
  };
  for (const row& r : rows) {
    CAPTURE(r.in.substr(0, 20));
    command_parser p;
    std::vector<std::string_view> argv;
    const auto res = p.parse(r.in, argv);
    REQUIRE(res.status == parse_status::error);
    CHECK(res.error_text() == r.text);
    CHECK(argv.empty());
    // Afresh after the error.
    REQUIRE(p.parse("*1\r\n$4\r\nPING\r\n", argv).status == parse_status::complete);
    CHECK(argv == std::vector<std::string_view>{"PING"});
  }
}

TEST_CASE("an empty or negative array is an empty command") {
  std::vector<std::string_view> argv;
  auto r = parse_command("*0\r\n", argv);
  CHECK((r.status == parse_status::complete && r.consumed == 4 && argv.empty()));
  r = parse_command("*-5\r\nPING\r\n", argv);
  CHECK((r.status == parse_status::complete && r.consumed == 5 && argv.empty()));
}

TEST_CASE("a 1M-argument request trickled in byte by byte costs linear work") {
  std::string in = "*1048576\r\n";
  for (int i = 0; i < 1048576; ++i) in += "$1\r\nx\r\n";
  command_parser p;
  std::vector<std::string_view> argv;
  std::size_t calls = 0;
  for (std::size_t n = 1; n <= in.size(); ++n) {
    ++calls;
    const auto r = p.parse(std::string_view(in).substr(0, n), argv);
    if (r.status == parse_status::complete) break;
    REQUIRE(r.status == parse_status::incomplete);
  }
  CHECK(calls == in.size());
  REQUIRE(argv.size() == 1048576);
  // Each byte is looked at a bounded number of times; parsing from the start on every
  // call would cost ~in.size()^2 / 2 = 2.8e13.
  MESSAGE("bytes scanned: " << p.bytes_scanned() << " for " << in.size() << " bytes");
  CHECK(p.bytes_scanned() <= 2 * in.size());
}
