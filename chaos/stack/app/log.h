#pragma once
// The app log, LOGS/app.log: one line per event, "2026-11-23T10:00:00.123Z LEVEL message".
// The file is reopened when its path stops naming the open file (an external rotate) or on
// SIGHUP. A full disk never blocks or stops the app: the failed line is dropped and counted.

#include <cstdint>
#include <mutex>
#include <string>

namespace demoapp {

class Status;

class Log {
 public:
  Log(std::string path, Status& status);
  ~Log();

  void Info(const std::string& message) { Write("INFO", message); }
  void Warn(const std::string& message) { Write("WARN", message); }
  void Error(const std::string& message) { Write("ERROR", message); }

  // Reopens when the path is gone or names another file than the open one.
  void ReopenIfMoved();
  void Reopen();

  const std::string& path() const { return path_; }

 private:
  void Write(const char* level, const std::string& message);
  void OpenLocked();

  const std::string path_;
  Status& status_;
  std::mutex mu_;
  int fd_ = -1;
  uint64_t dev_ = 0;
  uint64_t ino_ = 0;
};

}  // namespace demoapp
