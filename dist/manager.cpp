#include "manager.hpp"

#include <unistd.h>

#include <cstdint>
#include <random>
#include <cstdio>
#include <stdexcept>

namespace corio::dist {
namespace detail {

namespace {

// host:pid:random. The random part keeps names unique across time too (a pid is reused,
// and task ids and a submitter's results stream are made from this name).
std::string this_consumer() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '?';
  std::random_device rd;
  const std::uint64_t r = (static_cast<std::uint64_t>(rd()) << 32) | rd();
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(r));
  return std::string(host) + ":" + std::to_string(::getpid()) + ":" + hex;
}

void print_warning(const std::string& text) { std::fprintf(stderr, "%s\n", text.c_str()); }

// CONFIG GET's answer: [name, value] (empty when the user may not run CONFIG).
std::string config_value(const resp::reply& r) { return r.elements.size() == 2 ? r.elements[1].str : std::string(); }

}  // namespace

manager_core::manager_core(redis::options o)
    : on_warning_(print_warning),
      options_(std::move(o)),
      consumer_(this_consumer()),
      where_(redis::seeds_text(options_.address())) {}

manager_core::~manager_core() = default;

void manager_core::check_not_on_loop(const char* what) {
  if (loop::current() != nullptr)
    throw std::logic_error(std::string("corio::dist::") + what +
                           " blocks, and this thread runs a corio loop: co_await its async_ form instead");
}

manager_core::per_loop& manager_core::here() {
  loop* lp = &loop::this_loop();
  for (auto& p : loops_)
    if (p->owner == lp) return *p;
  loops_.push_back(std::make_unique<per_loop>(per_loop{lp, std::nullopt, std::nullopt, nullptr, nullptr}));
  return *loops_.back();
}

task<redis::client*> manager_core::connected(std::optional<redis::client> per_loop::*slot,
                                              std::shared_ptr<connecting> per_loop::*attempt, bool check) {
  per_loop& p = here();
  while (!(p.*slot)) {
    if (const std::shared_ptr<connecting> a = p.*attempt) {  // another coroutine connects
      co_await a->done.wait();
      if (a->failure) std::rethrow_exception(a->failure);
      continue;
    }
    const auto a = std::make_shared<connecting>();
    p.*attempt = a;
    try {
      redis::client c = co_await redis::client::connect(options_);
      if (check && !checked_) {
        checked_ = true;
        co_await check_server(c);
      }
      p.*slot = std::move(c);
    } catch (...) {
      a->failure = std::current_exception();
    }
    p.*attempt = nullptr;  // the next caller after a failure tries again
    a->done.set();
    if (a->failure) std::rethrow_exception(a->failure);
  }
  co_return &*(p.*slot);
}

task<redis::client*> manager_core::commands() {
  return connected(&per_loop::commands, &per_loop::commands_attempt, true);
}

task<redis::client*> manager_core::blocking() {
  return connected(&per_loop::blocking, &per_loop::blocking_attempt, false);
}

redis::client_stats manager_core::stats() const noexcept {
  redis::client_stats s;
  for (const auto& p : loops_) {
    if (p->commands) s += p->commands->stats();
    if (p->blocking) s += p->blocking->stats();
  }
  return s;
}

task<void> manager_core::check_server(redis::client& c) {
  std::string policy, aof, save;
  try {
    policy = config_value(co_await c.command("CONFIG", "GET", "maxmemory-policy"));
    aof = config_value(co_await c.command("CONFIG", "GET", "appendonly"));
    save = config_value(co_await c.command("CONFIG", "GET", "save"));
  } catch (const redis::server_error& e) {
    warn("corio: could not check the configuration of redis " + where_ + " (" + e.code() +
         "): make sure maxmemory-policy is noeviction and persistence is on");
    co_return;
  }
  if (policy != "noeviction")
    warn("corio: redis " + where_ + " has maxmemory-policy " + policy +
         ": under memory pressure it may evict queued values; set it to noeviction");
  if (aof != "yes" && save.empty())
    warn("corio: redis " + where_ +
         " has no persistence (appendonly no, no save points): a restart loses every queued value; "
         "set appendonly yes");
}

}  // namespace detail

void manager::connect() {
  core_->run_blocking("manager::connect", [](std::shared_ptr<detail::manager_core> m) -> task<void> {
    (void)co_await m->commands();
  }(core_));
}

}  // namespace corio::dist
