#include "redis_endpoint.hpp"

#include <charconv>
#include <stdexcept>
#include <system_error>

#include "../runtime/address.hpp"
#include "../runtime/resolve.hpp"

namespace corio::redis {

bool is_unix_address(std::string_view address) noexcept {
  return address.starts_with("unix:") || address.starts_with("/") || address.starts_with("./");
}

namespace {

// The why of corio's `bad address "TEXT": WHY`, for a message that quotes TEXT already.
std::string reason(const std::invalid_argument& err) {
  const std::string what = err.what();
  const std::size_t cut = what.find("\": ");
  return cut == std::string::npos ? what : what.substr(cut + 3);
}

}  // namespace

endpoint parse_endpoint(std::string_view text) {
  endpoint e;
  auto bad = [&](const std::string& why) -> std::invalid_argument {
    std::string shown(text);
    if (!e.password.empty()) shown.replace(shown.find(e.password), e.password.size(), "***");
    return std::invalid_argument("bad redis address \"" + shown + "\": " + why);
  };
  if (text.starts_with("rediss://"))
    throw bad("TLS (rediss://) is not built in: put stunnel in front (docs/distributed.md)");
  if (is_unix_address(text)) {
    try {
      (void)address::parse(text);
    } catch (const std::invalid_argument& err) {
      throw bad(reason(err));
    }
    e.address = std::string(text);
    return e;
  }
  std::string_view host_port = text;
  if (text.starts_with("redis://")) {
    std::string_view rest = text.substr(8);
    const std::size_t slash = rest.find('/');
    const std::string_view authority = rest.substr(0, slash);
    const std::size_t at = authority.rfind('@');
    if (at != std::string_view::npos) {
      const std::string_view userinfo = authority.substr(0, at);
      const std::size_t colon = userinfo.find(':');
      e.user = std::string(userinfo.substr(0, colon));
      if (colon != std::string_view::npos) e.password = std::string(userinfo.substr(colon + 1));
    }
    host_port = at == std::string_view::npos ? authority : authority.substr(at + 1);
    if (slash != std::string_view::npos && slash + 1 < rest.size()) {
      const std::string_view db = rest.substr(slash + 1);
      const auto r = std::from_chars(db.data(), db.data() + db.size(), e.db);
      if (r.ec != std::errc{} || r.ptr != db.data() + db.size() || e.db < 0)
        throw bad("the database \"" + std::string(db) + "\" is not a number");
    }
  }
  std::string hp(host_port.empty() ? "127.0.0.1" : host_port);
  const std::size_t bracket = hp.rfind(']');
  const std::size_t colon = hp.rfind(':');
  if (colon == std::string::npos || (bracket != std::string::npos && colon < bracket)) hp += ":6379";
  try {
    (void)split_host_port(hp);
  } catch (const std::invalid_argument& err) {
    throw bad(reason(err));
  }
  e.address = std::move(hp);
  return e;
}

std::vector<endpoint> parse_seeds(std::string_view text) {
  std::vector<endpoint> seeds;
  for (;;) {
    const std::size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    if (item.empty()) throw std::invalid_argument("bad redis address list: an empty address (\"a,,b\", or a stray comma)");
    seeds.push_back(parse_endpoint(item));
    if (comma == std::string_view::npos) return seeds;
    text.remove_prefix(comma + 1);
  }
}

std::string seeds_text(std::string_view text) {
  std::string out;
  for (const endpoint& e : parse_seeds(text)) out += (out.empty() ? "" : ",") + e.address;
  return out;
}

}  // namespace corio::redis
