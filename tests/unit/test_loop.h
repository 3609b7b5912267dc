#pragma once
// TestLoop: a real libuv loop for unit tests of loop-driven objects; checks at the end that
// every handle a test opened was closed.

#include <doctest/doctest.h>
#include <uv.h>

#include <functional>

namespace guardian {

struct TestLoop {
  uv_loop_t loop{};
  TestLoop() { uv_loop_init(&loop); }
  ~TestLoop() {
    // One turn for the close callbacks of handles closed in the test's last steps (a Timer
    // destroyed in a Close that then answered at once). A handle left open still fails here.
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK(uv_loop_close(&loop) == 0);
  }
  void RunUntil(const std::function<bool()>& done) {
    while (!done()) uv_run(&loop, UV_RUN_ONCE);
  }
  // Closes `owner` (anything with Close(std::function<void()>)) and runs until it says closed.
  template <typename T>
  void Close(T& owner) {
    bool closed = false;
    owner.Close([&] { closed = true; });
    RunUntil([&] { return closed; });
  }
};

}  // namespace guardian
