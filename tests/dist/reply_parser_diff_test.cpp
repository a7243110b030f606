// reply_parser against hiredis' reader (the oracle): random valid replies and mutations of
// them (flipped, inserted, deleted bytes, truncations) must give the same replies and the
// same errors, fed to corio in random pieces and to hiredis whole. The documented
// strictness (reply_parser.hpp: no "\r\n" after a bulk, a bulk above 512 MiB, a line above
// 64 KiB) is the only allowed difference: there hiredis must have accepted or waited.
// CORIO_FUZZ_SEED=<n> replays a run; the seed is printed. Runs under ASan+UBSan too.
#include <doctest/doctest.h>
#include <hiredis/hiredis.h>

#include <corio/dist/reply_parser.hpp>

#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

using corio::resp::protocol_error;
using corio::resp::reply;
using corio::resp::reply_parser;

namespace {

std::string encode_escaped(const std::string& s) {
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\r') out += "\\r";
    else if (c == '\n') out += "\\n";
    else if (u < 0x20 || u >= 0x7f) out += "\\x" + std::string{"0123456789abcdef"[u >> 4], "0123456789abcdef"[u & 15]};
    else out.push_back(c);
  }
  return out;
}

enum class ending { incomplete, error };

struct outcome {
  std::vector<reply> replies;
  ending end = ending::incomplete;
  std::optional<protocol_error::kind> error;
  std::string error_text;
};

reply from_hiredis(const redisReply* r) {
  reply out;
  switch (r->type) {
    case REDIS_REPLY_STATUS: out.type = reply::kind::status; out.str.assign(r->str, r->len); break;
    case REDIS_REPLY_ERROR: out.type = reply::kind::error; out.str.assign(r->str, r->len); break;
    case REDIS_REPLY_INTEGER: out.type = reply::kind::integer; out.integer = r->integer; break;
    case REDIS_REPLY_STRING: out.type = reply::kind::bulk; out.str.assign(r->str, r->len); break;
    case REDIS_REPLY_NIL: out.type = reply::kind::nil; break;
    case REDIS_REPLY_ARRAY:
      out.type = reply::kind::array;
      for (std::size_t i = 0; i < r->elements; ++i) out.elements.push_back(from_hiredis(r->element[i]));
      break;
    default: FAIL("hiredis reply type " << r->type);
  }
  return out;
}

std::optional<protocol_error::kind> kind_of_hiredis_error(std::string_view text) {
  using k = protocol_error::kind;
  const std::pair<std::string_view, k> table[] = {
      {"Protocol error, got", k::bad_type_byte},
      {"Bad integer value", k::bad_integer},
      {"Bad bulk string length", k::bad_bulk_length},
      {"Bulk string length out of range", k::bulk_out_of_range},
      {"Bad multi-bulk length", k::bad_array_length},
      {"Multi-bulk length out of range", k::array_out_of_range},
      {"No support for nested multi bulk", k::too_deep},
  };
  for (const auto& [prefix, kind] : table)
    if (text.starts_with(prefix)) return kind;
  return std::nullopt;
}

outcome run_hiredis(const std::string& in) {
  outcome o;
  std::unique_ptr<redisReader, void (*)(redisReader*)> r(redisReaderCreate(), redisReaderFree);
  REQUIRE(redisReaderFeed(r.get(), in.data(), in.size()) == REDIS_OK);
  for (;;) {
    void* rep = nullptr;
    if (redisReaderGetReply(r.get(), &rep) != REDIS_OK) {
      o.end = ending::error;
      o.error_text = r->errstr;
      o.error = kind_of_hiredis_error(o.error_text);
      return o;
    }
    if (rep == nullptr) return o;
    o.replies.push_back(from_hiredis(static_cast<redisReply*>(rep)));
    freeReplyObject(rep);
  }
}

outcome run_corio(const std::string& in, std::mt19937_64& rng) {
  outcome o;
  reply_parser p;
  try {
    for (std::size_t at = 0; at < in.size();) {
      const std::size_t n = std::min<std::size_t>(in.size() - at, 1 + rng() % 12);
      p.feed(std::string_view(in).substr(at, n));
      at += n;
      while (auto r = p.next()) o.replies.push_back(std::move(*r));
    }
  } catch (const protocol_error& e) {
    o.end = ending::error;
    o.error = e.which();
    o.error_text = e.what();
  }
  return o;
}

class generator {
 public:
  explicit generator(std::uint64_t seed) : rng_(seed) {}
  std::mt19937_64& rng() { return rng_; }

  std::string replies() {
    std::string out;
    for (int n = 1 + pick(3); n > 0; --n) out += one(0);
    return out;
  }

  std::string mutate(std::string s) {
    static constexpr char interesting[] = "\r\n*$:+-0123456789 \x00\xff";
    for (int n = 1 + pick(3); n > 0; --n) {
      const std::size_t at = s.empty() ? 0 : pick(s.size());
      const char c = pick(2) ? interesting[pick(sizeof interesting - 1)] : static_cast<char>(rng_());
      switch (pick(5)) {
        case 0: if (!s.empty()) s[at] = c; break;
        case 1: s.insert(s.begin() + static_cast<std::ptrdiff_t>(at), c); break;
        case 2: if (!s.empty()) s.erase(at, 1); break;
        case 3: s.resize(at); break;
        case 4: s.insert(at, s.substr(at, pick(8))); break;
      }
    }
    return s;
  }

 private:
  std::size_t pick(std::size_t n) { return static_cast<std::size_t>(rng_() % n); }

  std::string text(bool binary) {
    std::string s;
    for (std::size_t n = pick(12); n > 0; --n) {
      char c = static_cast<char>(pick(4) == 0 ? "\r\n\t "[pick(4)] : 'a' + static_cast<char>(pick(26)));
      if (binary && pick(4) == 0) c = static_cast<char>(rng_());
      s.push_back(c);
    }
    if (!binary) {  // a status or error line must not contain "\r\n"
      for (std::size_t i; (i = s.find("\r\n")) != std::string::npos;) s.erase(i, 2);
      if (s.ends_with('\r')) s.pop_back();
    }
    return s;
  }

  std::string one(int depth) {
    std::string out;
    switch (pick(depth < 8 ? 7 : 6)) {
      case 0: return "+" + text(false) + "\r\n";
      case 1: return "-" + text(false) + "\r\n";
      case 2: {
        static constexpr std::int64_t edges[] = {0, 1, -1, INT64_MAX, INT64_MIN, 1000000};
        const std::int64_t v = pick(3) == 0 ? edges[pick(6)] : static_cast<std::int64_t>(rng_()) >> pick(64);
        return ":" + std::to_string(v) + "\r\n";
      }
      case 3: {
        const std::string s = text(true);
        return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n";
      }
      case 4: return "$-1\r\n";
      case 5: return "*-1\r\n";
      default: {
        const std::size_t n = pick(4);
        out = "*" + std::to_string(n) + "\r\n";
        for (std::size_t i = 0; i < n; ++i) out += one(depth + 1);
        return out;
      }
    }
  }

  std::mt19937_64 rng_;
};

bool stricter_than_hiredis(protocol_error::kind k) {
  using e = protocol_error::kind;
  return k == e::missing_crlf || k == e::bulk_too_long || k == e::line_too_long;
}

// The same replies and the same ending, or one of corio's documented stricter errors
// after the replies both gave.
void compare(const std::string& in, std::mt19937_64& rng, std::size_t& stricter) {
  const outcome h = run_hiredis(in);
  const outcome c = run_corio(in, rng);
  CAPTURE(encode_escaped(in));
  if (c.error && stricter_than_hiredis(*c.error)) {
    ++stricter;
    REQUIRE(c.replies.size() <= h.replies.size() + 1);
    for (std::size_t i = 0; i < c.replies.size() && i < h.replies.size(); ++i) REQUIRE(c.replies[i] == h.replies[i]);
    return;
  }
  CAPTURE(h.error_text);
  CAPTURE(c.error_text);
  REQUIRE(c.replies == h.replies);
  REQUIRE(c.end == h.end);
  if (h.end == ending::error) {
    REQUIRE(h.error.has_value());
    REQUIRE(c.error == h.error);
  }
}

}  // namespace


TEST_CASE("reply_parser gives hiredis' replies and errors on random and mutated input") {
  std::uint64_t seed = std::random_device{}();
  if (const char* s = std::getenv("CORIO_FUZZ_SEED")) seed = std::strtoull(s, nullptr, 10);
  MESSAGE("CORIO_FUZZ_SEED=" << seed);
  generator gen(seed);
  std::size_t stricter = 0, errors = 0;
  constexpr int rounds = 20000;
  for (int i = 0; i < rounds; ++i) {
    const std::string valid = gen.replies();
    compare(valid, gen.rng(), stricter);
    const std::string bad = gen.mutate(valid);
    compare(bad, gen.rng(), stricter);
    errors += run_hiredis(bad).end == ending::error;
  }
  MESSAGE(errors << " of " << rounds << " mutated inputs were errors; " << stricter
                 << " hit corio's stricter checks");
  CHECK(errors > rounds / 10);  // the mutations do reach the error paths
}
