#include "daemon/port_owner.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace guardian {
namespace {

constexpr const char* kListenState = "0A";  // TCP_LISTEN in /proc/net/tcp's "st" column

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The numeric entries of a /proc directory.
std::vector<std::string> NumericEntries(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (!name.empty() && name.find_first_not_of("0123456789") == std::string::npos) {
      out.push_back(name);
    }
  }
  ::closedir(d);
  return out;
}

}  // namespace

std::vector<ListeningSocket> ParseProcNetTcp(const std::string& text, int port, bool v6) {
  // "  sl  local_address rem_address   st tx_queue:rx_queue tr:tm->when retrnsmt   uid  timeout
  // inode"
  std::vector<ListeningSocket> out;
  std::istringstream lines(text);
  std::string line;
  std::getline(lines, line);  // header
  while (std::getline(lines, line)) {
    std::istringstream f(line);
    std::string sl, local, remote, st, queues, timer, retrans, uid, timeout, inode;
    if (!(f >> sl >> local >> remote >> st >> queues >> timer >> retrans >> uid >> timeout >>
          inode)) {
      continue;
    }
    if (st != kListenState) continue;
    size_t colon = local.rfind(':');
    if (colon == std::string::npos) continue;
    char* end = nullptr;
    long p = std::strtol(local.c_str() + colon + 1, &end, 16);
    if (*end != '\0' || p != port) continue;
    uint64_t ino = std::strtoull(inode.c_str(), &end, 10);
    if (*end != '\0' || ino == 0) continue;
    out.push_back({ino, local.substr(0, colon), v6});
  }
  return out;
}

Status FindPortOwners(int port, std::vector<ProcessIdentity>* owners, int* unattributed) {
  if (port <= 0 || port > 65535) {
    return Status::InvalidArgument("port must be 1..65535, got " + std::to_string(port));
  }
  std::set<uint64_t> wanted;
  for (bool v6 : {false, true}) {
    for (const auto& s :
         ParseProcNetTcp(ReadFile(v6 ? "/proc/net/tcp6" : "/proc/net/tcp"), port, v6)) {
      wanted.insert(s.inode);
    }
  }
  owners->clear();
  if (unattributed) *unattributed = 0;
  if (wanted.empty()) return Status::OK();
  std::set<uint64_t> found;
  std::map<pid_t, bool> seen;
  for (const auto& pid_text : NumericEntries("/proc")) {
    pid_t pid = static_cast<pid_t>(std::atol(pid_text.c_str()));
    std::string fd_dir = "/proc/" + pid_text + "/fd";
    for (const auto& fd : NumericEntries(fd_dir)) {
      char buf[64];
      ssize_t n = ::readlink((fd_dir + "/" + fd).c_str(), buf, sizeof(buf) - 1);
      if (n <= 0) continue;
      buf[n] = '\0';
      // "socket:[12345]"
      unsigned long long ino = 0;
      if (std::sscanf(buf, "socket:[%llu]", &ino) != 1 || !wanted.count(ino)) continue;
      found.insert(ino);
      if (seen[pid]) continue;
      ProcessIdentity id;
      // A process that exited meanwhile holds nothing any more.
      if (ReadProcessIdentity(pid, &id).ok()) {
        owners->push_back(id);
        seen[pid] = true;
      }
    }
  }
  if (unattributed) *unattributed = static_cast<int>(wanted.size() - found.size());
  return Status::OK();
}

}  // namespace guardian
