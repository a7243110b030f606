#pragma once
// The server side of RESP2: reads the commands a client sends, in place.
//
//     corio::resp::command_parser parser;              // one per connection
//     std::vector<std::string_view> argv;
//     corio::resp::parse_result r = parser.parse(buffer, argv);
//     // complete: argv holds the arguments (views into `buffer`), r.consumed bytes used
//     // incomplete: read more, then call again with the same command's bytes from its
//     //   start; r.need is the smallest buffer size that can complete it
//     // error: reply "-ERR " + r.error_text() and close, as Redis does
//
// Requests: a client sends either a multibulk array of bulk strings
// ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n") or an inline command, one line of words separated by
// blanks ("PING\r\n", what telnet and redis-benchmark's PING_INLINE send). Like Redis:
// - an array header of more than 1M elements, or not an integer, is "invalid multibulk
//   length"; a count of 0 or less is an empty command (skipped);
// - a bulk length that is negative, not an integer, or above 512 MiB (proto-max-bulk-len)
//   is "invalid bulk length"; an element not starting with '$' is "expected '$', got 'c'";
// - a header line or an inline request longer than 64 KiB without its line end is "too
//   big ..." (so a client cannot grow the buffer without end by never ending a line);
// - integers follow Redis' string2ll (resp::parse_int64);
// - a line ends at its first '\r'; the byte after it is taken as the '\n' unread.
// Stricter than Redis: the two bytes after a bulk's data must be "\r\n" (Redis skips them
// unread), so a wrong length is reported instead of silently shifting the stream.
//
// Cost: linear. While a command is incomplete the parser keeps how far it got (elements
// read, where its line search stopped), so a command that arrives in pieces is never parsed
// again from its start; the caller's buffer may move (kv_server compacts it) because the
// parser keeps offsets from the command's start, never pointers.
//
// Ownership: one parser per connection, used by one thread; no allocation beyond the
// offsets of the arguments read so far (never on a count a client announced).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace corio::resp {

enum class parse_status { complete, incomplete, error };

struct parse_result {
  parse_status status;
  std::size_t consumed = 0;     // complete: bytes of the buffer this command used
  std::size_t need = 0;         // incomplete: the buffer must grow to at least this many bytes
  std::string_view error = {};  // error: the text after "-ERR " (see error_text)
  char got = 0;                 // error: the offending byte, when there is one

  // The whole message after "-ERR "; Redis quotes the offending byte as is.
  std::string error_text() const;
};

class command_parser {
 public:
  // Parses the command at the start of `buf` (which must not be empty). On complete, its
  // arguments are appended to `argv` as views into `buf` (none for an empty command: skip
  // it); on incomplete or error, `argv` is left as it was. After incomplete, the next call
  // must pass the same command's bytes from its start (more of them, or the same); after
  // complete or error the parser starts afresh.
  parse_result parse(std::string_view buf, std::vector<std::string_view>& argv);

  // Forgets a partial command (the connection was reset).
  void reset() noexcept;

  // Bytes looked at since construction: a cost meter for the tests (linear, not quadratic).
  std::uint64_t bytes_scanned() const noexcept { return scanned_bytes_; }

 private:
  parse_result parse_inline(std::string_view buf, std::vector<std::string_view>& argv);
  parse_result parse_multibulk(std::string_view buf, std::vector<std::string_view>& argv);
  // The line starting at `from` up to its '\r' (the byte after it taken as '\n'): sets
  // `line` and returns the offset after the line end; 0 when the line is not complete.
  std::size_t take_line(std::string_view buf, std::size_t from, std::string_view& line);
  parse_result finish(parse_result r);

  std::size_t pos_ = 0;       // offset of the first element (or header) not parsed yet
  std::size_t search_ = 0;    // the '\r' (or '\n') search resumes here
  std::int64_t count_ = -1;   // elements announced; -1 while the header is not read
  std::int64_t length_ = -1;  // the current element's bulk length, once its header is read
  std::size_t data_ = 0;      // offset of the current element's data
  std::vector<std::pair<std::size_t, std::size_t>> args_;  // offset and length of each read
  std::uint64_t scanned_bytes_ = 0;
};

// One command parsed with a fresh parser: for a caller that holds the whole input.
inline parse_result parse_command(std::string_view buf, std::vector<std::string_view>& argv) {
  return command_parser{}.parse(buf, argv);
}

}  // namespace corio::resp
