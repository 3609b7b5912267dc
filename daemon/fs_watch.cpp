#include "daemon/fs_watch.h"

#include <cstdlib>
#include <filesystem>

namespace guardian {

FsWatch::FsWatch(uv_loop_t* loop) : h_(new Handle) {
  if (uv_fs_event_init(loop, &h_->event) != 0) std::abort();
  h_->event.data = h_;
}

FsWatch::~FsWatch() {
  uv_fs_event_stop(&h_->event);
  uv_close(reinterpret_cast<uv_handle_t*>(&h_->event),
           [](uv_handle_t* h) { delete static_cast<Handle*>(h->data); });
}

Status FsWatch::Start(const std::string& dir, std::function<void(const std::string& name)> cb) {
  h_->cb = std::move(cb);
  int rc = uv_fs_event_start(
      &h_->event,
      [](uv_fs_event_t* e, const char* name, int, int) {
        // Copy first: the callback may destroy the FsWatch.
        auto fn = static_cast<Handle*>(e->data)->cb;
        fn(name ? name : "");
      },
      dir.c_str(), 0);
  if (rc != 0) return Status::IOError("cannot watch " + dir + ": " + uv_strerror(rc));
  return Status::OK();
}

Status FsWatch::StartForFile(const std::string& path, std::function<void()> cb) {
  std::filesystem::path p(path);
  std::string name = p.filename().string();
  return Start(p.parent_path().string(), [name, cb](const std::string& changed) {
    if (changed.empty() || changed == name) cb();
  });
}

}  // namespace guardian
