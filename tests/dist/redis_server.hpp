#pragma once
// A redis-server of the test's own: a fresh temporary directory, a free loopback port, a
// password (requirepass), optionally AOF with appendfsync always. Stopped and its
// directory removed by the destructor, even when the test fails; the server dies with
// the test process too (PR_SET_PDEATHSIG), so a crashed test leaves no server behind.
//
// Ready means: it answers AUTH + INFO server with its own process id, within 30 s (a
// loaded machine starts slowly; no fixed sleep). The pid matters: free_port() only names a
// port free a moment ago, so another test's redis-server (same default password) or an
// outgoing connection may hold it when ours binds; ours then exits with "Address already
// in use" and the constructor starts it again on another port, up to 5 times, instead of
// talking to someone else's server.
// No system service is touched. A machine without redis-server makes the test a skip.
// Free of doctest (bench/bench_distributed.cpp starts its server with it too); the
// REDIS_TEST_CASE macro needs tests/needs_feature.hpp where it is used.
#include <corio/dist/redis_client.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>


namespace corio_test {

// Asked once per process: test cases are decided at start-up (REDIS_TEST_CASE).
inline bool have_redis_server() {
  static const bool have = std::system("command -v redis-server >/dev/null 2>&1") == 0;
  return have;
}

// A port nobody listens on now (the kernel's pick for a bind to port 0).
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    throw std::runtime_error(std::string("free_port: ") + std::strerror(errno));
  ::close(fd);
  return ntohs(a.sin_port);
}

class redis_server {
 public:
  struct config {
    std::string password = "pw-of-the-test-7f3a";
    bool aof = false;
    std::vector<std::string> extra{};  // more redis.conf lines
  };

  redis_server() : redis_server(config{}) {}
  explicit redis_server(config c) : config_(std::move(c)), port_(free_port()) {
    char tmpl[] = "/tmp/corio-redis-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    for (int attempt = 1;; ++attempt) {
      write_config();
      try {
        start();
        return;
      } catch (const port_taken&) {
        if (attempt == 5) throw std::runtime_error("redis-server: 5 free ports were taken before it could bind them");
        port_ = free_port();
      }
    }
  }
  ~redis_server() {
    stop(SIGTERM);
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& password() const { return config_.password; }
  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }
  std::string log() const {
    std::ifstream in(dir_ + "/redis.log");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  // Stops the server with `sig` (SIGKILL: a crash) and starts it again on the same port
  // and directory (its AOF, if on, brings the data back).
  void restart(int sig = SIGTERM) {
    stop(sig);
    start();
  }
  void stop(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > give_up) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    pid_ = -1;
  }

 private:
  struct port_taken {};

  void write_config() const {
    std::ofstream conf(dir_ + "/redis.conf");
    conf << "port " << port_ << "\nbind 127.0.0.1\ndir " << dir_ << "\nlogfile " << dir_
         << "/redis.log\nsave \"\"\ndaemonize no\n";
    if (!config_.password.empty()) conf << "requirepass " << config_.password << "\n";
    conf << (config_.aof ? "appendonly yes\nappendfsync always\n" : "appendonly no\n");
    for (const auto& line : config_.extra) conf << line << "\n";
  }

  void start() {
    const std::string conf = dir_ + "/redis.conf";
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);
      ::execlp("redis-server", "redis-server", conf.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    wait_ready();
  }

  // Until our server answers with its pid, at most 30 s.
  void wait_ready() {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (;;) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        const std::string l = log();
        if (l.find("Address already in use") != std::string::npos) throw port_taken{};
        throw std::runtime_error("redis-server exited at start; its log:\n" + l);
      }
      if (answers_as_ours()) return;
      if (std::chrono::steady_clock::now() > give_up) {
        stop(SIGKILL);
        throw std::runtime_error("redis-server did not answer on port " + std::to_string(port_) + " within 30 s");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  // AUTH (when there is a password) and INFO server; true if the reply names our pid.
  bool answers_as_ours() const {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port_));
    std::string got;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      std::string req = "INFO server\r\n";
      if (!config_.password.empty()) req = "AUTH " + config_.password + "\r\n" + req;
      timeval tv{2, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
        char buf[4096];
        ssize_t n;
        // The INFO text ends with a blank line, the bulk string with \r\n after it.
        while (got.find("\r\n\r\n") == std::string::npos && got.size() < 65536 &&
               (n = ::recv(fd, buf, sizeof buf, 0)) > 0)
          got.append(buf, static_cast<std::size_t>(n));
      }
    }
    ::close(fd);
    const std::string ok = config_.password.empty() ? "$" : "+OK\r\n$";
    return got.starts_with(ok) && got.find("\r\nprocess_id:" + std::to_string(pid_) + "\r\n") != std::string::npos;
  }

  config config_;
  int port_;
  std::string dir_;
  pid_t pid_ = -1;
};

// The options that reach `s` with its password.
// A generous connect timeout: the machine running the tests may be busy.
inline corio::redis::options options_for(const redis_server& s) {
  return corio::redis::options(s.address()).password(s.password()).connect_timeout(std::chrono::seconds(10));
}

}  // namespace corio_test

// A test case that needs redis-server: without it doctest skips the case and the reason is
// printed (needs_feature.hpp), never a pass.
#define REDIS_TEST_CASE(name) \
  CORIO_TEST_IF(name, corio_test::have_redis_server(), "redis-server is not installed (scripts/deps.sh installs it)")
