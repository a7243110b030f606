#include "slot_map.hpp"

#include <algorithm>
#include <charconv>

#include "redis_error.hpp"

namespace corio::redis {

namespace {

[[noreturn]] void refuse(std::string_view what, std::string_view text) {
  // The server's own text, cut short: a lying server does not get to fill our logs.
  throw cluster_error("redis cluster: cannot follow " + std::string(what) + " \"" +
                      std::string(text.substr(0, 128)) + "\"");
}

bool to_int(std::string_view s, std::int64_t& out) {
  const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && r.ec == std::errc{} && r.ptr == s.data() + s.size();
}

}  // namespace

std::string node_address(std::string_view host, std::int64_t port, std::string_view asked_host) {
  if (port < 1 || port > 65535) throw cluster_error("redis cluster: a node's port " + std::to_string(port) + " is out of range");
  if (host.empty() || host == "?") host = asked_host;
  if (host.find(':') != std::string_view::npos && !host.starts_with("["))  // IPv6
    return "[" + std::string(host) + "]:" + std::to_string(port);
  return std::string(host) + ":" + std::to_string(port);
}

std::string node_host(const std::string& address) {
  std::string host = address.substr(0, address.rfind(':'));
  if (host.starts_with("[") && host.ends_with("]")) host = host.substr(1, host.size() - 2);
  return host;
}

redirect parse_redirect(std::string_view text, std::string_view asked_host) {
  redirect r{};
  std::string_view rest;
  if (text.starts_with("MOVED ")) {
    r.what = redirect::kind::moved;
    rest = text.substr(6);
  } else if (text.starts_with("ASK ")) {
    r.what = redirect::kind::ask;
    rest = text.substr(4);
  } else {
    refuse("a redirection", text);
  }
  const std::size_t space = rest.find(' ');
  std::int64_t slot = -1, port = 0;
  if (space == std::string_view::npos || !to_int(rest.substr(0, space), slot) || slot < 0 || slot >= cluster_slots)
    refuse("a redirection (bad slot)", text);
  const std::string_view where = rest.substr(space + 1);
  const std::size_t colon = where.rfind(':');
  if (colon == std::string_view::npos || !to_int(where.substr(colon + 1), port) || port < 1 || port > 65535 ||
      where.find_first_of(" \r\n") != std::string_view::npos)
    refuse("a redirection (bad address)", text);
  r.slot = static_cast<int>(slot);
  r.address = node_address(where.substr(0, colon), port, asked_host);
  return r;
}

slot_map slot_map::from_cluster_slots(const resp::reply& r, std::string_view asked_host) {
  using kind = resp::reply::kind;
  if (r.type != kind::array) refuse("CLUSTER SLOTS", r.str);
  slot_map m;
  for (const resp::reply& range : r.elements) {
    const auto& e = range.elements;
    if (range.type != kind::array || e.size() < 3 || e[0].type != kind::integer || e[1].type != kind::integer ||
        e[2].type != kind::array || e[2].elements.size() < 2 || e[2].elements[1].type != kind::integer ||
        (e[2].elements[0].type != kind::bulk && e[2].elements[0].type != kind::nil))
      refuse("CLUSTER SLOTS", "a range that is not [first, last, [host, port, ...], ...]");
    const std::int64_t first = e[0].integer, last = e[1].integer;
    if (first < 0 || last >= cluster_slots || first > last)
      refuse("CLUSTER SLOTS", "the range " + std::to_string(first) + "-" + std::to_string(last));
    const int owner = m.index_of(node_address(e[2].elements[0].str, e[2].elements[1].integer, asked_host));
    std::fill(m.owner_.begin() + first, m.owner_.begin() + last + 1, static_cast<std::int16_t>(owner));
  }
  return m;
}

void slot_map::assign(int slot, const std::string& address) {
  owner_.at(static_cast<std::size_t>(slot)) = static_cast<std::int16_t>(index_of(address));
}

std::size_t slot_map::covered() const noexcept {
  return static_cast<std::size_t>(std::count_if(owner_.begin(), owner_.end(), [](std::int16_t o) { return o >= 0; }));
}

int slot_map::index_of(const std::string& address) {
  const auto it = std::find(addresses_.begin(), addresses_.end(), address);
  if (it != addresses_.end()) return static_cast<int>(it - addresses_.begin());
  // A node per slot at most: a map of more nodes than slots is a lie.
  if (addresses_.size() >= cluster_slots) refuse("CLUSTER SLOTS", "more nodes than slots");
  addresses_.push_back(address);
  return static_cast<int>(addresses_.size() - 1);
}

}  // namespace corio::redis
