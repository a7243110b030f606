#pragma once
// The errors of corio's Redis client (redis_client.hpp), from the one a caller handles
// most often to the rarest. All derive from redis::error (a std::runtime_error); timeouts
// and cancellation are the runtime's own timed_out and operation_cancelled.
//
// No message ever contains a password: messages name the server by its address without
// credentials ("redis 127.0.0.1:6379"), commands by their name only ("SET", never its
// arguments), and quote the server's own error text.

#include <stdexcept>
#include <string>

namespace corio::redis {

class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The server answered a command with an error reply ("-ERR ...", "-WRONGTYPE ...").
// code() is its first word ("ERR", "WRONGTYPE", "NOGROUP", "BUSYGROUP").
class server_error : public error {
 public:
  server_error(const std::string& what, std::string code) : error(what), code_(std::move(code)) {}
  const std::string& code() const noexcept { return code_; }

 private:
  std::string code_;
};

// The server refused who we are or what we may do: WRONGPASS (bad user or password),
// NOAUTH (a password is required), NOPERM (the ACL user may not run the command or touch
// the key). Never retried: retrying a refused password only fills the server's ACL log.
// At connect it is fatal for the client: every later command fails with it at once.
class auth_error : public server_error {
 public:
  using server_error::server_error;
};

// The connection could not be made, or was lost with a command in flight that may have
// been applied (not idempotent, so not re-sent), or reconnecting gave up.
class connection_error : public error {
 public:
  using error::error;
};

// A reply of a shape its command never gives: a wrong type, an array of the wrong length,
// a stream entry id that is no "ms-seq" or does not advance, a count out of range, a
// script's SHA1 that is not the script's (a broken or lying server, or not Redis at all).
// The message names the command and what was wrong. The reply was read whole, so the
// connection stays in order; what the caller was doing is not.
class unexpected_reply : public error {
 public:
  using error::error;
};

// Redis Cluster: a MOVED or ASK redirection or a CLUSTER SLOTS reply that cannot be
// followed (a slot out of range, an address without a port: a broken or lying server), or
// redirections that do not end (more than the client follows for one command).
class cluster_error : public error {
 public:
  using error::error;
};

// Redis Cluster: the keys of one command (or one script's KEYS) lie in different hash
// slots, which no node can serve. Thrown before sending; give the keys one hash tag.
class cross_slot_error : public error {
 public:
  using error::error;
};

}  // namespace corio::redis
