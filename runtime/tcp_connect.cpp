// tcp_stream::connect by name and connect_any (stream.hpp has the contract): the lookup
// and the address-by-address tries, apart from the socket I/O in stream.cpp.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include "errors.hpp"
#include "resolve.hpp"
#include "stream.hpp"

namespace corio {

namespace {

using std::chrono::steady_clock;

std::string ms_text(std::chrono::milliseconds d) { return std::to_string(d.count()) + " ms"; }

// connect_any's body; `label` names what is connected for the error ("connect
// localhost:6379").
task<tcp_stream> connect_in_turn(std::vector<address> to, std::string label, op_options options,
                                 std::chrono::milliseconds per_try) {
  if (to.empty()) throw std::invalid_argument(label + ": no address to try");
  for (const address& a : to) tcp_stream::check_address(a, "connect");
  std::string tried;
  std::error_code last;
  bool last_timed_out = false;
  for (std::size_t i = 0; i < to.size(); ++i) {
    const bool final_try = i + 1 == to.size();
    op_options one = options;
    std::chrono::milliseconds limit{0};
    if (!final_try) {
      // A fair share of what is left, so one silent address cannot starve the others.
      const auto now = steady_clock::now();
      auto share = std::chrono::duration_cast<steady_clock::duration>(per_try);
      if (options.deadline)
        share = std::min(share, (*options.deadline - now) / static_cast<long>(to.size() - i));
      one.deadline = now + share;
    }
    if (one.deadline)
      limit = std::chrono::ceil<std::chrono::milliseconds>(*one.deadline - steady_clock::now());
    std::string why;
    try {
      co_return co_await tcp_stream::connect(to[i], one);
    } catch (const operation_cancelled&) {
      throw;
    } catch (const timed_out& e) {
      why = "no answer within " + ms_text(limit);
      last = e.code();
      last_timed_out = true;
    } catch (const std::system_error& e) {
      why = e.code().message();
      last = e.code();
      last_timed_out = false;
    }
    tried += (tried.empty() ? "" : "; ") + to[i].to_string() + ": " + why;
    // The whole call's deadline passed: the addresses left would fail at once.
    if (options.deadline && steady_clock::now() >= *options.deadline) break;
  }
  const std::string what = label + " (tried " + tried + ")";
  if (last_timed_out) throw timed_out(what);
  throw std::system_error(last, what);
}

}  // namespace

task<tcp_stream> tcp_stream::connect_any(std::vector<address> to, op_options options,
                                         std::chrono::milliseconds per_try) {
  return connect_in_turn(std::move(to), "connect", options, per_try);
}

task<tcp_stream> tcp_stream::connect(std::string host, std::uint16_t port, op_options options,
                                     std::chrono::milliseconds per_try) {
  std::vector<address> all = co_await resolve(host, port, {.deadline = options.deadline});
  if (is_numeric_host(host)) co_return co_await connect(all.front(), options);
  co_return co_await connect_in_turn(std::move(all), "connect " + host + ":" + std::to_string(port), options,
                                     per_try);
}

}  // namespace corio
