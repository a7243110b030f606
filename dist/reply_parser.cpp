#include "reply_parser.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "resp.hpp"

namespace corio::resp {

namespace {

// The offending byte, printable in an error text.
std::string quoted_byte(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7f && c != '"' && c != '\\') return std::string("\"") + c + '"';
  static constexpr char hex[] = "0123456789abcdef";
  return std::string("\"\\x") + hex[u >> 4] + hex[u & 15] + '"';
}

}  // namespace

std::string encode(const reply& r) {
  std::string out;
  switch (r.type) {
    case reply::kind::status: append_simple(out, r.str); break;
    case reply::kind::error: append_error(out, r.str); break;
    case reply::kind::integer: append_integer(out, r.integer); break;
    case reply::kind::bulk: append_bulk(out, r.str); break;
    case reply::kind::nil: append_null(out); break;
    case reply::kind::array:
      append_array_header(out, r.elements.size());
      for (const reply& e : r.elements) out += encode(e);
      break;
  }
  return out;
}

std::span<char> reply_parser::prepare(std::size_t at_least) {
  if (cap_ - end_ < at_least) {
    compact();
    if (cap_ - end_ < at_least) {
      const std::size_t cap = std::max(cap_ * 2, end_ + at_least);
      auto fresh = std::make_unique_for_overwrite<char[]>(cap);
      if (end_ > 0) std::memcpy(fresh.get(), buf_.get(), end_);
      buf_ = std::move(fresh);
      cap_ = cap;
    }
  }
  return {buf_.get() + end_, cap_ - end_};
}

void reply_parser::feed(std::string_view bytes) {
  if (bytes.empty()) return;
  std::memcpy(prepare(bytes.size()).data(), bytes.data(), bytes.size());
  commit(bytes.size());
}

void reply_parser::compact() {
  if (begin_ == 0) return;
  if (end_ > begin_) std::memmove(buf_.get(), buf_.get() + begin_, end_ - begin_);
  end_ -= begin_;
  search_ -= begin_;
  begin_ = 0;
}

void reply_parser::fail(protocol_error::kind k, const std::string& what) {
  failed_.emplace(k, "RESP protocol error from the server: " + what);
  throw *failed_;
}

bool reply_parser::take_line(std::string_view& line) {
  const char* base = buf_.get();
  std::size_t from = std::max(search_, begin_ + 1);  // past the type byte
  for (;;) {
    const void* cr = from < end_ ? std::memchr(base + from, '\r', end_ - from) : nullptr;
    const std::size_t at = cr ? static_cast<std::size_t>(static_cast<const char*>(cr) - base) : end_;
    scanned_bytes_ += at - from + (cr ? 1 : 0);
    if (cr == nullptr || at + 1 >= end_) {  // no line end here yet
      search_ = at;
      if (end_ - begin_ > max_line)
        fail(protocol_error::kind::line_too_long, "a line longer than 64 KiB without its \"\\r\\n\"");
      return false;
    }
    if (base[at + 1] == '\n') {
      line = std::string_view(base + begin_ + 1, at - begin_ - 1);
      begin_ = at + 2;
      search_ = begin_;
      return true;
    }
    from = at + 1;  // a lone '\r' belongs to the line
  }
}

reply* reply_parser::slot() {
  if (open_.empty()) {
    root_ = reply{};
    return &root_;
  }
  return &open_.back().node->elements.emplace_back();
}

bool reply_parser::place_done() {
  // A value was completed in the slot last handed out: close every array it fills up.
  while (!open_.empty()) {
    if (--open_.back().remaining > 0) return false;
    open_.pop_back();
  }
  return true;
}

std::optional<reply> reply_parser::next() {
  if (failed_) throw *failed_;
  const auto take_root = [this] { return std::optional<reply>(std::exchange(root_, reply{})); };
  for (;;) {
    if (in_bulk_) {
      reply& target = open_.empty() ? root_ : open_.back().node->elements.back();
      const std::size_t take = std::min(end_ - begin_, bulk_left_);
      target.str.append(buf_.get() + begin_, take);
      scanned_bytes_ += take;
      begin_ += take;
      bulk_left_ -= take;
      search_ = begin_;
      if (bulk_left_ > 0 || end_ - begin_ < 2) return std::nullopt;
      if (buf_[begin_] != '\r' || buf_[begin_ + 1] != '\n')
        fail(protocol_error::kind::missing_crlf, "no \"\\r\\n\" after a bulk string's data (a wrong length?)");
      begin_ += 2;
      search_ = begin_;
      in_bulk_ = false;
      if (place_done()) return take_root();
      continue;
    }
    if (begin_ == end_) return std::nullopt;
    // The type byte is judged as soon as it arrives, as hiredis does.
    const char type = buf_[begin_];
    if (type != '+' && type != '-' && type != ':' && type != '$' && type != '*')
      fail(protocol_error::kind::bad_type_byte, "got " + quoted_byte(type) + " as reply type byte");
    if (type == '*' && open_.size() == max_depth)
      fail(protocol_error::kind::too_deep, "arrays nested deeper than 8");
    std::string_view line;
    if (!take_line(line)) return std::nullopt;
    std::int64_t n = 0;
    const bool number = parse_int64(line, n);
    switch (type) {
      case '+':
      case '-': {
        reply* r = slot();
        r->type = type == '+' ? reply::kind::status : reply::kind::error;
        r->str.assign(line);
        break;
      }
      case ':': {
        if (!number) fail(protocol_error::kind::bad_integer, "bad integer value");
        reply* r = slot();
        r->type = reply::kind::integer;
        r->integer = n;
        break;
      }
      case '$': {
        if (!number) fail(protocol_error::kind::bad_bulk_length, "bad bulk string length");
        if (n < -1) fail(protocol_error::kind::bulk_out_of_range, "bulk string length out of range");
        reply* r = slot();
        if (n == -1) break;  // nil
        if (static_cast<std::uint64_t>(n) > max_bulk_length)
          fail(protocol_error::kind::bulk_too_long, "a bulk string of " + std::to_string(n) + " bytes, above 512 MiB");
        r->type = reply::kind::bulk;
        // Reserve only what has arrived: the rest grows as it comes.
        r->str.reserve(std::min(static_cast<std::size_t>(n), end_ - begin_));
        in_bulk_ = true;
        bulk_left_ = static_cast<std::size_t>(n);
        continue;
      }
      case '*': {
        if (!number) fail(protocol_error::kind::bad_array_length, "bad multi-bulk length");
        if (n < -1 || n > std::numeric_limits<std::int32_t>::max())
          fail(protocol_error::kind::array_out_of_range, "multi-bulk length out of range");
        reply* r = slot();
        if (n == -1) break;  // nil
        r->type = reply::kind::array;
        if (n == 0) break;
        // Every element takes at least 3 bytes ("+\r\n"): reserve no more than arrived.
        r->elements.reserve(std::min(static_cast<std::size_t>(n), (end_ - begin_) / 3));
        open_.push_back({r, n});
        continue;
      }
    }
    if (place_done()) return take_root();
  }
}

}  // namespace corio::resp
