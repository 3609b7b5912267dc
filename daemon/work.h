#pragma once
// QueueWork: run blocking work on libuv's thread pool and continue on the loop thread.
// `work` runs on a pool thread and must not touch loop state; `after` runs on the loop thread,
// also during shutdown (the loop drains pending work before it closes).

#include <uv.h>

#include <functional>

namespace guardian {

void QueueWork(uv_loop_t* loop, std::function<void()> work, std::function<void()> after);

}  // namespace guardian
