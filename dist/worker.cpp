#include "worker.hpp"

#include "../coro/stop.hpp"
#include "../coro/task_group.hpp"
#include "../ipc/remote_call.hpp"
#include "../runtime/errors.hpp"
#include "../runtime/semaphore.hpp"
#include "../runtime/timer.hpp"

namespace corio::dist {

using namespace std::chrono_literals;
using std::chrono::steady_clock;

task<void> worker::renew_while_running(const std::string& entry) {
  const auto every = std::max<std::chrono::milliseconds>(options_.lease / 3, 1ms);
  try {
    for (;;) {
      co_await sleep_for(every);
      redis::client* c = co_await m_->commands();
      if (!co_await detail::pool_renew(*c, keys_, m_->consumer(), entry)) {
        ++stats_.leases_lost;  // taken over: the result, if this run finishes first, still counts once
        co_return;
      }
    }
  } catch (const std::exception&) {  // stopped (the task ended), or Redis unreachable: the lease lapses
  }
}

task<void> worker::run_one(detail::pool_task t) {
  task_group renewer;
  renewer.spawn(renew_while_running(t.entry));
  std::string status = "ok", payload;
  try {
    auto it = fns_.find(t.fn);
    if (it == fns_.end()) throw std::invalid_argument("no function named \"" + t.fn + "\" on this worker");
    payload = co_await it->second(t.args);
  } catch (...) {
    status = "error";
    std::string type, message;
    corio::detail::describe_current_exception(type, message);
    payload = detail::as_string(corio::encode(std::pair<std::string, std::string>(type, message)));
  }
  renewer.request_stop();
  co_await renewer.wait();
  ++stats_.tasks;
  redis::client* c = co_await m_->commands();
  if (co_await detail::pool_complete(*c, keys_, t, status, payload, options_.result_ttl))
    ++stats_.results;
  else
    ++stats_.duplicates;
}

task<void> worker::async_run() {
  const std::stop_token stop = co_await this_coro::stop_token;
  redis::client* c = co_await m_->commands();
  co_await detail::pool_ensure_group(*c, keys_);
  // New tasks are waited for on a connection of this worker's own: a blocking read holds it.
  std::optional<redis::client> waiter;
  semaphore slots(options_.concurrency == 0 ? 1 : options_.concurrency);
  task_group running;
  auto serve = [this](detail::pool_task t, semaphore& s) -> task<void> {
    struct release {
      semaphore& s;
      ~release() { s.release(); }
    } r{s};
    co_await run_one(std::move(t));
  };
  const auto wait = std::max<std::chrono::milliseconds>(std::min<std::chrono::milliseconds>(options_.lease / 2, 1000ms), 1ms);
  bool pause = false;
  std::exception_ptr refused;
  while (!stop.stop_requested()) {
    if (std::exchange(pause, false)) co_await sleep_for(200ms);
    try {
      co_await slots.acquire();
    } catch (const operation_cancelled&) {
      break;
    }
    bool started = false;
    try {
      detail::fetched f = co_await detail::pool_fetch(*c, keys_, m_->consumer(), options_.lease, options_.max_deliveries,
                                                      options_.result_ttl);
      if (f.what == detail::fetched::kind::group_recreated)
        m_->warn("corio: the consumer group of task pool " + keys_.tasks + " on redis " + m_->where() +
                 " was missing (Redis restarted without persistence?): re-created; tasks queued before are lost");
      if (f.what == detail::fetched::kind::dead_lettered) ++stats_.dead_lettered;
      if (f.what == detail::fetched::kind::task) {
        running.spawn(serve(std::move(f.task), slots));
        started = true;
      } else if (f.what == detail::fetched::kind::none) {
        if (!waiter) waiter.emplace(co_await redis::client::connect(m_->options()));
        const resp::reply r = co_await waiter->command(
            redis::command_options{.deadline = steady_clock::now() + wait + 5s}, "XREADGROUP", "GROUP",
            detail::pool_group, m_->consumer(), "COUNT", "1", "BLOCK", std::to_string(wait.count()), "STREAMS",
            keys_.tasks, ">");
        if (auto t = detail::pool_task_from_read(r)) {
          running.spawn(serve(std::move(*t), slots));
          started = true;
        }
      }
    } catch (const redis::auth_error&) {
      refused = std::current_exception();
      slots.release();
      break;
    } catch (const operation_cancelled&) {
      slots.release();
      break;
    } catch (const redis::connection_error&) {
      // A lost read may have handed us a task: it is pending in our name and comes back to
      // someone (us, likely) after the lease.
      waiter.reset();
      pause = true;
    } catch (const timed_out&) {
      waiter.reset();
      pause = true;
    }
    if (!started) slots.release();
  }
  if (refused) running.request_stop();
  co_await running.wait();  // the tasks in hand finish first, whatever ended the loop
  if (refused) std::rethrow_exception(refused);
}

}  // namespace corio::dist
