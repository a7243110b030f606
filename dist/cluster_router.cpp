#include "detail/cluster_router.hpp"

#include "../runtime/errors.hpp"
#include "../runtime/loop.hpp"
#include "resp.hpp"

namespace corio::redis::detail {

task<resp::reply> send_once(std::shared_ptr<connection> c, std::shared_ptr<pending> p) {
  c->enqueue(p);
  co_await p->done.wait();
  if (p->error) std::rethrow_exception(p->error);
  co_return std::move(*p->result);
}

task<void> router::open() {
  std::string failures;
  for (const endpoint& seed : seeds_) {
    auto c = std::make_shared<connection>(opts, seed.address);
    c->probe_cluster = true;
    std::string failure;
    try {
      co_await c->open();
    } catch (const server_error&) {  // refused: every node would refuse
      throw;
    } catch (const operation_cancelled&) {
      throw;
    } catch (const timed_out&) {
      failure = "no answer within " + ms_text(opts.connect_timeout());
    } catch (const std::exception& e) {
      failure = e.what();
    }
    if (!failure.empty()) {
      failures += (failures.empty() ? "" : "; ") + (seeds_.size() == 1 ? failure : seed.address + ": " + failure);
      continue;
    }
    first_ = c;
    nodes_.emplace(c->where, c);
    const resp::reply& probe = *c->probe;
    if (!probe.is_error()) map_ = slot_map::from_cluster_slots(probe, node_host(c->where));
    c->probe.reset();
    co_return;
  }
  const std::string where = seeds_.size() == 1 ? seeds_[0].address : "cluster seeds";
  throw connection_error("redis " + where + ": cannot connect: " + failures);
}

std::shared_ptr<connection> router::route(std::optional<int> slot) {
  if (slot && map_)
    if (const std::string* owner = map_->owner(*slot)) return node(*owner);
  return first_;
}

std::shared_ptr<connection> router::node(const std::string& address) {
  auto it = nodes_.find(address);
  if (it != nodes_.end()) return it->second;
  options o = opts;
  o.address(address);
  auto c = std::make_shared<connection>(std::move(o), address);
  if (closed_) c->close();
  nodes_.emplace(address, c);
  return c;
}

void router::moved(const redirect& r) {
  ++moved_;
  if (!map_) map_.emplace();  // a MOVED from a server taken for a single Redis
  map_->assign(r.slot, r.address);
  if (!refreshing_ && !closed_) {
    refreshing_ = true;
    loop::this_loop().spawn(refresh(node(r.address)));
  }
}

void router::lost_node(const std::shared_ptr<connection>& lost) {
  if (!map_ || refreshing_ || closed_) return;
  // Ask another node than the lost one: its connection would only wait to reconnect.
  std::shared_ptr<connection> via = first_ != lost ? first_ : nullptr;
  for (const auto& [address, c] : nodes_)
    if (!via && c != lost) via = c;
  if (!via) return;  // the only node we know is gone: its reconnect decides
  refreshing_ = true;
  loop::this_loop().spawn(refresh(via));
}

task<void> router::refresh(std::shared_ptr<connection> via) {
  auto self = shared_from_this();
  try {
    const std::string_view argv[] = {"CLUSTER", "SLOTS"};
    const resp::reply r = co_await send_once(via, make_pending(argv, "CLUSTER SLOTS", true));
    if (!r.is_error()) {
      slot_map fresh = slot_map::from_cluster_slots(r, node_host(via->where));
      if (fresh.covered() > 0) map_ = std::move(fresh);
      ++refreshes_;
    }
  } catch (const std::exception&) {  // the patched map stays; the next MOVED tries again
  }
  refreshing_ = false;
}

client_stats router::stats() const noexcept {
  client_stats s;
  for (const auto& [address, c] : nodes_) {
    s.commands += c->stats.commands;
    s.writes += c->stats.writes;
    s.reconnects += c->stats.reconnects;
  }
  s.moved = moved_;
  s.asked = asked_;
  s.map_refreshes = refreshes_;
  s.nodes = nodes_.size();
  return s;
}

void router::close() noexcept {
  closed_ = true;
  for (auto& [address, c] : nodes_) c->close();
}

}  // namespace corio::redis::detail
