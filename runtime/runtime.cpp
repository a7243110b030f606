#include "runtime.hpp"

#include <liburing.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <latch>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "detail/cpu_affinity.hpp"
#include "detail/shard_mesh.hpp"
#include "timer.hpp"

namespace corio {
namespace detail {

void check_submit_target(unsigned target, const char* what) {
  const shard_context& c = current_shard;
  if (c.state == nullptr)
    throw std::logic_error(std::string(what) +
                           ": not called on a shard of a running corio::runtime (call it from inside runtime::run)");
  if (target >= c.count)
    throw std::out_of_range(std::string(what) + ": shard " + std::to_string(target) +
                            " does not exist (the runtime has " + std::to_string(c.count) + " shards)");
}

void send_request(unsigned target, shard_message* m) noexcept {
  const shard_context& c = current_shard;
  // Relaxed: only the caller's own thread decrements this request's count, after the
  // reply; shard 0 reads the total with seq_cst loads that follow the reply chain.
  c.state->outstanding.fetch_add(1, std::memory_order_relaxed);
  c.state->send(c.index, target, m);
}

void send_reply(unsigned origin, shard_message* m) noexcept {
  const shard_context& c = current_shard;
  runtime_state& st = *c.state;
  // A spawned task born from this request must be visible before the reply is (see the
  // quiescence note at the top of this file).
  if (st.stopping.load(std::memory_order_acquire)) st.update_quiet(c.index);
  st.send(c.index, origin, m);
}

void request_done() noexcept {
  runtime_state& st = *current_shard.state;
  // Seq_cst: pairs with shard 0's loads in quiescent() and its sleeping flag.
  if (st.outstanding.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
      st.stopping.load(std::memory_order_seq_cst) && current_shard.index != 0)
    st.notify_coordinator();
}

namespace {

// Sends one MSG_RING from a scratch ring to `target_fd`; true when the kernel did it.
// Linux before 5.18 answers -EINVAL (unknown opcode).
bool probe_msg_ring(int target_fd) noexcept {
  io_uring ring;
  if (io_uring_queue_init(2, &ring, 0) < 0) return false;
  bool ok = false;
  if (io_uring_sqe* sqe = io_uring_get_sqe(&ring)) {
    io_uring_prep_msg_ring(sqe, target_fd, 0, 0, 0);
    io_uring_sqe_set_data64(sqe, 1);
    io_uring_cqe* cqe = nullptr;
    if (io_uring_submit_and_wait(&ring, 1) >= 0 && io_uring_peek_cqe(&ring, &cqe) == 0 && cqe != nullptr)
      ok = cqe->res == 0;
  }
  io_uring_queue_exit(&ring);
  return ok;
}

// The task shards 1..N-1 run: suspended until shard 0 says exit.
task<void> park(shard_state& s) {
  struct awaiter {
    shard_state& s;
    bool await_ready() const noexcept { return s.exit.load(std::memory_order_acquire); }
    void await_suspend(std::coroutine_handle<> h) noexcept { s.parked = h; }
    void await_resume() const noexcept {}
  };
  co_await awaiter{s};
}

// Submits whatever SQEs are still queued (wake-ups) while every ring is still open.
task<void> flush_once() { co_await sleep_for(std::chrono::nanoseconds{0}); }

// Shard 0's main: the user's main, then the shutdown (see the top of this file).
task<void> coordinate(runtime_state& st, task<void> main) {
  co_await std::move(main);  // runtime::capture never throws
  st.stopping.store(true, std::memory_order_seq_cst);
  st.request_stop_everywhere();
  struct quiescence {
    shard_state& s;
    bool await_ready() const noexcept { return false; }  // shard 0's hook decides
    void await_suspend(std::coroutine_handle<> h) noexcept { s.coordinator = h; }
    void await_resume() const noexcept {}
  };
  co_await quiescence{*st.shards[0]};
  st.tell_shards_to_exit();
}

bool drain_hook(void* context) {
  auto* s = static_cast<shard_state*>(context);
  return s->owner->drain(s->index);
}

void install(runtime_state& st, unsigned index, loop& lp) {
  shard_state& s = *st.shards[index];
  s.lp = &lp;
  s.ring_fd = lp.ring_fd();
  lp.add_drain_hook(&drain_hook, &s);
}

struct shard_latches {
  std::latch ready;    // every shard's loop exists (or failed): messages may flow
  std::latch exited;   // every shard left its loop: no message will be sent any more
  std::latch flushed;  // every shard submitted its last SQEs: rings may close
  explicit shard_latches(unsigned n) : ready(n - 1), exited(n), flushed(n) {}
};

void record_startup_error(runtime_state& st) {
  std::lock_guard lock(st.startup_mutex);
  if (!st.startup_error) st.startup_error = std::current_exception();
}

void shard_thread(runtime_state& st, unsigned index, const runtime_options& options, int cpu,
                  shard_latches& latches, std::atomic<unsigned>& pin_failures) {
  if (cpu >= 0 && !pin_this_thread(cpu)) pin_failures.fetch_add(1, std::memory_order_relaxed);
  std::optional<loop> lp;
  try {
    lp.emplace(options.loop);
    install(st, index, *lp);
  } catch (...) {
    record_startup_error(st);
    lp.reset();
  }
  latches.ready.count_down();
  if (lp) {
    current_shard = {&st, index, st.count};
    try {
      lp->run(park(*st.shards[index]));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "corio::runtime: shard %u stopped by an error: %s\n", index, e.what());
    }
  }
  latches.exited.arrive_and_wait();
  if (lp) {
    try {
      lp->run(flush_once());
    } catch (...) {
      // Only wake-ups were pending; nobody waits for them any more.
    }
  }
  latches.flushed.arrive_and_wait();
  current_shard = {};
}

}  // namespace
}  // namespace detail

unsigned this_shard() {
  if (detail::current_shard.state == nullptr)
    throw std::logic_error("corio::this_shard: not called on a shard of a running corio::runtime");
  return detail::current_shard.index;
}

unsigned shard_count() {
  if (detail::current_shard.state == nullptr)
    throw std::logic_error("corio::shard_count: not called on a shard of a running corio::runtime");
  return detail::current_shard.count;
}

runtime::runtime(runtime_options options) : options_(options) {
  if (options_.queue_capacity == 0) throw std::invalid_argument("corio::runtime: queue_capacity must be at least 1");
  shards_ = options_.shards != 0 ? options_.shards : detail::usable_cpu_count();
}

runtime::~runtime() = default;

void runtime::stop() noexcept {
  std::lock_guard lock(state_mutex_);
  if (state_ != nullptr) state_->request_stop_everywhere();
}

void runtime::run_erased(task<void> main) {
  if (loop::current() != nullptr || detail::current_shard.state != nullptr)
    throw std::logic_error("corio::runtime::run: this thread already runs a loop or a runtime");
  using detail::runtime_state;
  auto st = std::make_unique<runtime_state>(shards_, options_.queue_capacity, options_.use_msg_ring);
  loop lp0(options_.loop);
  detail::install(*st, 0, lp0);
  st->msg_ring = options_.use_msg_ring && lp0.features().msg_ring && detail::probe_msg_ring(lp0.ring_fd());
  used_msg_ring_ = st->msg_ring;

  // Pinning: shard k on the k-th allowed CPU. Shard 0 is this thread: remember its mask.
  const std::vector<int> cpus = options_.pin ? detail::allowed_cpus() : std::vector<int>{};
  auto cpu_of = [&](unsigned k) { return cpus.empty() ? -1 : cpus[k % cpus.size()]; };
  std::atomic<unsigned> pin_failures{0};
  cpu_set_t saved_mask;
  CPU_ZERO(&saved_mask);
  const bool restore_mask =
      cpu_of(0) >= 0 && pthread_getaffinity_np(pthread_self(), sizeof saved_mask, &saved_mask) == 0;
  if (cpu_of(0) >= 0 && !detail::pin_this_thread(cpu_of(0))) pin_failures.fetch_add(1);

  detail::shard_latches latches(shards_);
  std::vector<std::thread> threads;
  threads.reserve(shards_ - 1);
  for (unsigned k = 1; k < shards_; ++k) {
    try {
      threads.emplace_back(detail::shard_thread, std::ref(*st), k, std::cref(options_), cpu_of(k),
                           std::ref(latches), std::ref(pin_failures));
    } catch (...) {
      detail::record_startup_error(*st);
      // Stand in for the shards that never started.
      const auto missing = static_cast<std::ptrdiff_t>(shards_ - k);
      latches.ready.count_down(missing);
      latches.exited.count_down(missing);
      latches.flushed.count_down(missing);
      break;
    }
  }
  latches.ready.wait();

  detail::current_shard = {st.get(), 0, shards_};
  {
    std::lock_guard lock(state_mutex_);
    state_ = st.get();
  }
  std::exception_ptr fatal = st->startup_error;
  if (fatal) {
    st->request_stop_everywhere();
    st->tell_shards_to_exit();
  } else {
    try {
      lp0.run(detail::coordinate(*st, std::move(main)), st->main_token);
    } catch (...) {
      // The ring failed under shard 0: stop everything as far as possible.
      fatal = std::current_exception();
      st->request_stop_everywhere();
      st->tell_shards_to_exit();
    }
  }
  {
    std::lock_guard lock(state_mutex_);
    state_ = nullptr;
  }
  latches.exited.arrive_and_wait();
  try {
    lp0.run(detail::flush_once());
  } catch (...) {
  }
  latches.flushed.arrive_and_wait();
  for (auto& t : threads) t.join();
  detail::current_shard = {};
  if (restore_mask) pthread_setaffinity_np(pthread_self(), sizeof saved_mask, &saved_mask);
  pin_failures_ = pin_failures.load();
  if (fatal) std::rethrow_exception(fatal);
}

}  // namespace corio
