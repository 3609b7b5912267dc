#pragma once
// FsWatch: one inotify watch of a folder (uv_fs_event_t) owned by one object. Like Timer,
// destroying it stops and closes the handle, whose memory the close callback frees, so a
// FsWatch may be destroyed at any time on the loop thread.

#include <uv.h>

#include <functional>
#include <string>

#include "daemon/status.h"

namespace guardian {

class FsWatch {
 public:
  explicit FsWatch(uv_loop_t* loop);
  ~FsWatch();
  FsWatch(const FsWatch&) = delete;
  FsWatch& operator=(const FsWatch&) = delete;

  // Calls `cb` with the name of the entry that changed in `dir` (empty when the kernel does
  // not say). Fails when the folder cannot be watched; callers fall back to polling.
  Status Start(const std::string& dir, std::function<void(const std::string& name)> cb);
  // Calls `cb` when the file `path` changes, is replaced (rename over it) or removed. Watches
  // its folder, since a file replaced by rename is a new inode a watch on the file would miss.
  Status StartForFile(const std::string& path, std::function<void()> cb);

 private:
  struct Handle {
    uv_fs_event_t event;
    std::function<void(const std::string&)> cb;
  };
  Handle* h_;
};

}  // namespace guardian
