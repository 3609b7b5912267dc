#include "plugins/playbook_run.h"

#include <filesystem>

#include "daemon/clock.h"
#include "daemon/crash_point.h"
#include "daemon/params.h"

namespace guardian {
namespace fs = std::filesystem;

namespace {
constexpr const char* kRunKey = "guardian.run";

// The root a path must stay under, canonical where it exists.
std::string CanonicalRoot(const std::string& p) {
  std::error_code ec;
  fs::path r = fs::weakly_canonical(fs::path(p), ec);
  return ec ? fs::path(p).lexically_normal().string() : r.lexically_normal().string();
}

bool Under(const std::string& path, const std::string& root) {
  if (path == root) return true;
  std::string prefix = root.back() == '/' ? root : root + "/";
  return path.rfind(prefix, 0) == 0;
}

void PushParams(lua_State* L, const Params& params) {
  lua_newtable(L);
  for (const auto& [name, value] : params) {
    std::visit(
        [L](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, bool>) {
            lua_pushboolean(L, v);
          } else if constexpr (std::is_same_v<T, int64_t>) {
            lua_pushinteger(L, v);
          } else if constexpr (std::is_same_v<T, double>) {
            lua_pushnumber(L, v);
          } else if constexpr (std::is_same_v<T, std::string>) {
            lua_pushlstring(L, v.data(), v.size());
          } else if constexpr (std::is_same_v<T, StringMap>) {
            lua_createtable(L, 0, static_cast<int>(v.size()));
            for (const auto& [k, x] : v) {
              lua_pushlstring(L, x.data(), x.size());
              lua_setfield(L, -2, k.c_str());
            }
          } else {
            lua_createtable(L, static_cast<int>(v.size()), 0);
            for (size_t i = 0; i < v.size(); ++i) {
              lua_pushlstring(L, v[i].data(), v[i].size());
              lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
            }
          }
        },
        value);
    lua_setfield(L, -2, name.c_str());
  }
}
}  // namespace

PlaybookRun::PlaybookRun(uv_loop_t* loop, std::shared_ptr<const PlaybookInfo> playbook,
                         CheckConfig check, std::string check_state_dir, PlaybookLimits limits,
                         RunServices services)
    : loop_(loop),
      playbook_(std::move(playbook)),
      check_(std::move(check)),
      check_state_dir_(std::move(check_state_dir)),
      limits_(limits),
      services_(std::move(services)),
      deadline_(loop),
      defer_(loop),
      self_(std::make_shared<PlaybookRun*>(this)) {
  // Declared paths: the watched file's folder, the check's own state dir, and any extra
  // `allow_paths`; `defaults_file` may be read but not written.
  std::string watched = ParamString(check_.params, "path");
  if (!watched.empty())
    write_roots_.push_back(CanonicalRoot(fs::path(watched).parent_path().string()));
  write_roots_.push_back(CanonicalRoot(check_state_dir_));
  for (const auto& p : ParamList(check_.params, "allow_paths"))
    write_roots_.push_back(CanonicalRoot(p));
  read_roots_ = write_roots_;
  std::string defaults = ParamString(check_.params, "defaults_file");
  if (!defaults.empty()) read_roots_.push_back(CanonicalRoot(defaults));
  if (services_.dry_run) {
    // The check's values stay as they are; a value the playbook sets is kept in this run, so
    // its later gets see it as they would have after a real set.
    auto real_get = std::move(services_.get_value);
    services_.get_value = [this, real_get](const std::string& key) {
      auto it = dry_values_.find(key);
      if (it != dry_values_.end()) return it->second;
      return real_get ? real_get(key) : std::string();
    };
    services_.set_value = [this](const std::string& key, const std::string& value) {
      dry_values_[key] = value;
      return Status::OK();
    };
  }
}

PlaybookRun::~PlaybookRun() {
  if (cancel_wait_) cancel_wait_();
  *self_ = nullptr;
}

PlaybookRun* PlaybookRun::From(lua_State* L) {
  lua_getfield(L, LUA_REGISTRYINDEX, kRunKey);
  auto* run = static_cast<PlaybookRun*>(lua_touserdata(L, -1));
  lua_pop(L, 1);
  return run;
}

Status PlaybookRun::Start(int64_t incident_id, const std::string& evidence) {
  sandbox_ = std::make_unique<Sandbox>(limits_.memory_bytes);
  lua_State* L = sandbox_->L();
  lua_pushlightuserdata(L, this);
  lua_setfield(L, LUA_REGISTRYINDEX, kRunKey);

  lua_newtable(L);
  for (const auto& m : HostModules::All()) m.install(L);
  sandbox_->SetReadOnlyGlobal("guardian");

  Status s = PlaybookLibrary::RunChunk(sandbox_.get(), playbook_->source, playbook_->path, limits_);
  if (!s.ok()) return s;
  // The chunk may have used memory up to the cap: allocate what follows in protected mode.
  return sandbox_->Protected(
      [&](lua_State* L) {
        lua_pushvalue(L, 1);  // the playbook table, passed as the argument
        playbook_ref_ = luaL_ref(L, LUA_REGISTRYINDEX);
        lua_newtable(L);
        lua_pushstring(L, check_.id.c_str());
        lua_setfield(L, -2, "check");
        lua_pushstring(L, check_.mode.c_str());
        lua_setfield(L, -2, "mode");
        lua_pushinteger(L, incident_id);
        lua_setfield(L, -2, "incident");
        lua_pushlstring(L, evidence.data(), evidence.size());
        lua_setfield(L, -2, "evidence");
        lua_pushstring(L, check_state_dir_.c_str());
        lua_setfield(L, -2, "state_dir");
        PushParams(L, check_.params);
        lua_setfield(L, -2, "params");
        ctx_ref_ = luaL_ref(L, LUA_REGISTRYINDEX);
      },
      1);
}

bool PlaybookRun::HasPhase(const std::string& phase) const {
  for (const auto& p : playbook_->phases) {
    if (p == phase) return true;
  }
  return false;
}

void PlaybookRun::RunPhase(const std::string& phase, int attempt, PhaseDone done) {
  done_ = std::move(done);
  phase_ = phase;
  if (!sandbox_ || !HasPhase(phase)) {
    defer_.Start(0, [this] { Finish(Status::OK(), "not defined by the playbook"); });
    return;
  }
  // Allocations here can meet the memory cap; in protected mode that fails the phase.
  Status setup = sandbox_->Protected([&](lua_State* L) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ctx_ref_);
    lua_pushinteger(L, attempt);
    lua_setfield(L, -2, "attempt");
    lua_pushstring(L, phase.c_str());
    lua_setfield(L, -2, "phase");
    lua_pop(L, 1);
    lua_State* thread = lua_newthread(L);
    thread_ref_ = luaL_ref(L, LUA_REGISTRYINDEX);
    thread_ = thread;
    lua_rawgeti(L, LUA_REGISTRYINDEX, playbook_ref_);
    lua_pushstring(L, phase.c_str());
    lua_rawget(L, -2);  // raw: a metatable on the playbook table must not run here
    lua_xmove(L, thread_, 1);
    lua_pop(L, 1);
    lua_rawgeti(thread_, LUA_REGISTRYINDEX, ctx_ref_);
  });
  if (!setup.ok()) {
    std::string msg = "cannot start phase '" + phase + "': " + setup.message();
    defer_.Start(0, [this, msg] { Finish(Status::Aborted(msg), msg); });
    return;
  }

  int64_t timeout = playbook_->timeout_ms > 0
                        ? std::min(playbook_->timeout_ms, limits_.phase_timeout_ms)
                        : limits_.phase_timeout_ms;
  sandbox_->Arm(limits_.instructions, SystemClock::Get()->MonoMs() + timeout, thread_);
  deadline_.Start(timeout, [this, timeout] {
    Abort("phase '" + phase_ + "' ran past its deadline of " + std::to_string(timeout) + " ms");
  });
  // Start on the next loop turn so `done` is never called from inside RunPhase.
  defer_.Start(0, [this] { Continue(1); });
}

void PlaybookRun::CheckCanWait(lua_State* L, const char* what) const {
  if (L != thread_ || !lua_isyieldable(L)) {
    luaL_error(L, "%s can only wait inside a phase function", what);
  }
}

bool PlaybookRun::RecordAction(lua_State* L, const char* call, int nargs, std::string note) {
  if (!services_.dry_run) {
    if (services_.audit)
      services_.audit(phase_ + ": " + DryRunText({phase_, call, FormatLuaArgs(L, 1, nargs), {}}));
    CrashPoint("action", phase_);  // mid-phase, just before the host call acts
    return false;
  }
  // The recorder lives outside the Lua memory cap, so a playbook looping over calls must not
  // grow it without bound; the actions past the limit are still skipped.
  if (recorded_.size() < kMaxRecorded) {
    recorded_.push_back({phase_, call, FormatLuaArgs(L, 1, nargs), std::move(note)});
  } else if (recorded_.size() == kMaxRecorded) {
    recorded_.push_back({phase_, "(dry run)", "",
                         "stopped recording after " + std::to_string(kMaxRecorded) + " calls"});
  }
  return true;
}

int PlaybookRun::AwaitNothing(lua_State* L, const char* what, Pusher result) {
  return Await(L, what, [result](Resume resume) {
    resume(result);
    return std::function<void()>();
  });
}

int PlaybookRun::Await(lua_State* L, const char* what, Starter start) {
  CheckCanWait(L, what);
  uint64_t seq = ++wait_seq_;
  std::weak_ptr<PlaybookRun*> weak = self_;
  auto starting = std::make_shared<bool>(true);
  Resume resume = [weak, seq, starting](Pusher push) {
    auto self = weak.lock();
    if (!self || *self == nullptr) return;
    PlaybookRun* run = *self;
    if (!run->done_ || run->wait_seq_ != seq) return;  // aborted or superseded
    run->cancel_wait_ = nullptr;
    ++run->wait_seq_;
    // The results are pushed by AwaitDone inside the resumed coroutine, where an error (such
    // as the memory cap refusing a large result) fails the phase instead of aborting us.
    run->pending_push_ = std::move(push);
    if (*starting) {
      // Finished before the coroutine even yielded: resume on the next loop turn.
      run->defer_.Start(0, [run] { run->Continue(0); });
      return;
    }
    run->Continue(0);
  };
  cancel_wait_ = start(resume);
  *starting = false;
  return lua_yieldk(L, 0, 0, &PlaybookRun::AwaitDone);
}

int PlaybookRun::AwaitDone(lua_State* L, int, lua_KContext) {
  PlaybookRun* run = From(L);
  Pusher push = std::move(run->pending_push_);
  run->pending_push_ = nullptr;
  return push ? push(L) : 0;
}

void PlaybookRun::Continue(int nargs) {
  int nres = 0;
  sandbox_->Resuming();
  int st = lua_resume(thread_, nullptr, nargs, &nres);
  if (st == LUA_YIELD) {
    lua_pop(thread_, nres);
    return;  // waiting for a host call; its Resume continues us
  }
  if (st == LUA_OK) {
    std::string msg;
    if (nres >= 1 && lua_type(thread_, -nres) == LUA_TSTRING) msg = lua_tostring(thread_, -nres);
    lua_pop(thread_, nres);
    Finish(Status::OK(), msg);
    return;
  }
  // Only a string is read as-is: calling __tostring on an error object here would run playbook
  // code outside a protected call.
  std::string msg = lua_type(thread_, -1) == LUA_TSTRING
                        ? lua_tostring(thread_, -1)
                        : std::string("(error object of type ") + luaL_typename(thread_, -1) + ")";
  if (!sandbox_->tripped().empty() && msg.find(sandbox_->tripped()) == std::string::npos) {
    msg = sandbox_->tripped() + ": " + msg;
  }
  Finish(Status::Aborted(msg), msg);
}

void PlaybookRun::Abort(const std::string& reason) {
  if (!done_) return;
  ++wait_seq_;
  if (cancel_wait_) {
    auto cancel = std::move(cancel_wait_);
    cancel_wait_ = nullptr;
    cancel();
  }
  Finish(Status::Aborted(reason), reason);
}

void PlaybookRun::Finish(Status s, std::string message) {
  deadline_.Stop();
  defer_.Stop();
  if (sandbox_) {
    sandbox_->Disarm();
    if (thread_ref_ != LUA_NOREF) {
      luaL_unref(sandbox_->L(), LUA_REGISTRYINDEX, thread_ref_);
      thread_ref_ = LUA_NOREF;
      thread_ = nullptr;
    }
  }
  auto done = std::move(done_);
  done_ = nullptr;
  // Nothing may touch `this` after done(): the engine may destroy the run in it.
  if (done) done(std::move(s), std::move(message));
}

namespace {
// Resolves symlinks in the part of `p` that exists, so a link cannot lead outside the roots.
fs::path ResolveExisting(const fs::path& p) {
  fs::path existing = p;
  fs::path rest;
  std::error_code ec;
  while (!existing.empty() && existing != existing.root_path() &&
         !fs::exists(fs::symlink_status(existing, ec))) {
    rest = existing.filename() / rest;
    existing = existing.parent_path();
  }
  fs::path real = fs::canonical(existing, ec);
  if (ec) real = existing;
  return (rest.empty() ? real : real / rest).lexically_normal();
}
}  // namespace

Status PlaybookRun::ResolvePath(const std::string& path, bool write, std::string* resolved,
                                bool follow_final) const {
  if (path.empty() || path[0] != '/') {
    return Status::InvalidArgument("path '" + path + "' must be absolute");
  }
  fs::path p = fs::path(path).lexically_normal();
  if (p.has_filename() == false && p != p.root_path()) p = p.parent_path();
  fs::path full = follow_final || p == p.root_path()
                      ? ResolveExisting(p)
                      : ResolveExisting(p.parent_path()) / p.filename();
  std::string s = full.lexically_normal().string();
  if (s.size() > 1 && s.back() == '/') s.pop_back();
  const auto& roots = write ? write_roots_ : read_roots_;
  for (const auto& r : roots) {
    if (Under(s, r)) {
      *resolved = s;
      return Status::OK();
    }
  }
  std::string list;
  for (const auto& r : roots) list += (list.empty() ? "" : ", ") + r;
  return Status::InvalidArgument("path '" + path + "' is outside what check '" + check_.id +
                                 "' declares" + (write ? " writable" : " readable") + " (" + list +
                                 ")");
}

}  // namespace guardian
