// Whether the client of an HTTP request is still connected, for handlers that never write until
// they finish (non-streaming generation). cpp-httplib 0.11 gives handlers no socket, only the
// connection's addresses, so we look the connection up in Linux's /proc/net/tcp{,6}: our side of a
// connection whose client closed it sits in CLOSE_WAIT, and one that was reset is gone.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace gemmax::serve {

// One side of a TCP connection as httplib reports it: a numeric IPv4 or IPv6 address
// ("127.0.0.1", "::1", "::ffff:127.0.0.1") and a port.
struct TcpEndpoint {
  std::string addr;
  int port = -1;
};

enum class PeerState {
  kConnected,  // found, and the client has not closed its side
  kClosed,     // found in CLOSE_WAIT: the client closed the connection
  kAbsent,     // not listed: the connection was reset (or never existed)
  kUnknown,    // the table or the endpoints could not be read: assume the client is still there
};

// Looks the connection (our `local` side, the client's `remote` side) up in the text of one
// /proc/net/tcp or /proc/net/tcp6 file. IPv4 addresses match their IPv4-mapped IPv6 form either
// way. Lines that do not parse are skipped; text without the table's header, or endpoints that
// are not numeric addresses with ports in 0..65535, give kUnknown. Pure: no I/O.
PeerState tcp_peer_state(std::string_view proc_net_tcp_text, const TcpEndpoint& local,
                         const TcpEndpoint& remote);

// Reads <proc_net_dir>/tcp and <proc_net_dir>/tcp6. kAbsent only when both files were read, and
// again on a second read (the kernel lists sockets in chunks, so one that stays open can be
// skipped while others come and go).
PeerState peer_state(const TcpEndpoint& local, const TcpEndpoint& remote,
                     const std::string& proc_net_dir = "/proc/net");

// Polls peer_state() at most once per `interval` for a handler's wait loop.
class PeerWatch {
 public:
  using Clock = std::chrono::steady_clock;
  PeerWatch(TcpEndpoint local, TcpEndpoint remote,
            std::chrono::milliseconds interval = std::chrono::milliseconds(300),
            std::string proc_net_dir = "/proc/net");
  // True once the client closed or reset the connection; never true on doubt (kUnknown).
  bool disconnected();

 private:
  TcpEndpoint local_, remote_;
  std::chrono::milliseconds interval_;
  std::string dir_;
  Clock::time_point next_check_;
};

}  // namespace gemmax::serve
