// SelfCheck: when guardiand withholds systemd's watchdog ping (a long loop stall, a store that
// does not answer or fails) and when it pings again.
#include "daemon/self_check.h"

#include <doctest/doctest.h>

using namespace guardian;

TEST_CASE("healthy with small stalls and a store that answers") {
  SelfCheck c({500, 500});
  c.SawLag(3);
  c.SawLag(499);
  CHECK(c.Judge(1000) == "");
  CHECK(c.StoreProbeSent(1000));
  c.StoreProbeDone(1002, "");
  CHECK(c.Judge(1500) == "");
}

TEST_CASE("a stall over the limit costs one judgement, then the lag seen starts afresh") {
  SelfCheck c({500, 500});
  c.SawLag(10);
  c.SawLag(2000);
  c.SawLag(20);
  CHECK(c.Judge(1000) == "loop stalled 2000 ms (limit 500)");
  CHECK(c.Judge(1500) == "");
}

TEST_CASE("a store round trip unanswered past the limit is unhealthy until it comes back") {
  SelfCheck c({500, 500});
  REQUIRE(c.StoreProbeSent(1000));
  CHECK_FALSE(c.StoreProbeSent(1200));  // one in flight at a time
  CHECK(c.Judge(1500) == "");           // exactly the limit: not yet
  CHECK(c.Judge(2000) == "store has not answered for 1000 ms (limit 500)");
  CHECK(c.Judge(4000) == "store has not answered for 3000 ms (limit 500)");
  c.StoreProbeDone(4100, "");
  CHECK(c.Judge(4500) == "");
  CHECK(c.StoreProbeSent(4500));
}

TEST_CASE("a store that answers with an error is unhealthy until one answers well") {
  SelfCheck c({500, 500});
  REQUIRE(c.StoreProbeSent(0));
  c.StoreProbeDone(5, "disk I/O error");
  CHECK(c.Judge(500) == "store failed: disk I/O error");
  REQUIRE(c.StoreProbeSent(500));
  c.StoreProbeDone(505, "");
  CHECK(c.Judge(1000) == "");
}
