#include "serve/peer_connection.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

namespace gemmax::serve {
namespace {

namespace fs = std::filesystem;

// Lines copied from this machine's /proc/net/tcp (x86-64, little-endian): a server on
// 127.0.0.1:60999 (EE47) listening, in CLOSE_WAIT with the client at port 44346 (AD3A), whose
// socket is in FIN_WAIT2, and ESTABLISHED with the client at port 44350 (AD3E). Plus an old
// connection in TIME_WAIT from port 44354 (AD42).
constexpr const char* kTcp4 =
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout "
    "inode                                                     \n"
    "   1: 0100007F:EE47 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 "
    "261263 1 000000008e8c49d1 100 0 0 10 0                    \n"
    "  45: 0100007F:EE47 0100007F:AD3A 08 00000000:00000001 00:00000000 00000000     0        0 "
    "261265 1 0000000054a974b2 20 4 0 10 -1                    \n"
    "  57: 0100007F:AD3A 0100007F:EE47 05 00000000:00000000 03:00001762 00000000     0        0 0 "
    "3 00000000cd1682c3                                      \n"
    "  58: 0100007F:AD3E 0100007F:EE47 01 00000000:00000000 00:00000000 00000000     0        0 "
    "261266 2 0000000075af72b3 20 0 0 10 -1                    \n"
    "  73: 0100007F:EE47 0100007F:AD3E 01 00000000:00000000 00:00000000 00000000     0        0 "
    "261267 1 000000005d7d3b24 20 0 0 10 -1                    \n"
    "  74: 0100007F:EE47 0100007F:AD42 06 00000000:00000000 03:00001762 00000000     0        0 0 "
    "3 00000000cd1682c4                                      \n";

// From /proc/net/tcp6: a dual-stack server on [::]:56039 (DAE7), ESTABLISHED with a client at
// [::1]:51622 (C9A6) and in CLOSE_WAIT with an IPv4 client 127.0.0.1:34462 (869E), which the
// kernel lists in its IPv4-mapped form ::ffff:127.0.0.1.
constexpr const char* kTcp6 =
    "  sl  local_address                         remote_address                        st "
    "tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    "   0: 00000000000000000000000000000000:DAE7 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000     0        0 259420 1 00000000a2a83e79 100 0 0 10 "
    "0\n"
    "   1: 00000000000000000000000001000000:DAE7 00000000000000000000000001000000:C9A6 01 "
    "00000000:00000000 00:00000000 00000000     0        0 259424 1 000000007ffe86fc 20 0 0 10 "
    "-1\n"
    "   2: 0000000000000000FFFF00000100007F:DAE7 0000000000000000FFFF00000100007F:869E 08 "
    "00000000:00000001 00:00000000 00000000     0        0 259422 1 000000002d829a61 20 4 0 10 "
    "-1\n";

constexpr const char* kTcp6HeaderOnly =
    "  sl  local_address                         remote_address                        st "
    "tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

const TcpEndpoint kServer4{"127.0.0.1", 60999};

TEST(TcpPeerState, Ipv4EstablishedClosedAndMissing) {
  EXPECT_EQ(tcp_peer_state(kTcp4, kServer4, {"127.0.0.1", 44350}), PeerState::kConnected);
  EXPECT_EQ(tcp_peer_state(kTcp4, kServer4, {"127.0.0.1", 44346}), PeerState::kClosed);
  EXPECT_EQ(tcp_peer_state(kTcp4, kServer4, {"127.0.0.1", 44999}), PeerState::kAbsent);
  // Only a TIME_WAIT entry with these ports: not a socket the server still holds.
  EXPECT_EQ(tcp_peer_state(kTcp4, kServer4, {"127.0.0.1", 44354}), PeerState::kAbsent);
  // The client's own socket (local port 44346) is FIN_WAIT2, not CLOSE_WAIT: that is the other
  // side of the connection, looked up from the client's point of view.
  EXPECT_EQ(tcp_peer_state(kTcp4, {"127.0.0.1", 44346}, kServer4), PeerState::kConnected);
}

TEST(TcpPeerState, AddressesAndPortsMustAllMatch) {
  EXPECT_EQ(tcp_peer_state(kTcp4, kServer4, {"127.0.0.2", 44350}), PeerState::kAbsent);
  EXPECT_EQ(tcp_peer_state(kTcp4, {"127.0.0.2", 60999}, {"127.0.0.1", 44350}), PeerState::kAbsent);
  EXPECT_EQ(tcp_peer_state(kTcp4, {"127.0.0.1", 60998}, {"127.0.0.1", 44350}), PeerState::kAbsent);
  // No local address given: the local port alone selects the server side.
  EXPECT_EQ(tcp_peer_state(kTcp4, {"", 60999}, {"127.0.0.1", 44346}), PeerState::kClosed);
}

TEST(TcpPeerState, Ipv6AndIpv4MappedMatchEitherSpelling) {
  const TcpEndpoint server6{"::1", 56039};
  EXPECT_EQ(tcp_peer_state(kTcp6, server6, {"::1", 51622}), PeerState::kConnected);
  EXPECT_EQ(tcp_peer_state(kTcp6, {"0:0:0:0:0:0:0:1", 56039}, {"::1", 51622}),
            PeerState::kConnected);
  EXPECT_EQ(tcp_peer_state(kTcp6, {"::ffff:127.0.0.1", 56039}, {"::ffff:127.0.0.1", 34462}),
            PeerState::kClosed);
  EXPECT_EQ(tcp_peer_state(kTcp6, {"127.0.0.1", 56039}, {"127.0.0.1", 34462}), PeerState::kClosed);
  EXPECT_EQ(tcp_peer_state(kTcp6, {"[::ffff:127.0.0.1]", 56039}, {"::FFFF:7f00:1", 34462}),
            PeerState::kClosed);
  // ::1 is not 127.0.0.1, mapped or not.
  EXPECT_EQ(tcp_peer_state(kTcp6, {"::1", 56039}, {"127.0.0.1", 51622}), PeerState::kAbsent);
  // And the IPv4 table answers for the mapped spelling of its addresses.
  EXPECT_EQ(tcp_peer_state(kTcp4, {"::ffff:127.0.0.1", 60999}, {"::ffff:127.0.0.1", 44346}),
            PeerState::kClosed);
  EXPECT_EQ(tcp_peer_state(kTcp6HeaderOnly, server6, {"::1", 51622}), PeerState::kAbsent);
}

TEST(TcpPeerState, EndpointsThatAreNotNumericAddressesAreUnknown) {
  for (const TcpEndpoint& remote : std::vector<TcpEndpoint>{{"localhost", 44350},
                                                            {"", 44350},
                                                            {"127.0.0.1", -1},
                                                            {"127.0.0.1", 65536},
                                                            {"1.2.3", 1}})
    EXPECT_EQ(tcp_peer_state(kTcp4, kServer4, remote), PeerState::kUnknown) << remote.addr;
  EXPECT_EQ(tcp_peer_state(kTcp4, {"127.0.0.1", 70000}, {"127.0.0.1", 44350}), PeerState::kUnknown);
  EXPECT_EQ(tcp_peer_state(kTcp4, {"x", 60999}, {"127.0.0.1", 44350}), PeerState::kUnknown);
}

TEST(TcpPeerState, TextThatIsNotASocketTableIsUnknown) {
  const TcpEndpoint remote{"127.0.0.1", 44350};
  EXPECT_EQ(tcp_peer_state("", kServer4, remote), PeerState::kUnknown);
  EXPECT_EQ(tcp_peer_state("\n\n", kServer4, remote), PeerState::kUnknown);
  EXPECT_EQ(tcp_peer_state("hello world\n", kServer4, remote), PeerState::kUnknown);
  // The entry without the header line.
  const std::string text = kTcp4;
  EXPECT_EQ(tcp_peer_state(text.substr(text.find('\n') + 1), kServer4, remote),
            PeerState::kUnknown);
}

TEST(TcpPeerState, DamagedLinesAreSkipped) {
  const std::string header = std::string(kTcp4).substr(0, std::string(kTcp4).find('\n') + 1);
  const TcpEndpoint remote{"127.0.0.1", 44350};
  // Each is a damaged copy of the ESTABLISHED entry: none may be taken for it.
  for (const char* line : {
           "  73: 0100007F:EE47 0100007F:AD3E\n",                     // no state
           "  73: 0100007F:EE47 0100007F:AD3E 1\n",                   // one-digit state
           "  73: 0100007F:EE47 0100007F:AD3E 0x1\n",                 // not plain hex
           "  73: 0100007F:EE47 0100007F:AD3EE 01\n",                 // five-digit port
           "  73: 0100007F:EE47 0100007F:+D3E 01\n",                  // sign in the port
           "  73: 0100007F:EE47 0100007F 01\n",                       // no port
           "  73: 0100007F:EE47 100007F:AD3E 01\n",                   // seven-digit address
           "  73: 0100007G:EE47 0100007F:AD3E 01\n",                  // not hex
           "  73: 0100007F:EE47 00000000000000000100007F:AD3E 01\n",  // 24-digit address
           "\x01\x02\xff\xfe garbage \0 here\n",
       }) {
    EXPECT_EQ(tcp_peer_state(header + line, kServer4, remote), PeerState::kAbsent) << line;
    // A damaged line next to the real one does not hide it.
    EXPECT_EQ(tcp_peer_state(header + line + kTcp4, kServer4, remote), PeerState::kConnected)
        << line;
  }
  // Every truncation of the table parses without crashing, and never invents a CLOSE_WAIT.
  const std::string full = kTcp4;
  for (size_t n = 0; n <= full.size(); ++n) {
    const PeerState s = tcp_peer_state(std::string_view(full).substr(0, n), kServer4, remote);
    EXPECT_NE(s, PeerState::kClosed) << n;
  }
  // Upper- and lower-case hex, tabs and CRLF line ends are all fine.
  EXPECT_EQ(tcp_peer_state(header + "73:\t0100007f:ee47\t0100007f:ad3e\t08\r\n", kServer4, remote),
            PeerState::kClosed);
}

class ProcDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("gemmax_peer_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const char* name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  PeerState state(const TcpEndpoint& local, const TcpEndpoint& remote) {
    return peer_state(local, remote, dir_.string());
  }
  fs::path dir_;
};

TEST_F(ProcDir, CombinesBothFiles) {
  write("tcp", kTcp4);
  write("tcp6", kTcp6);
  EXPECT_EQ(state(kServer4, {"127.0.0.1", 44350}), PeerState::kConnected);
  EXPECT_EQ(state(kServer4, {"127.0.0.1", 44346}), PeerState::kClosed);
  EXPECT_EQ(state({"127.0.0.1", 56039}, {"127.0.0.1", 34462}), PeerState::kClosed);  // in tcp6
  EXPECT_EQ(state({"::1", 56039}, {"::1", 51622}), PeerState::kConnected);
  EXPECT_EQ(state(kServer4, {"127.0.0.1", 1}), PeerState::kAbsent);
}

TEST_F(ProcDir, AbsentNeedsBothFiles) {
  write("tcp", kTcp4);  // no tcp6 (a kernel without IPv6)
  EXPECT_EQ(state(kServer4, {"127.0.0.1", 44346}), PeerState::kClosed);
  EXPECT_EQ(state(kServer4, {"127.0.0.1", 44350}), PeerState::kConnected);
  EXPECT_EQ(state(kServer4, {"127.0.0.1", 1}), PeerState::kUnknown);
  write("tcp6", "garbage\n");
  EXPECT_EQ(state(kServer4, {"127.0.0.1", 1}), PeerState::kUnknown);
  fs::remove(dir_ / "tcp");
  fs::remove(dir_ / "tcp6");
  EXPECT_EQ(state(kServer4, {"127.0.0.1", 44346}), PeerState::kUnknown);
}

TEST_F(ProcDir, WatchChecksOncePerInterval) {
  write("tcp", kTcp4);
  write("tcp6", kTcp6HeaderOnly);
  const auto interval = std::chrono::milliseconds(50);
  PeerWatch closed(kServer4, {"127.0.0.1", 44346}, interval, dir_.string());
  PeerWatch open(kServer4, {"127.0.0.1", 44350}, interval, dir_.string());
  PeerWatch gone(kServer4, {"127.0.0.1", 1}, interval, dir_.string());
  EXPECT_FALSE(closed.disconnected());  // too early: the first check is one interval in
  std::this_thread::sleep_for(interval + std::chrono::milliseconds(10));
  EXPECT_TRUE(closed.disconnected());
  EXPECT_FALSE(open.disconnected());
  EXPECT_TRUE(gone.disconnected());
  fs::remove(dir_ / "tcp");  // unreadable: never a disconnect
  std::this_thread::sleep_for(interval + std::chrono::milliseconds(10));
  EXPECT_FALSE(closed.disconnected());
}

// A real loopback connection against this kernel's /proc/net: open, closed by the client,
// reset by the client.
class LoopbackConnection {
 public:
  LoopbackConnection() {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(listener_, 1) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      throw std::runtime_error("cannot listen on 127.0.0.1");
    server_.port = ntohs(addr.sin_port);
    client_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (client_fd_ < 0 || ::connect(client_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0)
      throw std::runtime_error("cannot connect to 127.0.0.1");
    accepted_ = ::accept(listener_, nullptr, nullptr);
    sockaddr_in client{};
    socklen_t clen = sizeof client;
    if (accepted_ < 0 || ::getsockname(client_fd_, reinterpret_cast<sockaddr*>(&client), &clen))
      throw std::runtime_error("cannot accept on 127.0.0.1");
    client_.port = ntohs(client.sin_port);
  }
  ~LoopbackConnection() {
    for (int fd : {listener_, client_fd_, accepted_})
      if (fd >= 0) ::close(fd);
  }
  void close_client(bool reset) {
    if (reset) {
      const linger l{1, 0};  // close with an RST instead of a FIN
      ::setsockopt(client_fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    ::close(client_fd_);
    client_fd_ = -1;
  }
  // Polls until the state is not `from` (the FIN or RST crosses loopback almost at once).
  PeerState state_after(PeerState from) const {
    PeerState s = from;
    for (int i = 0; i < 100 && s == from; ++i) {
      s = peer_state(server_, client_);
      if (s == from) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return s;
  }
  PeerState state() const { return peer_state(server_, client_); }

 private:
  int listener_ = -1, client_fd_ = -1, accepted_ = -1;
  TcpEndpoint server_{"127.0.0.1", -1}, client_{"127.0.0.1", -1};
};

TEST(PeerStateLive, ClientClosesTheConnection) {
  LoopbackConnection c;
  EXPECT_EQ(c.state(), PeerState::kConnected);
  c.close_client(false);
  EXPECT_EQ(c.state_after(PeerState::kConnected), PeerState::kClosed);
}

TEST(PeerStateLive, ClientResetsTheConnection) {
  LoopbackConnection c;
  EXPECT_EQ(c.state(), PeerState::kConnected);
  c.close_client(true);
  EXPECT_EQ(c.state_after(PeerState::kConnected), PeerState::kAbsent);
}

}  // namespace
}  // namespace gemmax::serve
