#include "daemon/child_process.h"

#include <csignal>

#include "daemon/spawn_env.h"

namespace guardian {

void ChildProcess::Run(uv_loop_t* loop, ChildOptions opts, std::function<void(ChildResult)> done,
                       ChildProcess** handle_out) {
  auto* c = new ChildProcess(loop, std::move(opts), std::move(done));
  if (handle_out) *handle_out = c;
  c->Start();
}

ChildProcess::ChildProcess(uv_loop_t* loop, ChildOptions opts,
                           std::function<void(ChildResult)> done)
    : loop_(loop), opts_(std::move(opts)), done_(std::move(done)) {
  proc_.data = out_.data = err_.data = timer_.data = this;
}

void ChildProcess::CloseHandle(uv_handle_t* h) {
  if (uv_is_closing(h)) return;
  uv_close(h, [](uv_handle_t* h) {
    auto* self = static_cast<ChildProcess*>(h->data);
    --self->open_handles_;
    self->MaybeFinish();
  });
}

bool ChildProcess::Start() {
  uv_timer_init(loop_, &timer_);
  uv_pipe_init(loop_, &out_, 0);
  uv_pipe_init(loop_, &err_, 0);
  open_handles_ = 3;

  std::vector<char*> argv;
  for (auto& a : opts_.argv) argv.push_back(a.data());
  argv.push_back(nullptr);

  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[1].data.stream = reinterpret_cast<uv_stream_t*>(&out_);
  stdio[2].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[2].data.stream = reinterpret_cast<uv_stream_t*>(&err_);

  EnvBlock env(SpawnEnvironment(opts_.env));
  uv_process_options_t o{};
  o.file = !opts_.file.empty()                  ? opts_.file.c_str()
           : argv.empty() || argv[0] == nullptr ? ""
                                                : argv[0];
  o.args = argv.data();
  o.env = env.get();
  o.cwd = opts_.cwd.empty() ? nullptr : opts_.cwd.c_str();
  ApplyRunAs(opts_.run_as, &o);
  // Its own process group (setsid), so a timeout or a cancel ends what it started too.
  o.flags |= UV_PROCESS_DETACHED;
  o.stdio = stdio;
  o.stdio_count = 3;
  o.exit_cb = [](uv_process_t* p, int64_t code, int sig) {
    static_cast<ChildProcess*>(p->data)->OnExit(code, sig);
  };

  if (opts_.argv.empty()) {
    result_.status = Status::InvalidArgument("empty argv");
    exited_ = true;
    CloseHandle(reinterpret_cast<uv_handle_t*>(&timer_));
    CloseHandle(reinterpret_cast<uv_handle_t*>(&out_));
    CloseHandle(reinterpret_cast<uv_handle_t*>(&err_));
    return false;
  }
  int rc = uv_spawn(loop_, &proc_, &o);
  if (rc != 0) {
    result_.status = Status::IOError("cannot start '" + opts_.argv[0] + "': " + uv_strerror(rc));
    exited_ = true;
    // uv_spawn initialised the process handle even on failure; it must be closed too.
    ++open_handles_;
    CloseHandle(reinterpret_cast<uv_handle_t*>(&proc_));
    CloseHandle(reinterpret_cast<uv_handle_t*>(&timer_));
    CloseHandle(reinterpret_cast<uv_handle_t*>(&out_));
    CloseHandle(reinterpret_cast<uv_handle_t*>(&err_));
    return false;
  }
  ++open_handles_;

  auto alloc = [](uv_handle_t*, size_t suggested, uv_buf_t* buf) {
    buf->base = new char[suggested];
    buf->len = suggested;
  };
  auto read = [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
    auto* self = static_cast<ChildProcess*>(s->data);
    std::string& sink =
        (s == reinterpret_cast<uv_stream_t*>(&self->out_)) ? self->result_.out : self->result_.err;
    if (n > 0) {
      size_t room = self->opts_.output_cap > sink.size() ? self->opts_.output_cap - sink.size() : 0;
      sink.append(buf->base, std::min(room, static_cast<size_t>(n)));
    }
    delete[] buf->base;
    if (n < 0) {  // EOF or error
      self->CloseHandle(reinterpret_cast<uv_handle_t*>(s));
      self->MaybeCloseTimer();
    }
  };
  uv_read_start(reinterpret_cast<uv_stream_t*>(&out_), alloc, read);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&err_), alloc, read);

  if (opts_.timeout_ms > 0) {
    uv_timer_start(
        &timer_,
        [](uv_timer_t* t) {
          auto* self = static_cast<ChildProcess*>(t->data);
          self->result_.timed_out = true;
          self->Kill();
        },
        static_cast<uint64_t>(opts_.timeout_ms), 0);
  }
  return true;
}

void ChildProcess::Kill() {
  if (exited_ || killing_) return;
  killing_ = true;
  // Not yet reaped (exit_cb has not run), so this pid is still our child and its process
  // group id cannot have been handed to anyone else.
  KillGroup(SIGTERM);
  uv_timer_stop(&timer_);
  uv_timer_start(
      &timer_,
      [](uv_timer_t* t) {
        auto* self = static_cast<ChildProcess*>(t->data);
        if (!self->exited_) self->KillGroup(SIGKILL);
      },
      static_cast<uint64_t>(opts_.kill_grace_ms), 0);
}

void ChildProcess::KillGroup(int sig) {
  ::kill(-proc_.pid, sig);
  uv_process_kill(&proc_, sig);  // in case it left its group
}

void ChildProcess::OnExit(int64_t code, int sig) {
  exited_ = true;
  result_.exit_code = code;
  result_.term_signal = sig;
  if (result_.timed_out) {
    result_.status = Status::Timeout("'" + opts_.argv[0] + "' ran past " +
                                     std::to_string(opts_.timeout_ms) + " ms");
  }
  CloseHandle(reinterpret_cast<uv_handle_t*>(&proc_));
  // The pipes close on EOF, after the last output is read; a grandchild holding them open
  // must not hold us forever, so give them a short while and then close them anyway.
  uv_timer_stop(&timer_);
  uv_timer_start(
      &timer_,
      [](uv_timer_t* t) {
        auto* self = static_cast<ChildProcess*>(t->data);
        self->CloseHandle(reinterpret_cast<uv_handle_t*>(&self->out_));
        self->CloseHandle(reinterpret_cast<uv_handle_t*>(&self->err_));
        self->CloseHandle(reinterpret_cast<uv_handle_t*>(&self->timer_));
      },
      500, 0);
  MaybeCloseTimer();
}

void ChildProcess::MaybeCloseTimer() {
  bool pipes_closed = uv_is_closing(reinterpret_cast<uv_handle_t*>(&out_)) &&
                      uv_is_closing(reinterpret_cast<uv_handle_t*>(&err_));
  if (exited_ && pipes_closed) CloseHandle(reinterpret_cast<uv_handle_t*>(&timer_));
}

void ChildProcess::MaybeFinish() {
  if (open_handles_ > 0 || !exited_) return;
  auto done = std::move(done_);
  ChildResult r = std::move(result_);
  delete this;
  if (done) done(std::move(r));
}

}  // namespace guardian
