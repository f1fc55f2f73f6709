#include "serve/peer_connection.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

namespace gemmax::serve {

namespace {

// An address in IPv6 form (network byte order); IPv4 is stored as ::ffff:a.b.c.d so that the
// IPv4 and the IPv4-mapped spelling of one address compare equal.
using Address = std::array<uint8_t, 16>;

struct Key {
  std::optional<Address> addr;  // none: any address (the local side when httplib gave none)
  uint16_t port = 0;
};

// Socket states as /proc/net/tcp prints them (include/net/tcp_states.h).
constexpr uint32_t kTcpCloseWait = 0x08;
constexpr uint32_t kTcpTimeWait = 0x06;

Address mapped_v4(const uint8_t* v4) {
  Address a{};
  a[10] = a[11] = 0xff;
  std::memcpy(a.data() + 12, v4, 4);
  return a;
}

std::optional<Address> parse_numeric_address(std::string addr) {
  if (const size_t pct = addr.find('%'); pct != std::string::npos) addr.resize(pct);  // fe80::1%lo
  if (addr.size() >= 2 && addr.front() == '[' && addr.back() == ']')
    addr = addr.substr(1, addr.size() - 2);
  uint8_t buf[16];
  if (inet_pton(AF_INET, addr.c_str(), buf) == 1) return mapped_v4(buf);
  if (inet_pton(AF_INET6, addr.c_str(), buf) == 1) {
    Address a;
    std::memcpy(a.data(), buf, 16);
    return a;
  }
  return std::nullopt;
}

std::optional<Key> key_of(const TcpEndpoint& e, bool addr_required) {
  if (e.port < 0 || e.port > 65535) return std::nullopt;
  Key k{std::nullopt, static_cast<uint16_t>(e.port)};
  if (e.addr.empty() && !addr_required) return k;
  k.addr = parse_numeric_address(e.addr);
  if (!k.addr) return std::nullopt;
  return k;
}

// Exactly `digits` hex digits (upper or lower case), nothing else.
std::optional<uint32_t> parse_hex(std::string_view s, size_t digits) {
  uint32_t v = 0;
  if (s.size() != digits) return std::nullopt;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// "0100007F:1F90" (IPv4) or 32 hex digits then ":1F90" (IPv6). The kernel prints each 32-bit
// word of the address as the number it is in memory, so copying the parsed words back in this
// host's byte order restores the address bytes; the port is printed as a plain number.
std::optional<std::pair<Address, uint16_t>> parse_proc_endpoint(std::string_view field) {
  const size_t colon = field.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const std::string_view hex = field.substr(0, colon);
  if (hex.size() != 8 && hex.size() != 32) return std::nullopt;
  const std::optional<uint32_t> port = parse_hex(field.substr(colon + 1), 4);
  if (!port) return std::nullopt;
  uint8_t bytes[16];
  for (size_t w = 0; w < hex.size() / 8; ++w) {
    const std::optional<uint32_t> word = parse_hex(hex.substr(w * 8, 8), 8);
    if (!word) return std::nullopt;
    std::memcpy(bytes + 4 * w, &*word, 4);
  }
  Address a;
  if (hex.size() == 8)
    a = mapped_v4(bytes);
  else
    std::memcpy(a.data(), bytes, 16);
  return std::pair{a, static_cast<uint16_t>(*port)};
}

bool matches(const std::pair<Address, uint16_t>& e, const Key& k) {
  return e.second == k.port && (!k.addr || e.first == *k.addr);
}

// The whitespace-separated fields of one line, at most `max` of them.
std::vector<std::string_view> fields(std::string_view line, size_t max) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (out.size() < max) {
    i = line.find_first_not_of(" \t\r", i);
    if (i == std::string_view::npos) break;
    const size_t end = std::min(line.find_first_of(" \t\r", i), line.size());
    out.push_back(line.substr(i, end - i));
    i = end;
  }
  return out;
}

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return std::move(text).str();
}

PeerState read_once(const TcpEndpoint& local, const TcpEndpoint& remote, const std::string& dir) {
  PeerState states[2];
  const char* names[2] = {"/tcp", "/tcp6"};
  for (int i = 0; i < 2; ++i) {
    const std::optional<std::string> text = read_file(dir + names[i]);
    states[i] = text ? tcp_peer_state(*text, local, remote) : PeerState::kUnknown;
  }
  for (PeerState s : {PeerState::kConnected, PeerState::kClosed, PeerState::kUnknown})
    if (states[0] == s || states[1] == s) return s;  // in this order of precedence
  return PeerState::kAbsent;
}

}  // namespace

PeerState tcp_peer_state(std::string_view text, const TcpEndpoint& local,
                         const TcpEndpoint& remote) {
  const std::optional<Key> local_key = key_of(local, false), remote_key = key_of(remote, true);
  if (!local_key || !remote_key) return PeerState::kUnknown;
  const std::vector<std::string_view> header = fields(text.substr(0, text.find('\n')), 1);
  if (header.empty() || header[0] != "sl") return PeerState::kUnknown;  // not a socket table
  bool closed = false;
  size_t pos = text.find('\n');
  while (pos != std::string_view::npos && pos < text.size()) {
    const size_t end = std::min(text.find('\n', pos + 1), text.size());
    const std::vector<std::string_view> f = fields(text.substr(pos + 1, end - pos - 1), 4);
    pos = end;
    if (f.size() < 4) continue;  // "sl: local remote st" and more; anything shorter is damaged
    const auto l = parse_proc_endpoint(f[1]), r = parse_proc_endpoint(f[2]);
    const std::optional<uint32_t> st = parse_hex(f[3], 2);
    if (!l || !r || !st || !matches(*l, *local_key) || !matches(*r, *remote_key)) continue;
    // A socket we hold open is never in TIME_WAIT: such an entry is an earlier connection that
    // used the same ports. Any state but CLOSE_WAIT means the client has not closed its side.
    if (*st == kTcpTimeWait) continue;
    if (*st != kTcpCloseWait) return PeerState::kConnected;
    closed = true;
  }
  return closed ? PeerState::kClosed : PeerState::kAbsent;
}

PeerState peer_state(const TcpEndpoint& local, const TcpEndpoint& remote,
                     const std::string& proc_net_dir) {
  const PeerState s = read_once(local, remote, proc_net_dir);
  return s == PeerState::kAbsent ? read_once(local, remote, proc_net_dir) : s;
}

PeerWatch::PeerWatch(TcpEndpoint local, TcpEndpoint remote, std::chrono::milliseconds interval,
                     std::string proc_net_dir)
    : local_(std::move(local)),
      remote_(std::move(remote)),
      interval_(interval),
      dir_(std::move(proc_net_dir)),
      next_check_(Clock::now() + interval) {}

bool PeerWatch::disconnected() {
  const Clock::time_point now = Clock::now();
  if (now < next_check_) return false;
  next_check_ = now + interval_;
  const PeerState s = peer_state(local_, remote_, dir_);
  return s == PeerState::kClosed || s == PeerState::kAbsent;
}

}  // namespace gemmax::serve
