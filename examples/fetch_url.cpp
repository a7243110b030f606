// Seed 002's thread pool fetching pages: two downloads submitted to a pool of ten
// threads, their pages collected through future.result() (corio: get()).
//
//     def fetch_url(url):
//         u = urllib.request.urlopen(url)
//         data = u.read()
//         return data
//
//     pool = ThreadPoolExecutor(10)
//     a = pool.submit(fetch_url, 'http://www.python.org')
//     b = pool.submit(fetch_url, 'http://www.pypy.org')
//     x = a.result()
//     y = b.result()
//
// No internet is needed: the example first starts a small HTTP server of its own on
// 127.0.0.1 (a corio::thread named HttpServer) that serves a www.python.org and a
// www.pypy.org page of fixed sizes. fetch_url is a plain blocking HTTP/1.0 GET, the
// kind of call a thread pool exists for; it prints each page's size.
#include <corio/runtime/thread.hpp>
#include <corio/runtime/thread_pool.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <system_error>

namespace {

[[noreturn]] void fail(const std::string& what) { throw std::system_error(errno, std::generic_category(), what); }

// An open socket, closed when it goes out of scope.
struct socket_fd {
  int fd;
  explicit socket_fd(int f) : fd(f) {
    if (fd < 0) fail("socket");
  }
  ~socket_fd() { ::close(fd); }
  socket_fd(const socket_fd&) = delete;
  socket_fd& operator=(const socket_fd&) = delete;
};

std::string read_until_eof(int fd) {
  std::string data;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("read");
    if (n == 0) return data;
    data.append(buf, static_cast<std::size_t>(n));
  }
}

void write_all(int fd, const std::string& data) {
  for (std::size_t sent = 0; sent < data.size();) {
    const ssize_t n = ::write(fd, data.data() + sent, data.size() - sent);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("write");
    sent += static_cast<std::size_t>(n);
  }
}

// The local stand-in for the internet: path -> page.
const std::map<std::string, std::string> pages = {
    {"/www.python.org", std::string(49'812, 'p')},
    {"/www.pypy.org", std::string(21'347, 'y')},
};

// One request per connection (HTTP/1.0), until the listening socket is shut down.
void serve(int listener) {
  for (;;) {
    const int conn = ::accept(listener, nullptr, nullptr);
    if (conn < 0) return;  // shutdown() of the listener ends accept with EINVAL
    socket_fd c(conn);
    std::string request;
    char buf[1024];
    while (request.find("\r\n\r\n") == std::string::npos) {
      const ssize_t n = ::read(c.fd, buf, sizeof buf);
      if (n <= 0) break;
      request.append(buf, static_cast<std::size_t>(n));
    }
    const std::size_t path_start = request.find(' ') + 1;
    const std::string path = request.substr(path_start, request.find(' ', path_start) - path_start);
    const auto page = pages.find(path);
    if (page == pages.end()) {
      write_all(c.fd, "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
      continue;
    }
    write_all(c.fd, "HTTP/1.0 200 OK\r\nContent-Length: " + std::to_string(page->second.size()) + "\r\n\r\n" +
                        page->second);
  }
}

// urllib.request.urlopen(url).read() for "http://127.0.0.1:PORT/PATH".
std::string fetch_url(const std::string& url) {
  const std::string prefix = "http://127.0.0.1:";
  if (url.rfind(prefix, 0) != 0) throw std::invalid_argument("fetch_url: only " + prefix + "PORT/PATH URLs: " + url);
  const std::size_t slash = url.find('/', prefix.size());
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(std::stoi(url.substr(prefix.size(), slash - prefix.size()))));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socket_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (::connect(s.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) fail("connect " + url);
  write_all(s.fd, "GET " + url.substr(slash) + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  const std::string response = read_until_eof(s.fd);
  if (response.rfind("HTTP/1.0 200 ", 0) != 0)
    throw std::runtime_error("fetch_url " + url + ": " + response.substr(0, response.find('\r')));
  return response.substr(response.find("\r\n\r\n") + 4);
}

}  // namespace

int main() {
  socket_fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // port 0: the kernel picks a free one
  socklen_t len = sizeof addr;
  if (::bind(listener.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) fail("bind 127.0.0.1:0");
  if (::listen(listener.fd, 16) != 0) fail("listen");
  if (::getsockname(listener.fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) fail("getsockname");
  const std::string site = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  corio::thread server("HttpServer", serve, listener.fd);
  server.start();

  {
    corio::thread_pool pool(10);
    // Submit work to the pool
    auto a = pool.submit(fetch_url, site + "/www.python.org");
    auto b = pool.submit(fetch_url, site + "/www.pypy.org");
    // Get the results back
    const std::string x = a.get();
    const std::string y = b.get();
    std::printf("%s/www.python.org: %zu bytes\n", site.c_str(), x.size());
    std::printf("%s/www.pypy.org: %zu bytes\n", site.c_str(), y.size());
  }

  ::shutdown(listener.fd, SHUT_RDWR);  // wakes the server's accept()
  server.join();
}
