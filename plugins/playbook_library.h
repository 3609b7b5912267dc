#pragma once
// PlaybookLibrary: the playbooks found in the configured dirs, by name. Each file is read as
// text and test-loaded in a scratch sandbox (with no host API, as Redis loads functions) before
// it replaces the version in use; a file that fails to load is reported with file:line and the
// previous good version keeps running. Runs get the text of the version current at their start.

#include <uv.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "daemon/status.h"

namespace guardian {

class Sandbox;

struct PlaybookInfo {
  std::string name;
  std::vector<std::string> modes;  // the check modes it serves (the file's `mode`: one or a list)
  std::string path;
  std::string source;               // the Lua text
  int64_t timeout_ms = 0;           // per phase; 0 = the configured default
  int retries = 0;                  // extra attempts after the first
  std::vector<std::string> phases;  // which of backup/remediate/verify/rollback it defines
  bool disruptive = true;

  bool Serves(const std::string& mode) const;
  std::string ModesText() const;  // "file, http" for messages
};

class PlaybookLibrary {
 public:
  explicit PlaybookLibrary(PlaybookLimits limits) : limits_(limits) {}

  // Parses and validates one playbook file without installing it. Errors read "FILE:LINE: msg".
  static Status Inspect(const std::string& path, const PlaybookLimits& limits, PlaybookInfo* out);
  // Loads a playbook's text into `sb` and runs its top level under a small budget; on success
  // the returned table is on top of the stack. Errors read "FILE:LINE: msg".
  static Status RunChunk(Sandbox* sb, const std::string& source, const std::string& path,
                         const PlaybookLimits& limits);
  // The Lua chunk name for a playbook file: its file name, so messages read `name.lua:LINE:`
  // whatever the length of the folder (Lua cuts chunk names at 60 bytes).
  static std::string ChunkName(const std::string& path);

  // What a scan of the dirs found, before it is installed.
  struct ScanResult {
    std::vector<PlaybookInfo> loaded;
    std::vector<std::string> seen_paths;
    std::vector<std::string> errors;
  };
  // Reads and test-loads every playbook in `dirs`. Blocking and self-contained: the daemon
  // runs it on the thread pool, then calls Install on the loop thread.
  static ScanResult InspectDirs(const std::vector<std::string>& dirs, const PlaybookLimits& limits);
  // Installs a scan; returns one message per file that failed to load. Playbooks whose file
  // disappeared are dropped; a bad file keeps its previous version.
  std::vector<std::string> Install(ScanResult scan);
  // InspectDirs + Install, blocking (start-up and tools).
  std::vector<std::string> Scan(const std::vector<std::string>& dirs);
  // Reloads one file (an inotify event said it changed).
  Status ReloadFile(const std::string& path);

  std::shared_ptr<const PlaybookInfo> Find(const std::string& name) const;
  std::vector<std::string> Names() const;
  void set_limits(PlaybookLimits l) { limits_ = l; }
  const PlaybookLimits& limits() const { return limits_; }

 private:
  Status Add(PlaybookInfo info);

  PlaybookLimits limits_;
  std::map<std::string, std::shared_ptr<const PlaybookInfo>> by_name_;
  std::map<std::string, std::string> name_by_path_;
};

}  // namespace guardian
