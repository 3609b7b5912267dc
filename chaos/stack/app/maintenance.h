#pragma once
// The maintenance thread: reads the whole items table every check_interval_ms (so corruption is
// noticed without traffic), writes a heartbeat row every write_interval_ms (keeps the WAL live),
// reopens a rotated log, takes periodic snapshots and flushes rate-limited status writes.

#include <thread>

namespace demoapp {

struct App;

class Maintenance {
 public:
  explicit Maintenance(App& app) : app_(app) {}
  ~Maintenance() { Join(); }

  void Start();
  // Waits for the thread, which ends once the app's lifecycle has finished.
  void Join();

 private:
  void Loop();

  App& app_;
  std::thread thread_;
};

}  // namespace demoapp
