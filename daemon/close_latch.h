#pragma once
// CloseLatch: for an object that owns several libuv handles and closes them through one path.
// Close() sets `pending` to one (its own hold) plus one per handle it closes, each handle's close
// callback calls Done(), and Close() lets go of its hold last: `closed` runs once, after the
// last handle is really closed, never before.

#include <functional>

namespace guardian {

struct CloseLatch {
  int pending = 0;
  std::function<void()> closed;
  void Done() {
    if (--pending == 0 && closed) closed();
  }
};

}  // namespace guardian
