#pragma once
// CurlLib: libcurl, opened with dlopen the first time something needs it (an https:// URL, a
// host name, a stream, OAuth form encoding). Linked in, libcurl-gnutls maps about thirty
// libraries (GnuTLS, libcrypto through libssh2, Kerberos, LDAP...): 8 MiB resident in every
// guardiand, even one whose probes are all plain http:// to IP addresses, which PlainHttp
// serves without it. Loaded once and never closed; its headers still give the types.

#include <curl/curl.h>

#include <string>

namespace guardian {

struct CurlLib {
  decltype(&curl_easy_init) easy_init;
  decltype(&curl_easy_reset) easy_reset;
  decltype(&curl_easy_setopt) easy_setopt;
  decltype(&curl_easy_getinfo) easy_getinfo;
  decltype(&curl_easy_cleanup) easy_cleanup;
  decltype(&curl_easy_strerror) easy_strerror;
  decltype(&curl_easy_escape) easy_escape;
  decltype(&curl_free) free;
  decltype(&curl_slist_append) slist_append;
  decltype(&curl_slist_free_all) slist_free_all;
  decltype(&curl_multi_init) multi_init;
  decltype(&curl_multi_setopt) multi_setopt;
  decltype(&curl_multi_assign) multi_assign;
  decltype(&curl_multi_socket_action) multi_socket_action;
  decltype(&curl_multi_info_read) multi_info_read;
  decltype(&curl_multi_add_handle) multi_add_handle;
  decltype(&curl_multi_remove_handle) multi_remove_handle;
  decltype(&curl_multi_cleanup) multi_cleanup;

  // The library, loaded and initialised (curl_global_init) by the first call; nullptr, with
  // the reason in `*error`, when it cannot be. Any thread.
  static const CurlLib* Get(std::string* error);
  // Whether an earlier Get() loaded it.
  static bool Loaded();
};

}  // namespace guardian
