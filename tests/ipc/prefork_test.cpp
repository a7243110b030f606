// serve_in_processes: every worker accepts on the parent's listener, SIGTERM drains the
// workers gracefully (a request in flight is answered), SIGINT works the same, a worker
// that dies stops the others (-1), and no worker outlives the supervisor.
//
// Each test runs serve_in_processes in a child P (a corio::process) so that it can signal
// P; P's workers are found in /proc/P/task/P/children. Blocking POSIX sockets are the
// clients.
#include <doctest/doctest.h>

#include "ipc_test_support.hpp"
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <corio/ipc/prefork.hpp>
#include <corio/ipc/process.hpp>
#include <corio/runtime/server.hpp>
#include <corio/runtime/stream.hpp>
#include <corio/runtime/timer.hpp>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using corio_test::process_gone;

namespace {

// Answers each line with the worker's pid; "slow\n" first answers "started", then sleeps
// 200 ms before the pid (a request in flight during shutdown).
corio::task<void> answer_with_pid(corio::connection& c) {
  for (;;) {
    const std::string_view line = co_await c.reader().read_until("\n", 1024);
    if (line.empty()) co_return;
    if (line == "slow\n") {
      co_await c.writer().write("started\n");
      co_await c.writer().flush();
      co_await corio::sleep_for(200ms);
    }
    co_await c.writer().write(std::to_string(::getpid()) + "\n");
    co_await c.writer().flush();
  }
}

// A blocking client with a generous receive timeout.
struct client {
  int fd = -1;
  explicit client(std::uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    timeval tv{.tv_sec = 20, .tv_usec = 0};
    REQUIRE(::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0);
  }
  client(client&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  client(const client&) = delete;
  client& operator=(const client&) = delete;
  ~client() {
    if (fd >= 0) ::close(fd);
  }
  // False if the server already closed (a rejected connection).
  bool send(const std::string& s) { return ::send(fd, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size()); }
  // One line without its "\n"; "" at end of stream or on a reset.
  std::string read_line() {
    std::string line;
    char ch = 0;
    for (;;) {
      const ssize_t n = ::recv(fd, &ch, 1, 0);
      if (n <= 0) {
        REQUIRE_MESSAGE((n == 0 || errno == ECONNRESET), "recv: ", std::strerror(errno));
        return "";
      }
      if (ch == '\n') return line;
      line += ch;
    }
  }
};

std::vector<pid_t> children_of(pid_t p) {
  std::ifstream in("/proc/" + std::to_string(p) + "/task/" + std::to_string(p) + "/children");
  std::vector<pid_t> out;
  for (pid_t c = 0; in >> c;) out.push_back(c);
  std::sort(out.begin(), out.end());
  return out;
}

// Waits (generously) until P has n children; returns them.
std::vector<pid_t> wait_for_workers(pid_t p, std::size_t n) {
  const auto until = std::chrono::steady_clock::now() + 20s;
  std::vector<pid_t> kids = children_of(p);
  while (kids.size() != n && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(5ms);
    kids = children_of(p);
  }
  REQUIRE(kids.size() == n);
  return kids;
}

// Inodes of the listening TCP sockets (IPv4) on `port`, from /proc/net/tcp.
std::set<std::string> listening_inodes(std::uint16_t port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // header
  std::set<std::string> out;
  char want[8];
  std::snprintf(want, sizeof want, ":%04X", port);
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state, queues, timer, retr, uid, timeout, inode;
    fields >> slot >> local >> remote >> state >> queues >> timer >> retr >> uid >> timeout >> inode;
    if (state == "0A" && local.size() > 5 && local.compare(local.size() - 5, 5, want) == 0) out.insert(inode);
  }
  return out;
}

// How many of `pid`'s descriptors are one of these sockets.
std::size_t descriptors_on(pid_t pid, const std::set<std::string>& inodes) {
  std::size_t n = 0;
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd/";
  for (int fd = 0; fd < 1024; ++fd) {
    char target[128];
    const ssize_t len = ::readlink((dir + std::to_string(fd)).c_str(), target, sizeof target - 1);
    if (len <= 0) continue;
    const std::string t(target, static_cast<std::size_t>(len));
    for (const std::string& inode : inodes)
      if (t == "socket:[" + inode + "]") ++n;
  }
  return n;
}

// Gone, or a zombie nobody reaped yet (a container's init may not reap orphans).
bool dead(pid_t pid) {
  if (process_gone(pid)) return true;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(in, stat);
  const auto paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

// P: serves `srv` in `n` workers and exits 0 iff serve_in_processes returned `expected`.
corio::process supervisor(corio::server& srv, unsigned n, int expected) {
  return corio::process(corio::process_options{.parent_death_signal = SIGKILL}, [&srv, n, expected] {
    const int got = corio::serve_in_processes(srv, n);
    if (got != expected) throw std::runtime_error("serve_in_processes returned " + std::to_string(got));
  });
}

}  // namespace

TEST_CASE("serve_in_processes rejects zero processes") {
  corio::server srv(corio::address::parse("127.0.0.1:0"), answer_with_pid);
  CHECK_THROWS_WITH_AS(corio::serve_in_processes(srv, 0), "corio::serve_in_processes: processes must be > 0",
                       std::invalid_argument);
}

TEST_CASE("every worker process accepts connections and SIGTERM stops them all") {
  // One connection per worker: a worker holding one closes any other at once, so holding
  // three answered connections proves three distinct workers accepted.
  corio::server srv(corio::address::parse("127.0.0.1:0"), answer_with_pid, {.max_connections = 1});
  const std::uint16_t port = srv.local_address().port();
  corio::process p = supervisor(srv, 3, SIGTERM);
  p.start();
  const std::vector<pid_t> workers = wait_for_workers(p.pid(), 3);

  std::vector<client> held;
  std::set<pid_t> answered_by;
  std::size_t rejected = 0;
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (held.size() < 3 && std::chrono::steady_clock::now() < until) {
    client c(port);
    const std::string reply = c.send("pid\n") ? c.read_line() : "";
    if (reply.empty()) {
      ++rejected;
      continue;
    }
    answered_by.insert(static_cast<pid_t>(std::stoi(reply)));
    held.push_back(std::move(c));
  }
  MESSAGE(rejected << " connections were rejected by busy workers before each worker held one");
  REQUIRE(held.size() == 3);
  CHECK(answered_by == std::set<pid_t>(workers.begin(), workers.end()));
  // Three listening sockets on the port: the one bound here (worker 0's) and one of each
  // other worker; each worker holds one of them, the supervisor none.
  const std::set<std::string> listeners = listening_inodes(port);
  CHECK(listeners.size() == 3);
  for (pid_t w : workers) CHECK(descriptors_on(w, listeners) == 1);
  CHECK(descriptors_on(p.pid(), listeners) == 0);
  // Held connections keep answering, by the same worker.
  for (client& c : held) {
    REQUIRE(c.send("again\n"));
    CHECK(answered_by.count(static_cast<pid_t>(std::stoi(c.read_line()))) == 1);
  }

  p.terminate();
  // Graceful drain: the idle held connections are closed by their workers.
  for (client& c : held) CHECK(c.read_line().empty());
  REQUIRE(p.join_for(30s));
  CHECK(p.exitcode() == 0);
  for (pid_t w : workers) CHECK(process_gone(w));
}

TEST_CASE("a request in flight is answered after SIGTERM reaches the supervisor") {
  corio::server srv(corio::address::parse("127.0.0.1:0"), answer_with_pid);
  const std::uint16_t port = srv.local_address().port();
  corio::process p = supervisor(srv, 2, SIGTERM);
  p.start();
  const std::vector<pid_t> workers = wait_for_workers(p.pid(), 2);

  client c(port);
  REQUIRE(c.send("slow\n"));
  REQUIRE(c.read_line() == "started");
  p.terminate();  // the handler is sleeping 200 ms
  const std::string reply = c.read_line();
  REQUIRE(!reply.empty());
  CHECK(std::binary_search(workers.begin(), workers.end(), static_cast<pid_t>(std::stoi(reply))));
  CHECK(c.read_line().empty());  // then the draining worker closes the connection
  REQUIRE(p.join_for(30s));
  CHECK(p.exitcode() == 0);
  for (pid_t w : workers) CHECK(process_gone(w));
}

TEST_CASE("SIGINT to the supervisor stops the workers and is returned") {
  corio::server srv(corio::address::parse("127.0.0.1:0"), answer_with_pid);
  const std::uint16_t port = srv.local_address().port();
  corio::process p = supervisor(srv, 2, SIGINT);
  p.start();
  const std::vector<pid_t> workers = wait_for_workers(p.pid(), 2);
  {
    client c(port);
    REQUIRE(c.send("pid\n"));
    CHECK(std::binary_search(workers.begin(), workers.end(), static_cast<pid_t>(std::stoi(c.read_line()))));
  }
  REQUIRE(::kill(p.pid(), SIGINT) == 0);
  REQUIRE(p.join_for(30s));
  CHECK(p.exitcode() == 0);
  for (pid_t w : workers) CHECK(process_gone(w));
}

TEST_CASE("a SIGTERM while the workers are still starting stops them all") {
  // The workers may not have re-blocked SIGTERM yet: a lost first SIGTERM is resent.
  corio::server srv(corio::address::parse("127.0.0.1:0"), answer_with_pid);
  corio::process p = supervisor(srv, 3, SIGTERM);
  p.start();
  const std::vector<pid_t> workers = wait_for_workers(p.pid(), 3);
  p.terminate();
  REQUIRE(p.join_for(30s));
  CHECK(p.exitcode() == 0);
  for (pid_t w : workers) CHECK(process_gone(w));
}

TEST_CASE("a worker that dies stops the others and serve_in_processes returns -1") {
  corio::server srv(corio::address::parse("127.0.0.1:0"), answer_with_pid);
  const std::uint16_t port = srv.local_address().port();
  corio::process p = supervisor(srv, 3, -1);
  p.start();
  const std::vector<pid_t> workers = wait_for_workers(p.pid(), 3);

  client c(port);  // an idle connection on a surviving or the killed worker
  REQUIRE(c.send("pid\n"));
  const pid_t first = static_cast<pid_t>(std::stoi(c.read_line()));
  const pid_t victim = workers.front() == first ? workers.back() : workers.front();
  REQUIRE(::kill(victim, SIGKILL) == 0);
  // The worker holding `c` is stopped gracefully: it closes the idle connection.
  CHECK(c.read_line().empty());
  REQUIRE(p.join_for(30s));
  CHECK(p.exitcode() == 0);
  for (pid_t w : workers) CHECK(process_gone(w));
}

TEST_CASE("killing the supervisor kills its workers (parent death signal)") {
  corio::server srv(corio::address::parse("127.0.0.1:0"), answer_with_pid);
  corio::process p = supervisor(srv, 2, SIGTERM);
  p.start();
  const std::vector<pid_t> workers = wait_for_workers(p.pid(), 2);
  p.kill();
  p.join();
  CHECK(p.exitcode() == -SIGKILL);
  // The workers are reparented and reaped by init (or a subreaper): wait until gone.
  const auto until = std::chrono::steady_clock::now() + 20s;
  auto all_gone = [&] { return std::all_of(workers.begin(), workers.end(), dead); };
  while (!all_gone() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
  CHECK(all_gone());
}

TEST_CASE("the listener handed to the workers is the socket the server bound") {
  corio::server srv(corio::address::parse("127.0.0.1:0"), answer_with_pid);
  const int fd = srv.listener_fd();
  REQUIRE(fd >= 0);
  int listening = 0;
  socklen_t len = sizeof listening;
  REQUIRE(::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0);
  CHECK(listening == 1);
  sockaddr_storage ss{};
  socklen_t sl = sizeof ss;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl) == 0);
  CHECK(sl == srv.local_address().size());
  CHECK(std::memcmp(&ss, srv.local_address().data(), sl) == 0);
}
