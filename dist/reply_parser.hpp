#pragma once
// The client side of RESP2: the replies a Redis server sends, parsed as they arrive.
//
//     corio::resp::reply_parser parser;                // one per connection
//     std::span<char> room = parser.prepare(64 * 1024);
//     std::size_t n = read(fd, room.data(), room.size());
//     parser.commit(n);                                // or parser.feed(bytes)
//     while (std::optional<corio::resp::reply> r = parser.next()) use(*r);
//
// A reply is a tree: simple string ("+OK"), error ("-ERR ..."), integer, bulk string
// (binary, up to 512 MiB), nil ("$-1" and "*-1", as hiredis has one nil), or an array of
// replies nested at most 8 deep. The grammar and the errors are hiredis' (its reader is the
// test oracle, tests/dist/reply_parser_diff_test.cpp): a line ends at its first "\r\n";
// integers and lengths follow Redis' string2ll; an unknown type byte, a bad integer, a bulk
// length below -1, an array count below -1 or above INT32_MAX, and nesting deeper than 8
// are protocol errors. Stricter than hiredis, for a client that must not lose its place:
// the two bytes after a bulk's data must be "\r\n" (hiredis skips them unread), a bulk
// longer than 512 MiB (Redis' proto-max-bulk-len) and a line longer than 64 KiB are errors
// (hiredis waits for more bytes).
//
// Memory: nothing is allocated on a length or a count the peer announced before its bytes
// arrive: a bulk's string and an array's elements grow with the bytes received (a
// "*1000000000\r\n" header costs nothing until its elements come). The buffer holds at
// most one unfinished line (64 KiB) plus what one read brought; bulk data moves into the
// reply as soon as it arrives.
//
// Cost: linear. The parser keeps its place between reads: the open arrays, the bulk being
// filled, where its line search stopped; a reply that arrives byte by byte is never
// parsed again from its start (bytes_scanned() counts the work, for the tests).
//
// Errors: next() throws protocol_error; the parser then stays failed (the connection's
// stream position is lost: close it). Ownership: one parser per connection, one thread.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace corio::resp {

struct reply {
  enum class kind : std::uint8_t { status, error, integer, bulk, nil, array };

  kind type = kind::nil;
  std::int64_t integer = 0;     // integer
  std::string str;              // status, error (the text after '-'), bulk
  std::vector<reply> elements;  // array

  bool is_error() const noexcept { return type == kind::error; }
  bool is_nil() const noexcept { return type == kind::nil; }
  friend bool operator==(const reply&, const reply&) = default;
};

// A reply in RESP2 again (tests, logs).
std::string encode(const reply& r);

class protocol_error : public std::runtime_error {
 public:
  enum class kind : std::uint8_t {
    bad_type_byte,        // hiredis: Protocol error, got "x" as reply type byte
    bad_integer,          // hiredis: Bad integer value
    bad_bulk_length,      // hiredis: Bad bulk string length
    bulk_out_of_range,    // hiredis: Bulk string length out of range
    bad_array_length,     // hiredis: Bad multi-bulk length
    array_out_of_range,   // hiredis: Multi-bulk length out of range
    too_deep,             // hiredis: No support for nested multi bulk replies with depth > 7
    missing_crlf,         // stricter than hiredis
    bulk_too_long,        // stricter than hiredis
    line_too_long,        // stricter than hiredis
  };
  protocol_error(kind k, const std::string& what) : std::runtime_error(what), kind_(k) {}
  kind which() const noexcept { return kind_; }

 private:
  kind kind_;
};

class reply_parser {
 public:
  static constexpr std::size_t max_depth = 8;
  static constexpr std::size_t max_line = 64 * 1024;

  reply_parser() = default;

  // Room for at least `at_least` more bytes at the end of the buffer; commit what was
  // written into it.
  std::span<char> prepare(std::size_t at_least);
  void commit(std::size_t n) noexcept { end_ += n; }
  void feed(std::string_view bytes);

  // The next complete reply, or nothing until more bytes come. Throws protocol_error.
  std::optional<reply> next();

  // Bytes received but not yet part of a reply handed out (a partial line).
  std::size_t buffered() const noexcept { return end_ - begin_; }
  // True when a reply is partly parsed or bytes wait: the peer owes the rest.
  bool mid_reply() const noexcept { return !open_.empty() || in_bulk_ || begin_ != end_; }
  // Bytes looked at or copied since construction: a cost meter for the tests.
  std::uint64_t bytes_scanned() const noexcept { return scanned_bytes_; }

 private:
  struct open_array {
    reply* node;
    std::int64_t remaining;
  };
  // Takes the next line; false when it is not complete yet.
  bool take_line(std::string_view& line);
  // The value in the last slot() is complete: closes the arrays it fills up; true when
  // the whole reply is complete.
  bool place_done();
  // Where the next value goes: the root or a new element of the innermost open array.
  reply* slot();
  [[noreturn]] void fail(protocol_error::kind k, const std::string& what);
  void compact();

  std::unique_ptr<char[]> buf_;
  std::size_t cap_ = 0;
  std::size_t begin_ = 0;   // first byte not parsed
  std::size_t end_ = 0;     // end of the received bytes
  std::size_t search_ = 0;  // the line search resumes here (>= begin_)
  reply root_;
  std::vector<open_array> open_;
  bool in_bulk_ = false;
  std::size_t bulk_left_ = 0;  // data bytes still to come, then the "\r\n"
  std::optional<protocol_error> failed_;
  std::uint64_t scanned_bytes_ = 0;
};

}  // namespace corio::resp
