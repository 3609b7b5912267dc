// The periodic work of the demo app, on one thread with a 50 ms tick.

#include "chaos/stack/app/maintenance.h"

#include "chaos/stack/app/app.h"
#include "chaos/stack/app/util.h"

namespace demoapp {

void Maintenance::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Maintenance::Join() {
  if (thread_.joinable()) thread_.join();
}

void Maintenance::Loop() {
  const AppConfig& cfg = app_.config;
  int64_t now = NowMs();
  int64_t next_check = now;
  int64_t next_write = now + cfg.write_interval_ms;
  int64_t next_log = now + 1000;
  int64_t next_snapshot = now + cfg.snapshot_interval_ms;
  while (app_.life.Sleep(50)) {
    now = NowMs();
    // Until the database chunk has run there is nothing to check.
    bool db_open = app_.db->opened();
    if (db_open && cfg.check_interval_ms > 0 && now >= next_check) {
      int64_t rows = 0;
      app_.db->Check(&rows);
      next_check = now + cfg.check_interval_ms;
    }
    if (db_open && cfg.write_interval_ms > 0 && now >= next_write) {
      app_.db->Heartbeat();
      next_write = now + cfg.write_interval_ms;
    }
    if (now >= next_log) {
      app_.log->ReopenIfMoved();
      next_log = now + 1000;
    }
    if (db_open && cfg.snapshot_interval_ms > 0 && now >= next_snapshot) {
      std::string path, error;
      int64_t items = 0;
      bool disk_full = false;
      app_.snapshots->Take(&path, &items, &error, &disk_full);
      next_snapshot = now + cfg.snapshot_interval_ms;
    }
    app_.status->Tick();
  }
}

}  // namespace demoapp
