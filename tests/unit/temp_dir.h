#pragma once
// TempDir: a fresh directory under /tmp for one test, removed with everything in it after.
#include <stdlib.h>

#include <filesystem>
#include <string>

namespace guardian {

struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& prefix = "guardian-test") {
    std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
    path = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace guardian
