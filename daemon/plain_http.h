#pragma once
// PlainHttp: one HTTP/1.1 request over plain TCP to a numeric address, on the loop. uv_tcp
// carries the bytes and http-parser reads the answer (status, headers, a sized, chunked or
// closed-off body). It is what HttpClient uses for http:// URLs on IP addresses, the probes'
// usual case: about ten system calls and two wake-ups a request, and no libcurl loaded
// (curl_lib.h). One connection per request ("Connection: close"), so every probe also shows the
// server still accepts.
//
// Each request owns its socket and deadline timer, closed through one path; Cancel() ends it
// without a callback.

#include <uv.h>

#include <functional>
#include <memory>

#include "daemon/close_latch.h"
#include "daemon/http_client.h"
#include "daemon/url.h"

namespace guardian {

class PlainHttp {
 public:
  // Whether `req` can go this way: http://, a numeric host, no user:password, no stream, a
  // deadline, no TLS files, and only headers of the "Name: value" form (curl gives "Name:" and
  // "Name;" their own meaning). Fills `*url` when it can.
  static bool Suits(const HttpCall& req, UrlParts* url);

  // Starts the request; `done` runs once, always from the loop and never inside Start, unless
  // Cancel() comes first.
  static std::shared_ptr<PlainHttp> Start(uv_loop_t* loop, const HttpCall& req, const UrlParts& url,
                                          std::function<void(HttpResult)> done);

  // Ends the request without a callback. With `latch`, counted in it until its handles are
  // closed (an owner's Close()).
  void Cancel(std::shared_ptr<CloseLatch> latch = nullptr);
  ~PlainHttp();

 private:
  struct Handles;
  Handles* h_ = nullptr;  // freed once both handles are closed
};

}  // namespace guardian
