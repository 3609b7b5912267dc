#include "daemon/curl_lib.h"

#include <dlfcn.h>

#include <atomic>
#include <mutex>
#include <type_traits>

namespace guardian {
namespace {

std::atomic<bool> g_loaded{false};

// Debian's libcurl3-gnutls (what libcurl4-gnutls-dev builds against), then the OpenSSL build:
// one ABI, so either serves.
const char* const kNames[] = {"libcurl-gnutls.so.4", "libcurl.so.4"};

bool Load(CurlLib* lib, std::string* error) {
  void* dl = nullptr;
  std::string tried;
  for (const char* name : kNames) {
    dl = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (dl) break;
    tried += std::string(tried.empty() ? "" : "; ") + dlerror();
  }
  if (!dl) {
    *error = "libcurl could not be loaded (" + tried + ")";
    return false;
  }
  bool ok = true;
  auto sym = [&](auto* slot, const char* name) {
    *slot = reinterpret_cast<std::remove_pointer_t<decltype(slot)>>(dlsym(dl, name));
    if (!*slot) {
      *error = std::string("libcurl has no ") + name;
      ok = false;
    }
  };
  sym(&lib->easy_init, "curl_easy_init");
  sym(&lib->easy_reset, "curl_easy_reset");
  sym(&lib->easy_setopt, "curl_easy_setopt");
  sym(&lib->easy_getinfo, "curl_easy_getinfo");
  sym(&lib->easy_cleanup, "curl_easy_cleanup");
  sym(&lib->easy_strerror, "curl_easy_strerror");
  sym(&lib->easy_escape, "curl_easy_escape");
  sym(&lib->free, "curl_free");
  sym(&lib->slist_append, "curl_slist_append");
  sym(&lib->slist_free_all, "curl_slist_free_all");
  sym(&lib->multi_init, "curl_multi_init");
  sym(&lib->multi_setopt, "curl_multi_setopt");
  sym(&lib->multi_assign, "curl_multi_assign");
  sym(&lib->multi_socket_action, "curl_multi_socket_action");
  sym(&lib->multi_info_read, "curl_multi_info_read");
  sym(&lib->multi_add_handle, "curl_multi_add_handle");
  sym(&lib->multi_remove_handle, "curl_multi_remove_handle");
  sym(&lib->multi_cleanup, "curl_multi_cleanup");
  if (!ok) return false;
  auto global_init = reinterpret_cast<decltype(&curl_global_init)>(dlsym(dl, "curl_global_init"));
  if (!global_init || global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    *error = "curl_global_init failed";
    return false;
  }
  return true;
}

}  // namespace

const CurlLib* CurlLib::Get(std::string* error) {
  static CurlLib lib;
  static std::string load_error;
  static bool ok = false;
  static std::once_flag once;
  std::call_once(once, [] {
    ok = Load(&lib, &load_error);
    g_loaded = ok;
  });
  if (!ok) {
    if (error) *error = load_error;
    return nullptr;
  }
  return &lib;
}

bool CurlLib::Loaded() { return g_loaded; }

}  // namespace guardian
