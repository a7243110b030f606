#pragma once
// A fake Redis on a thread, for replies a real server would not give (-LOADING forever, a
// lying MOVED): answer(argv) makes each reply, in RESP; commands() counts those answered.
// CLUSTER SLOTS (the client's cluster probe at connect) is answered as a single Redis
// answers it, unless answer() is asked to answer it too (answer_cluster_slots). Plain
// blocking sockets on loopback; clients served one after another. bulk() and script_sha()
// make the common answers.
#include <doctest/doctest.h>

#include <corio/dist/command_parser.hpp>
#include <corio/dist/detail/sha1.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace corio_test {

// A bulk string, in RESP.
inline std::string bulk(std::string_view s) {
  return "$" + std::to_string(s.size()) + "\r\n" + std::string(s) + "\r\n";
}
// SCRIPT LOAD's answer as Redis gives it: the SHA1 of the script (argv[2]).
inline std::string script_sha(const std::vector<std::string_view>& argv) {
  return bulk(corio::dist::detail::sha1_hex(argv.at(2)));
}

class fake_redis {
 public:
  using answer_fn = std::function<std::string(const std::vector<std::string_view>& argv, int n)>;

  // How clients are served: one after another, or each on a thread of its own (for code
  // under test that holds two connections at once, such as a task pool's collector).
  enum class serving { one_at_a_time, concurrently };

  explicit fake_redis(answer_fn answer, bool answer_cluster_slots = false, serving how = serving::one_at_a_time)
      : answer_(std::move(answer)), answer_cluster_slots_(answer_cluster_slots), how_(how) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd_, 4) == 0);
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~fake_redis() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
    // The concurrent clients' sockets are closed only here, after their threads: an fd
    // closed by its thread could be reused before this shutdown reached it.
    for (const int c : clients_) ::shutdown(c, SHUT_RDWR);
    for (std::thread& t : client_threads_) t.join();
    for (const int c : clients_) ::close(c);
  }
  fake_redis(const fake_redis&) = delete;
  fake_redis& operator=(const fake_redis&) = delete;

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int commands() const { return commands_.load(); }

 private:
  void serve() {
    for (;;) {
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      if (how_ == serving::concurrently) {
        clients_.push_back(c);  // this thread alone adds; the destructor reads after joining it
        client_threads_.emplace_back([this, c] { serve_one(c); });
        continue;
      }
      serve_one(c);
      ::close(c);
    }
  }
  void serve_one(int c) {
    std::string in;
    corio::resp::command_parser parser;
    char buf[4096];
    for (ssize_t n; (n = ::recv(c, buf, sizeof buf, 0)) > 0;) {
      in.append(buf, static_cast<std::size_t>(n));
      for (;;) {
        // Per command: parse appends to argv, and the views of the one before were erased.
        std::vector<std::string_view> argv;
        const auto r = parser.parse(in, argv);
        if (r.status != corio::resp::parse_status::complete) break;
        std::string reply;
        if (!answer_cluster_slots_ && argv.size() == 2 && argv[0] == "CLUSTER" && argv[1] == "SLOTS")
          reply = "-ERR This instance has cluster support disabled\r\n";
        else
          reply = answer_(argv, commands_++);
        (void)!::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
        in.erase(0, r.consumed);
        if (in.empty()) break;
      }
    }
  }

  answer_fn answer_;
  bool answer_cluster_slots_;
  serving how_;
  std::vector<int> clients_;  // serving::concurrently
  std::vector<std::thread> client_threads_;
  int fd_;
  int port_ = 0;
  std::atomic<int> commands_{0};
  std::thread thread_;
};

// A fake for a dist::manager and what it serves (queues, pools, workers), each client on
// a thread of its own: CONFIG GET (the manager's configuration check) answered with
// nothing and SCRIPT LOAD with the script's SHA1, as a Redis does; every other command by
// `answer`.
inline fake_redis manager_fake(std::function<std::string(const std::vector<std::string_view>& argv)> answer) {
  return fake_redis(
      [answer = std::move(answer)](const std::vector<std::string_view>& argv, int) -> std::string {
        if (argv[0] == "CONFIG") return "*0\r\n";
        if (argv[0] == "SCRIPT") return script_sha(argv);
        return answer(argv);
      },
      false, fake_redis::serving::concurrently);
}

}  // namespace corio_test
