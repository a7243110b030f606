#pragma once
// serve_in_processes: a corio::server served by several forked worker processes (the
// "prefork" model), supervised by the calling process.
//
//     corio::server srv(corio::address::parse("0.0.0.0:8080"), handler);   // binds here
//     int sig = corio::serve_in_processes(srv, 4);   // 4 workers, 1 shard each
//     // SIGINT or SIGTERM arrived; every worker shut down gracefully and was reaped
//
// The model
// - The server is constructed (bound) in the caller, the parent, and never served there.
//   Each worker is a corio::process (ipc/process.hpp) running srv.run(per_process) on its
//   forked copy of the server. Worker 0 accepts on the listening socket the parent bound
//   (connections already waiting in its backlog are served); every other worker first
//   replaces its inherited copy with a listener of its own, SO_REUSEPORT on the same
//   address (same backlog, blocking mode, IPV6_V6ONLY), so the kernel spreads new
//   connections across the workers by a hash of the client's address and port. (Sharing
//   one socket does not spread them: the io_uring accepts of several processes on one
//   socket are not served in turn, one worker got them all.) Further shards of a worker
//   (per_process.shards > 1) bind their own listeners as server.hpp describes.
//   server_options, max_connections included, and the stats() counters are per worker.
// - The parent takes srv's listener (server::listener_fd()) and, once the workers are
//   forked, points that descriptor at
//   /dev/null: the sockets belong to the workers alone, and after they stop, new clients
//   are refused instead of waiting in a backlog nobody serves. A worker's socket closes
//   with it; clients still in its backlog are reset (as for server's shards).
// - Signals: the parent blocks SIGINT and SIGTERM (a signal_set) before it forks, so a
//   signal arriving at any point is seen. process.start() clears the child's signal mask;
//   each worker re-blocks SIGINT and SIGTERM first thing, before srv.run() takes them over.
//   So that the caller's handlers never run in a worker in between, both signals are set
//   to SIG_IGN in the parent while it forks (blocked, they still queue for the parent) and
//   each worker restores the caller's dispositions after re-blocking. A SIGTERM reaching a
//   worker in that window is lost, which is why the parent resends it (below).
// - The parent waits, on a corio::loop of its own, for SIGINT or SIGTERM or for any
//   worker to end. On a signal it sends SIGTERM to every worker, again every 100 ms until
//   each has ended (extra ones stay pending in a draining worker): each stops accepting and
//   drains gracefully (requests in flight are answered, server.hpp), and the parent joins
//   them all and returns the signal number. A signal sent to the whole process group
//   (Ctrl-C in a terminal) reaches the workers too; they drain on their own and the
//   outcome is the same.
// - A worker that ends before any signal (it crashed, was killed, or srv.run() threw, e.g.
//   a further shard could not bind) is not restarted: the parent sends SIGTERM to the
//   others, joins them all and returns -1. The worker's own report is on stderr (the
//   process layer prints escaped exceptions). If SIGINT or SIGTERM is already pending in
//   the parent at that moment (a process-group signal also ended that worker), that
//   signal is returned instead.
// - Workers are started with parent_death_signal = SIGKILL: none outlives a parent that
//   is killed (or whose calling thread exits). Call this from main()'s thread, before
//   starting other threads (signal.hpp and process.hpp say why), and not from inside a
//   running corio loop or runtime (the parent runs a loop of its own).
// - `srv` must not be served afterwards (its listener is gone); destroy it.
//
// Errors: std::invalid_argument for 0 processes; std::logic_error when srv was served
// already (its listener is gone). A fork failure (std::system_error from process::start)
// stops the workers already started (SIGTERM, join), then propagates; so do signal_set
// and loop construction failures.

#include "../runtime/runtime.hpp"
#include "../runtime/server.hpp"

namespace corio {

// Forks `processes` workers, each running srv.run(per_process), supervises them as
// described above and returns the signal number that stopped them (SIGINT or SIGTERM),
// or -1 if a worker ended first. per_process defaults to one shard per worker (one
// process per core is the usual prefork layout); pin it with care, as each worker's
// shard 0 would pin to the same CPU.
int serve_in_processes(server& srv, unsigned processes, runtime_options per_process = {.shards = 1, .pin = false});

}  // namespace corio
