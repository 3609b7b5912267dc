// invalid_credentials: the bearer token a service uses (its token file, kept by Guardian) is
// refused, missing, or about to expire. Each probe reads the token file and the key files on the
// pool, then calls the authenticated probe_url with the token (HttpClient, on the loop):
//   failing: no usable token file; a token within expiry_margin_s of its expiry (or past it);
//     a 401 or 403 from probe_url; or credentials accepted again while the feature this check's
//     playbook degraded is still off (time to re-enable it).
//   unknown: probe_url gives no verdict (refused, timeout, 5xx): that is not a credentials
//     problem, and other checks judge it; nor is a token that expired while the token
//     endpoint's service is still starting (it is refreshed once that service is ready).
// The service's status file wakes a probe the moment the service is refused (the demo app
// writes auth.ok false at once), and so does a change of the token file. A changed key file is
// reported as new input, so an escalated check tries the new credentials at once; so is the
// token endpoint answering again after it gave no answer while the token file alone fails the
// check (a playbook that found nobody to ask for a token tries again as soon as someone
// answers, not after the budget window).
// Tokens and secrets are never part of the evidence: only client ids, expiries and statuses.
#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <utility>

#include "daemon/clock.h"
#include "daemon/file_util.h"
#include "daemon/fs_watch.h"
#include "daemon/http_client.h"
#include "daemon/oauth.h"
#include "daemon/work.h"
#include "detectors/detector.h"

namespace guardian {
namespace {

struct Read {
  Status token_status;
  TokenFile token;
  std::string keys_fingerprint;  // path:mtime:size of each key file
  std::string changed_key;       // filled on the loop
  bool degraded_by_us = false;   // the marker exists and the flags still list the feature
  int64_t refused_at = 0;        // the service's auth.last_refused.at while auth.ok is false
};

class InvalidCredentialsDetector : public Detector {
 public:
  explicit InvalidCredentialsDetector(const DetectorEnv& env) : env_(env) {
    const Params& p = env.check.params;
    token_file_ = ParamString(p, "token_file");
    probe_url_ = ParamString(p, "probe_url");
    token_url_ = ParamString(p, "token_url");
    key_files_ = ParamList(p, "key_files");
    margin_ms_ = ParamInt(p, "expiry_margin_s", 60) * 1000;
    timeout_ms_ = ParamInt(p, "timeout_ms", 2000);
    feature_ = ParamString(p, "feature", "quotes");
  }

  Status Start(std::function<void()> wake) override {
    Status s = WatchServiceStatus(env_, wake, &status_watch_);
    token_watch_ = std::make_unique<FsWatch>(env_.loop);
    Status t = token_watch_->StartForFile(token_file_, wake);
    return s.ok() ? t : s;
  }

  void Close(std::function<void()> closed) override {
    status_watch_.reset();
    token_watch_.reset();
    closed();
  }

  void Probe(std::function<void(Observation)> done) override {
    if (!env_.http) return done(Observation::Unknown("no HTTP client in this daemon"));
    auto read = std::make_shared<Read>();
    std::string token_file = token_file_, check_dir = env_.check_state_dir;
    std::vector<std::string> keys = key_files_;
    std::string flags_file = env_.service ? env_.service->flags_file : "";
    std::string status_file = env_.service ? env_.service->status_file : "";
    std::string feature = feature_;
    QueueWork(
        env_.loop,
        [=] { ReadAll(token_file, keys, check_dir, flags_file, status_file, feature, read.get()); },
        [this, weak = weak_from_this(), read, done] {
          if (weak.expired()) return done(Observation::Unknown("check closed"));
          Judge(read, done);
        });
  }

 private:
  static void ReadAll(const std::string& token_file, const std::vector<std::string>& keys,
                      const std::string& check_dir, const std::string& flags_file,
                      const std::string& status_file, const std::string& feature, Read* r) {
    r->token_status = LoadTokenFile(token_file, &r->token);
    for (const auto& k : keys) {
      struct stat st {};
      r->keys_fingerprint += k + ":";
      if (::stat(k.c_str(), &st) == 0)
        r->keys_fingerprint += std::to_string(st.st_mtim.tv_sec) + "." +
                               std::to_string(st.st_mtim.tv_nsec) + ":" +
                               std::to_string(st.st_size);
      r->keys_fingerprint += ";";
    }
    r->degraded_by_us = ReadDegraded(check_dir, flags_file, feature).by_this_check;
    nlohmann::json doc;
    if (!status_file.empty() && ReadJsonObject(status_file, 1 << 20, &doc).ok()) {
      const auto& auth = doc.value("auth", nlohmann::json::object());
      if (auth.is_object() && auth.value("ok", true) == false) {
        const auto& last = auth.value("last_refused", nlohmann::json::object());
        if (last.is_object()) r->refused_at = last.value("at", int64_t{0});
      }
    }
  }

  void Judge(std::shared_ptr<Read> r, std::function<void(Observation)> done) {
    // Each change of the key files is new input once (not at the first look).
    if (!last_keys_.empty() && r->keys_fingerprint != last_keys_)
      r->changed_key = "a key file changed (" + JoinKeys() + ")";
    last_keys_ = r->keys_fingerprint;
    int64_t now = SystemClock::Get()->WallMs();
    auto finish = [r, done](Observation o) {
      o.new_input = r->changed_key;
      o.gauges["degraded"] = r->degraded_by_us ? 1 : 0;
      if (r->token_status.ok() && r->token.expires_at_ms > 0)
        o.gauges["token_expires_in_s"] =
            static_cast<double>(r->token.expires_at_ms - SystemClock::Get()->WallMs()) / 1000.0;
      done(std::move(o));
    };
    // Failing by the token file alone (none, or past its margin), unless nobody can give a new
    // token yet. The token endpoint is then asked (a bare GET) whether it answers at all: its
    // answering again after it did not is new input (a playbook that found nobody to ask
    // tries again at once).
    std::string expiry;
    if (!r->token_status.ok()) expiry = "no usable token: " + r->token_status.message();
    const TokenFile& t = r->token;
    std::string whose = "the token of client '" + (t.client_id.empty() ? "?" : t.client_id) + "'";
    if (expiry.empty() && t.expires_at_ms > 0 && t.expires_at_ms - now < margin_ms_) {
      int64_t left = t.expires_at_ms - now;
      expiry = left <= 0 ? whose + " expired " + std::to_string(-left / 1000) + " s ago"
                         : whose + " expires in " + std::to_string(left / 1000) +
                               " s, inside the " + std::to_string(margin_ms_ / 1000) + " s margin";
    }
    // Nobody to get a token from yet (guardiand and its services starting together): nothing
    // to judge.
    if (!expiry.empty()) {
      if (std::string svc = ServiceStartingAt(env_, token_url_); !svc.empty())
        return finish(Observation::Unknown(expiry + "; the token endpoint's service '" + svc +
                                           "' is still starting"));
    }
    if (!expiry.empty()) {
      HttpCall ask;
      ask.url = token_url_;
      ask.timeout_ms = timeout_ms_;
      env_.http->Start(ask, [this, weak = weak_from_this(), r, expiry, finish](HttpResult a) {
        if (weak.expired()) return finish(Observation::Unknown("check closed"));
        // Busy or failing (5xx, 429) is no answer either: it could not issue a token.
        bool answers = a.ok() && a.code < 500 && a.code != 429;
        if (!answers) {
          unanswered_ = true;
        } else if (std::exchange(unanswered_, false) && r->changed_key.empty()) {
          r->changed_key = token_url_ + " answers again";
        }
        finish(Observation::Failing(expiry));
      });
      return;
    }
    HttpCall call = BearerCall(probe_url_, t.access_token, timeout_ms_);
    env_.http->Start(call, [this, weak = weak_from_this(), r, whose, finish](HttpResult a) {
      if (weak.expired()) return finish(Observation::Unknown("check closed"));
      if (!a.ok()) {
        if (std::string svc = ServiceStartingAt(env_, probe_url_); !svc.empty())
          return finish(Observation::Unknown(probe_url_ + " " + a.error_kind + "; its service '" +
                                             svc + "' is still starting"));
      }
      std::string answer = a.ok() ? "answered " + std::to_string(a.code) + " in " +
                                        std::to_string(a.total_ms) + " ms"
                                  : a.error_kind;
      if (a.ok() && (a.code == 401 || a.code == 403)) {
        last_refused_ = true;
        Observation o = Observation::Failing(probe_url_ + " " + answer + ": it refuses " + whose);
        if (r->refused_at > r->token.obtained_at_ms) o.began_at_ms = r->refused_at;
        return finish(std::move(o));
      }
      if (a.ok() && a.code >= 200 && a.code < 300) {
        bool was_refused = std::exchange(last_refused_, false);
        if (r->degraded_by_us) {
          Observation o = Observation::Failing(probe_url_ + " accepts " + whose + " again, but '" +
                                               feature_ + "' is still degraded");
          // Working credentials from elsewhere (an operator's token file) are new input too.
          if (was_refused && r->changed_key.empty()) r->changed_key = "the token is accepted again";
          return finish(std::move(o));
        }
        return finish(Observation::Ok(probe_url_ + " accepts " + whose + " (" + answer + ")"));
      }
      return finish(
          Observation::Unknown(probe_url_ + " " + answer + ": no verdict on the credentials"));
    });
  }

  std::string JoinKeys() const {
    std::string out;
    for (const auto& k : key_files_) out += (out.empty() ? "" : ", ") + k;
    return out;
  }

  DetectorEnv env_;
  std::string token_file_, probe_url_, token_url_, feature_;
  std::vector<std::string> key_files_;
  int64_t margin_ms_, timeout_ms_;
  std::string last_keys_;
  bool last_refused_ = false;  // the last verdict was a refusal
  bool unanswered_ = false;    // token_url gave no answer at its last ask
  std::unique_ptr<FsWatch> status_watch_, token_watch_;
};

}  // namespace

GUARDIAN_REGISTER_DETECTOR(
    invalid_credentials,
    DetectorFactory{
        "invalid_credentials",
        {
            {"token_file", ParamType::kPath, true,
             "the token file the service reads its bearer token from (JSON, access_token); "
             "Guardian writes it, mode 0600"},
            {"token_url", ParamType::kString, true,
             "the OAuth2 token endpoint (refresh_token and client_credentials grants)"},
            {"probe_url", ParamType::kString, true,
             "an endpoint that needs the bearer token: a 401 or 403 there is the failure"},
            {"key_files", ParamType::kPathList, true,
             "client keys, JSON {client_id, client_secret}, in order of preference (primary, "
             "backup)"},
            {"expiry_margin_s", ParamType::kInt, false,
             "a token closer than this to its expiry is refreshed (default 60)"},
            {"timeout_ms", ParamType::kInt, false,
             "deadline of each probe and token request (default 2000)"},
            {"service", ParamType::kString, false,
             "the supervised service using the token (its status file wakes probes, its flags "
             "degrade the feature)"},
            {"feature", ParamType::kString, false,
             "the feature degraded when no credentials work (default quotes)"},
        },
        [](const DetectorEnv& env) -> std::shared_ptr<Detector> {
          return std::make_shared<InvalidCredentialsDetector>(env);
        },
    });

}  // namespace guardian
