#include "worker.hpp"

#include "../coro/stop.hpp"
#include "../coro/task_group.hpp"
#include "../ipc/remote_call.hpp"
#include "../runtime/errors.hpp"
#include "../runtime/event.hpp"
#include "../runtime/loop.hpp"
#include "../runtime/semaphore.hpp"
#include "../runtime/timer.hpp"

namespace corio::dist {

using namespace std::chrono_literals;
using std::chrono::steady_clock;

// One script every lease/3 renews the leases of every task this worker runs.
task<void> worker::renew_leases() {
  const auto every = std::max<std::chrono::milliseconds>(options_.lease / 3, 1ms);
  for (;;) {
    try {
      co_await sleep_for(every);
    } catch (const std::exception&) {  // stopped: the worker is ending
      co_return;
    }
    if (running_.empty()) continue;
    const std::vector<std::string> entries(running_.begin(), running_.end());
    try {
      redis::client* c = co_await m_->commands();
      // The ones not renewed were taken over: their results, if these runs finish first,
      // still count once.
      stats_.leases_lost += entries.size() - co_await detail::pool_renew(*c, keys_, m_->consumer(), entries);
    } catch (const operation_cancelled&) {
      co_return;
    } catch (const std::exception&) {  // Redis unreachable for now: try again next time
    }
  }
}

task<void> worker::run_one(detail::pool_task t) {
  const std::string entry = t.entry;
  try {
    co_await run_and_record(std::move(t));
  } catch (const operation_cancelled&) {
    throw;  // the worker is stopping
  } catch (const redis::unexpected_reply&) {
    if (!ended_by_) ended_by_ = std::current_exception();
  } catch (const std::exception& e) {
    // Redis unreachable, or refusing the completion script. Rethrown, it would stop the
    // task group and with it every later task of this worker. A task whose result did
    // not reach Redis stays pending: it runs again after its lease and still counts once.
    // A reply key that holds no stream (a foreign write) is no refusal: the script checks
    // every reply key before it writes, and such a result comes back undeliverable.
    m_->warn("corio: worker of " + keys_.tasks + ": could not record the result of task " + entry + ": " + e.what());
  }
}

task<void> worker::run_and_record(detail::pool_task t) {
  if (!keys_.holds(t.reply)) {  // not from a corio submitter: its result could not be written
    m_->warn("corio: worker of " + keys_.tasks + ": task " + t.entry + " names a reply stream outside the pool's keys " +
             "(not \"" + keys_.tasks.substr(0, keys_.tasks.size() - 5) + "...\"): moved to " + keys_.dead);
    redis::client* c = co_await m_->commands();
    if (co_await detail::pool_bury(*c, keys_, t, "its reply stream is not one of the pool's keys")) ++stats_.dead_lettered;
    co_return;
  }
  running_.insert(t.entry);
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
  ++stats_.tasks;
  const std::string entry = t.entry, reply = t.reply;
  // Named first: GCC 12 destroys an aggregate temporary built inside co_await twice.
  detail::pool_result result{std::move(t), std::move(status), std::move(payload)};
  detail::pool_outcome outcome;
  try {
    outcome = co_await complete(std::move(result));
  } catch (...) {
    running_.erase(entry);
    throw;
  }
  running_.erase(entry);
  switch (outcome.what) {
    case detail::pool_outcome::kind::written:
      ++stats_.results;
      break;
    case detail::pool_outcome::kind::duplicate:
      ++stats_.duplicates;
      break;
    case detail::pool_outcome::kind::undeliverable:
      ++stats_.undeliverable;
      m_->warn("corio: worker of " + keys_.tasks + ": the result of task " + entry + " was dropped: its reply key \"" +
               reply + "\" holds a " + outcome.held + ", not a stream (a foreign write?)");
      break;
  }
}

// The results finished in one loop turn go to Redis in one script.
struct worker::completion_batch {
  std::vector<detail::pool_result> results;
  std::vector<detail::pool_outcome> outcomes;  // one per result, once done is set
  std::exception_ptr failure;
  event done;
};

task<detail::pool_outcome> worker::complete(detail::pool_result r) {
  if (!batch_) {
    batch_ = std::make_shared<completion_batch>();
    loop::this_loop().spawn(flush_completions());
  }
  const std::shared_ptr<completion_batch> b = batch_;
  const std::size_t index = b->results.size();
  b->results.push_back(std::move(r));
  co_await b->done.wait();
  if (b->failure) std::rethrow_exception(b->failure);
  co_return b->outcomes[index];
}

task<void> worker::flush_completions() {
  try {
    co_await sleep_for(std::chrono::nanoseconds{0});  // the rest of this turn's results join
  } catch (...) {  // the loop is stopping: send what there is all the same
  }
  const std::shared_ptr<completion_batch> b = std::move(batch_);
  batch_.reset();
  try {
    redis::client* c = co_await m_->commands();
    b->outcomes = co_await detail::pool_complete(*c, keys_, b->results);
  } catch (...) {
    b->failure = std::current_exception();
  }
  b->done.set();
}

task<void> worker::async_run() {
  const std::stop_token stop = co_await this_coro::stop_token;
  redis::client* c = co_await m_->commands();
  co_await detail::pool_ensure_group(*c, keys_);
  // New tasks are waited for on a connection of this worker's own: a blocking read holds it.
  std::optional<redis::client> waiter;
  const unsigned concurrency = options_.concurrency == 0 ? 1 : options_.concurrency;
  semaphore slots(concurrency);
  task_group running, renewer;
  renewer.spawn(renew_leases());
  auto serve = [this](detail::pool_task t, semaphore& s) -> task<void> {
    struct release {
      semaphore& s;
      ~release() { s.release(); }
    } r{s};
    co_await run_one(std::move(t));
  };
  const auto wait = std::max<std::chrono::milliseconds>(std::min<std::chrono::milliseconds>(options_.lease / 2, 1000ms), 1ms);
  bool pause = false;
  std::exception_ptr refused;  // ends the worker: auth_error, or a reply not Redis'
  bool stop_now = false;
  while (!stop.stop_requested()) {
    try {  // a stop request ends either wait: the loop ends, never this scope unwound
      if (std::exchange(pause, false)) co_await sleep_for(200ms);
      co_await slots.acquire();
    } catch (const operation_cancelled&) {
      break;
    }
    unsigned free = 1;  // take as many tasks as there are free slots, up to 64, in one script
    while (free < 64 && slots.try_acquire()) ++free;
    std::vector<detail::pool_task> tasks;
    try {
      detail::fetched f =
          co_await detail::pool_fetch(*c, keys_, m_->consumer(), options_.lease, options_.max_deliveries, free);
      if (f.what == detail::fetched::kind::group_recreated)
        m_->warn("corio: the consumer group of task pool " + keys_.tasks + " on redis " + m_->where() +
                 " was missing (Redis restarted without persistence?): re-created; tasks queued before are lost");
      if (f.what == detail::fetched::kind::dead_lettered) ++stats_.dead_lettered;
      tasks = std::move(f.tasks);
      if (f.what == detail::fetched::kind::none) {
        if (!waiter) waiter.emplace(co_await redis::client::connect(m_->options()));
        tasks = detail::pool_tasks_from_read(co_await waiter->command(
            redis::command_options{.deadline = steady_clock::now() + wait + 5s}, "XREADGROUP", "GROUP",
            detail::pool_group, m_->consumer(), "COUNT", std::to_string(free), "BLOCK", std::to_string(wait.count()),
            "STREAMS", keys_.tasks, ">"), keys_);
      }
    } catch (const redis::auth_error&) {
      refused = std::current_exception();
    } catch (const operation_cancelled&) {
      stop_now = true;
    } catch (const redis::server_error& e) {
      // NOGROUP or UNBLOCKED from the blocking read: the stream went (Redis restarted without
      // persistence); the next fetch re-creates it and reports. Anything else: a pause.
      if (e.code() != "NOGROUP" && e.code() != "UNBLOCKED") {
        m_->warn(std::string("corio: worker of ") + keys_.tasks + ": " + e.what());
        pause = true;
      }
    } catch (const redis::connection_error&) {
      // A lost read may have handed us tasks: they are pending in our name and come back
      // to someone (us, likely) after the lease.
      waiter.reset();
      pause = true;
    } catch (const timed_out&) {
      waiter.reset();
      pause = true;
    } catch (const std::exception&) {
      // Anything else (redis::unexpected_reply: a reply not of its command's shape; a
      // cluster_error) is not passing: the worker ends with it, after the tasks in hand,
      // like a refusal. Never past this scope with `running` and `renewer` alive.
      refused = std::current_exception();
    }
    // A fetch may bring one task more than there were free slots (a task taken over besides
    // `free` new ones): it waits for a slot, its lease renewed meanwhile (running_).
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      if (i < free) {
        running.spawn(serve(std::move(tasks[i]), slots));
      } else {
        running_.insert(tasks[i].entry);
        // Captureless, its state in parameters: the frame outlives this expression.
        running.spawn([](worker& w, semaphore& s, decltype(serve)& sv, detail::pool_task t) -> task<void> {
          try {
            co_await s.acquire();
          } catch (...) {  // stopping: the task goes back to the others after its lease
            w.running_.erase(t.entry);
            throw;
          }
          co_await sv(std::move(t), s);
        }(*this, slots, serve, std::move(tasks[i])));
      }
    }
    for (std::size_t i = tasks.size(); i < free; ++i) slots.release();
    if (!refused && ended_by_) refused = ended_by_;  // a task's completion met a lying reply
    if (refused || stop_now) break;
  }
  if (refused) running.request_stop();
  co_await running.wait();  // the tasks in hand finish first, whatever ended the loop
  renewer.request_stop();
  co_await renewer.wait();
  if (refused) std::rethrow_exception(refused);
}

}  // namespace corio::dist
