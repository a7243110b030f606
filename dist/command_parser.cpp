#include "command_parser.hpp"

#include <cstring>

#include "resp.hpp"

namespace corio::resp {

namespace {

parse_result incomplete(std::size_t need) { return {parse_status::incomplete, 0, need, {}, 0}; }
parse_result failed(std::string_view why, char got = 0) { return {parse_status::error, 0, 0, why, got}; }
parse_result complete(std::size_t consumed) { return {parse_status::complete, consumed, 0, {}, 0}; }

bool blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; }

}  // namespace

std::string parse_result::error_text() const {
  std::string s(error);
  if (error.ends_with(' ')) {  // "... got ": the byte follows
    s.push_back('\'');
    s.push_back(got);
    s.push_back('\'');
  }
  return s;
}

void command_parser::reset() noexcept {
  pos_ = 0;
  search_ = 0;
  count_ = -1;
  length_ = -1;
  data_ = 0;
  args_.clear();
}

parse_result command_parser::finish(parse_result r) {
  if (r.status != parse_status::incomplete) reset();
  return r;
}

parse_result command_parser::parse(std::string_view buf, std::vector<std::string_view>& argv) {
  return finish(buf[0] == '*' ? parse_multibulk(buf, argv) : parse_inline(buf, argv));
}

std::size_t command_parser::take_line(std::string_view buf, std::size_t from, std::string_view& line) {
  const std::size_t start = search_ > from ? search_ : from;
  if (start >= buf.size()) return 0;
  const void* cr = std::memchr(buf.data() + start, '\r', buf.size() - start);
  if (cr == nullptr) {
    scanned_bytes_ += buf.size() - start;
    search_ = buf.size();
    return 0;
  }
  const std::size_t at = static_cast<std::size_t>(static_cast<const char*>(cr) - buf.data());
  scanned_bytes_ += at - start + 1;
  if (at + 1 >= buf.size()) {  // the '\n' is not here yet
    search_ = at;
    return 0;
  }
  search_ = 0;
  line = buf.substr(from, at - from);
  return at + 2;  // like Redis, the byte after '\r' is taken as the '\n'
}

parse_result command_parser::parse_inline(std::string_view buf, std::vector<std::string_view>& argv) {
  const std::size_t start = search_;
  const void* nl = start < buf.size() ? std::memchr(buf.data() + start, '\n', buf.size() - start) : nullptr;
  if (nl == nullptr) {
    scanned_bytes_ += buf.size() - start;
    search_ = buf.size();
    if (buf.size() > max_inline_length) return failed("Protocol error: too big inline request");
    return incomplete(buf.size() + 1);
  }
  const std::size_t end = static_cast<std::size_t>(static_cast<const char*>(nl) - buf.data());
  scanned_bytes_ += end - start + 1 + end;  // the search, then the words
  std::string_view line = buf.substr(0, end);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const std::size_t first = argv.size();
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && blank(line[i])) ++i;
    if (i == line.size()) break;
    if (line[i] == '"' || line[i] == '\'') {  // quoted word, no escapes
      const char q = line[i];
      const std::size_t close = line.find(q, i + 1);
      if (close == std::string_view::npos || (close + 1 < line.size() && !blank(line[close + 1]))) {
        argv.resize(first);
        return failed("Protocol error: unbalanced quotes in request");
      }
      argv.push_back(line.substr(i + 1, close - i - 1));
      i = close + 1;
    } else {
      const std::size_t word = i;
      while (i < line.size() && !blank(line[i])) ++i;
      argv.push_back(line.substr(word, i - word));
    }
  }
  return complete(end + 1);
}

parse_result command_parser::parse_multibulk(std::string_view buf, std::vector<std::string_view>& argv) {
  std::string_view line;
  if (count_ < 0) {
    const std::size_t next = take_line(buf, 1, line);
    if (next == 0) {
      if (buf.size() > max_inline_length) return failed("Protocol error: too big mbulk count string");
      return incomplete(buf.size() + 1);
    }
    std::int64_t count = 0;
    if (!parse_int64(line, count) || count > max_array_length)
      return failed("Protocol error: invalid multibulk length");
    if (count <= 0) return complete(next);
    count_ = count;
    pos_ = next;
  }
  while (static_cast<std::int64_t>(args_.size()) < count_) {
    if (length_ < 0) {
      if (pos_ >= buf.size()) return incomplete(pos_ + 1);
      if (buf[pos_] != '$') return failed("Protocol error: expected '$', got ", buf[pos_]);
      const std::size_t next = take_line(buf, pos_ + 1, line);
      if (next == 0) {
        if (buf.size() - pos_ > max_inline_length) return failed("Protocol error: too big bulk count string");
        return incomplete(buf.size() + 1);
      }
      std::int64_t length = 0;
      if (!parse_int64(line, length) || length < 0 || static_cast<std::uint64_t>(length) > max_bulk_length)
        return failed("Protocol error: invalid bulk length");
      length_ = length;
      data_ = next;
    }
    const std::size_t end = data_ + static_cast<std::size_t>(length_);
    if (buf.size() < end + 2) return incomplete(end + 2);
    if (buf[end] != '\r' || buf[end + 1] != '\n') return failed("Protocol error: expected CRLF after bulk data");
    args_.emplace_back(data_, static_cast<std::size_t>(length_));
    pos_ = end + 2;
    length_ = -1;
  }
  for (const auto& [offset, length] : args_) argv.push_back(buf.substr(offset, length));
  return complete(pos_);
}

}  // namespace corio::resp
