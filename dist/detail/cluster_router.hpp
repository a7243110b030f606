#pragma once
// Where redis::client sends each command: the one connection of a single Redis, or in a
// Redis Cluster the connection to the node that serves the command's hash slot.
//
// Cluster mode is detected, not configured: the first connection (to the first seed that
// answers) asks CLUSTER SLOTS within its handshake; a map in the answer means a cluster, the
// error "cluster support disabled" a single Redis. A server taken for single that answers
// MOVED (CLUSTER refused by an ACL, say) turns the client into a cluster client then.
//
// The map: from CLUSTER SLOTS; a MOVED corrects its slot at once and starts one refresh of
// the whole map (CLUSTER SLOTS to the node that redirected; refreshes do not pile up: one at
// a time). A node's connection is made at its first command, with the handshake and the
// reconnect/backoff rules of any connection (detail/redis_connection.hpp); there is one
// per node, shared by every command for it. A connection lost in cluster mode refreshes the
// map too (a failover moves the slots to a replica, which MOVED alone would not tell a
// client whose node is gone).
//
// Who may touch it: the loop thread of its client; the client owns it, a refresh in flight
// holds it until the refresh ends (close() ends it at once).

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../redis_endpoint.hpp"
#include "../slot_map.hpp"
#include "redis_connection.hpp"

namespace corio::redis::detail {

class router : public std::enable_shared_from_this<router> {
 public:
  // `seeds`: where to look first (parse_seeds); `o` the credentials and limits for all.
  router(options o, std::vector<endpoint> seeds) : opts(std::move(o)), seeds_(std::move(seeds)) {}

  // Connects to the first seed that answers and detects cluster mode. Throws as
  // client::connect: auth_error / server_error at once (refused credentials are refused by
  // every node), connection_error once no seed answered.
  task<void> open();

  // The connection for a command of `slot` (nothing: a keyless command, any node).
  std::shared_ptr<connection> route(std::optional<int> slot);
  // The connection to `address` ("IP:PORT"), made at first use.
  std::shared_ptr<connection> node(const std::string& address);
  // A MOVED answered by `from`: the map says so from now on, and is refreshed.
  void moved(const redirect& r);
  void asked() noexcept { ++asked_; }
  // A connection of a cluster was lost: refresh the map through another node.
  void lost_node(const std::shared_ptr<connection>& lost);

  bool cluster() const noexcept { return map_.has_value(); }
  const std::string& where() const noexcept { return first_->where; }
  client_stats stats() const noexcept;
  void close() noexcept;

  options opts;

 private:
  task<void> refresh(std::shared_ptr<connection> via);

  std::vector<endpoint> seeds_;
  std::shared_ptr<connection> first_;  // the seed that answered: keyless commands go there
  std::map<std::string, std::shared_ptr<connection>> nodes_;
  std::optional<slot_map> map_;
  bool refreshing_ = false;
  bool closed_ = false;
  std::uint64_t moved_ = 0, asked_ = 0, refreshes_ = 0;
};

// Sends one command on `c` as it is (no redirection followed); the reply, errors included.
task<resp::reply> send_once(std::shared_ptr<connection> c, std::shared_ptr<pending> p);

}  // namespace corio::redis::detail
