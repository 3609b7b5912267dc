// Fuzzes Lua text two ways: loaded as a playbook file (PlaybookLibrary), and run in a Sandbox.
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "daemon/clock.h"
#include "daemon/config.h"
#include "plugins/playbook_library.h"
#include "plugins/sandbox.h"

namespace {

// The daemon's memory cap; a smaller instruction budget than its 10M, so that an input that
// loops costs a fraction of a second and the fuzzer keeps its pace (the trip path is the same).
guardian::PlaybookLimits Limits() {
  guardian::PlaybookLimits limits;
  limits.instructions = 1'000'000;
  return limits;
}

// PlaybookLibrary loads from files: each input is written to this one, in a private folder.
std::string g_dir;
std::string g_file;

void RemoveDir() {
  std::error_code ec;
  std::filesystem::remove_all(g_dir, ec);
}

// Loads the text as a playbook file, as a scan or an inotify reload does.
void LoadAsPlaybook(std::string_view text) {
  static guardian::PlaybookLibrary library(Limits());
  {
    std::ofstream out(g_file, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    if (!out) abort();
  }
  (void)library.ReloadFile(g_file);
  (void)library.Find("x");
}

// Runs the text as a chunk in a fresh Sandbox under a budget and a deadline; whatever happens,
// the stack must be as it was.
void RunInSandbox(std::string_view text) {
  const guardian::PlaybookLimits limits = Limits();
  guardian::Sandbox sb(limits.memory_bytes);
  lua_State* L = sb.L();
  const int top = lua_gettop(L);
  if (!sb.Load(text, "fuzz.lua").ok()) {
    if (lua_gettop(L) != top) abort();
    return;
  }
  sb.Arm(limits.instructions, guardian::SystemClock::Get()->MonoMs() + 2000);
  const guardian::Status s = sb.PCall(0, LUA_MULTRET);
  sb.Disarm();
  if (!s.ok() && lua_gettop(L) != top) abort();
  lua_settop(L, top);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* tmp = getenv("TMPDIR");
  std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/fuzz_playbook.XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    perror("mkdtemp");
    abort();
  }
  g_dir = pattern;
  g_file = g_dir + "/fuzz.lua";
  atexit(RemoveDir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  LoadAsPlaybook(text);
  RunInSandbox(text);
  return 0;
}
