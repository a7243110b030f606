#pragma once
// Which node of a Redis Cluster serves which hash slot, as the client believes it: read
// from CLUSTER SLOTS, corrected slot by slot by MOVED redirections. Also the parsing of the
// two redirections a node answers instead of running a command:
//
//   -MOVED 3999 127.0.0.1:6381   slot 3999 lives on that node now: update the map, retry there
//   -ASK 3999 127.0.0.1:6381     slot 3999 is being migrated and this key has left: send
//                                ASKING then the command to that node, once; the map stays
//
// Addresses come as the node announces them: "IP:PORT" ("::1:6381" for IPv6, last colon
// first), "NAME:PORT" (cluster-preferred-endpoint-type hostname; the connection to the
// node resolves it, runtime/resolve.hpp), or ":PORT" / "?:PORT" when the node does not know its own endpoint (the host is then
// the one of the node that answered). Anything else (a slot out of range, no port, a port
// that is not a number) is cluster_error quoting the text: a lying server gets a clear
// error, never a crash or a connection to a made-up place.
//
// Plain data, no I/O; owned by one client (one loop thread).

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "hash_slot.hpp"
#include "reply_parser.hpp"

namespace corio::redis {

struct redirect {
  enum class kind { moved, ask } what;
  int slot;
  std::string address;  // "HOST:PORT" (HOST an IPv4 or a name), "[IPv6]:PORT": for split_host_port
};

// Parses the text of a MOVED or ASK error reply (without the '-'). `asked_host` stands in
// for an empty or "?" host. Throws cluster_error when the text is not a valid redirection.
redirect parse_redirect(std::string_view text, std::string_view asked_host);

// "HOST:PORT" from a node's host and port as CLUSTER SLOTS or a redirection gives them.
// Throws cluster_error for a port out of 1..65535.
std::string node_address(std::string_view host, std::int64_t port, std::string_view asked_host);

// The host of "HOST:PORT" / "[IPv6]:PORT": it stands in for a node that names no host.
std::string node_host(const std::string& address);

class slot_map {
 public:
  // Every slot without an owner.
  slot_map() { owner_.fill(-1); }

  // From a CLUSTER SLOTS reply: [[first, last, [host, port, id, ...], replicas ...], ...];
  // the masters (the first node of each range) own the slots. Throws cluster_error when the
  // reply does not have that shape.
  static slot_map from_cluster_slots(const resp::reply& r, std::string_view asked_host);

  // The address of the node serving `slot`, or nullptr when the map knows none.
  const std::string* owner(int slot) const noexcept {
    const int i = owner_[static_cast<std::size_t>(slot)];
    return i < 0 ? nullptr : &addresses_[static_cast<std::size_t>(i)];
  }
  // `slot` is served by `address` (a MOVED).
  void assign(int slot, const std::string& address);
  // How many slots have an owner (16384 in a healthy cluster).
  std::size_t covered() const noexcept;
  // The masters named in the map.
  const std::vector<std::string>& nodes() const noexcept { return addresses_; }

 private:
  int index_of(const std::string& address);

  std::vector<std::string> addresses_;
  std::array<std::int16_t, cluster_slots> owner_;  // index into addresses_, -1: unknown
};

}  // namespace corio::redis
