// The subprocess lesson of seeds 002 and 003: run a program as if typed at the shell,
// then one that reads its commands from stdin, and print each exit code.
//
//     print('$ nslookup www.python.org')
//     r = subprocess.call(['nslookup', 'www.python.org'])
//     print('Exit code:', r)
//
//     print('$ nslookup')
//     p = subprocess.Popen(['nslookup'], stdin=PIPE, stdout=PIPE, stderr=PIPE)
//     output, err = p.communicate(b'set q=mx\npython.org\nexit\n')
//     print(output.decode('utf-8'))
//     print('Exit code:', p.returncode)
//
// nslookup is not on a bare Debian machine (it comes with bind9-dnsutils) and needs a
// DNS server on the internet. The same shapes run here on programs every Debian has and
// that work offline: `getent hosts localhost` (libc-bin, Essential: a name lookup
// through /etc/hosts, like nslookup's through DNS), and `sh` reading commands on stdin
// as nslookup does in interactive mode.
//
// corio's subprocess API is made of coroutines; call() and communicate() below run one
// on a loop of their own, so main() reads like the Python script.
#include <corio/runtime/loop.hpp>
#include <corio/runtime/subprocess.hpp>

#include <cstdio>
#include <string>
#include <vector>

namespace sp = corio::subprocess;

// subprocess.call(argv): the child writes to our stdout; returns its exit code.
int call(std::vector<std::string> argv) {
  std::fflush(stdout);  // our lines first, then the child's
  corio::loop lp;
  return lp.run(sp::call(std::move(argv)));
}

// Popen(argv, stdin=PIPE, stdout=PIPE, stderr=PIPE).communicate(input)
sp::result communicate(std::vector<std::string> argv, std::string input) {
  corio::loop lp;
  return lp.run([](std::vector<std::string> argv, std::string input) -> corio::task<sp::result> {
    sp::child c = sp::spawn(std::move(argv),
                            sp::options{}.in(sp::stdio::pipe()).out(sp::stdio::pipe()).err(sp::stdio::pipe()));
    co_return co_await c.communicate(input);
  }(std::move(argv), std::move(input)));
}

int main() {
  std::printf("$ getent hosts localhost\n");
  const int r = call({"getent", "hosts", "localhost"});
  std::printf("Exit code: %d\n", r);

  std::printf("$ sh\n");
  const sp::result p = communicate({"sh"}, "echo python.org\ngetent hosts localhost\nexit\n");
  std::printf("%s\n", p.out.c_str());
  std::printf("Exit code: %d\n", p.returncode);
  return r != 0 || p.returncode != 0;
}
