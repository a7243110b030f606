// Process and pipe benchmarks.
//   BM_process_start_join — corio::process start() + join() of a child that returns at
//                           once; items/s = processes started and reaped per second
//                           (Python's Process start+join: ~70/s; target >= 2,000/s).
//   BM_raw_fork_waitpid   — the floor on this machine: fork(), _exit(0) in the child,
//                           waitpid() in the parent, nothing else.
//   BM_pipe_8B            — std::uint64_t values through corio::pipe<std::uint64_t> from a
//                           forked child to this process (blocking send/recv, one
//                           send(2) per value, the receiver reads what is buffered);
//                           items/s = values received per second.
#include <corio/ipc/pipe.hpp>
#include <corio/ipc/process.hpp>

#include <benchmark/benchmark.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>

namespace {

void BM_process_start_join(benchmark::State& state) {
  for (auto _ : state) {
    corio::process p([] {});
    p.start();
    p.join();
    if (*p.exitcode() != 0) state.SkipWithError("child failed");
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_raw_fork_waitpid(benchmark::State& state) {
  for (auto _ : state) {
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(0);
    int status = 0;
    if (pid < 0 || ::waitpid(pid, &status, 0) != pid) state.SkipWithError("fork/waitpid failed");
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_pipe_8B(benchmark::State& state) {
  constexpr std::uint64_t batch = 1024;  // values per benchmark iteration
  auto data = corio::make_pipe<std::uint64_t>(false);
  auto control = corio::make_pipe<std::uint64_t>(false);  // how many values to send next
  auto& rx = data.first;
  auto& ctl_tx = control.second;
  corio::process sender(
      [&ctl_tx](corio::connection<std::uint64_t>& out, corio::connection<std::uint64_t>& ctl) {
        ctl_tx.close();  // the child's inherited copy, or ctl.recv() would never see the end
        try {
          for (;;) {
            const std::uint64_t n = ctl.recv();
            for (std::uint64_t i = 0; i < n; ++i) out.send(i);
          }
        } catch (const corio::pipe_closed&) {
        }
      },
      std::move(data.second), std::move(control.first));
  sender.start();
  std::uint64_t sum = 0;
  for (auto _ : state) {
    ctl_tx.send(batch);
    for (std::uint64_t i = 0; i < batch; ++i) sum += rx.recv();
  }
  benchmark::DoNotOptimize(sum);
  ctl_tx.close();
  sender.join();
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
}

}  // namespace

BENCHMARK(BM_process_start_join)->UseRealTime();
BENCHMARK(BM_raw_fork_waitpid)->UseRealTime();
BENCHMARK(BM_pipe_8B)->UseRealTime();
