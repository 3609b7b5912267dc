#include "daemon/self_check.h"

#include <algorithm>

namespace guardian {

void SelfCheck::SawLag(int64_t lag_ms) { worst_lag_ms_ = std::max(worst_lag_ms_, lag_ms); }

bool SelfCheck::StoreProbeSent(int64_t now_ms) {
  if (probe_sent_ms_ >= 0) return false;
  probe_sent_ms_ = now_ms;
  return true;
}

void SelfCheck::StoreProbeDone(int64_t, const std::string& error) {
  probe_sent_ms_ = -1;
  store_error_ = error;
}

std::string SelfCheck::Judge(int64_t now_ms) {
  int64_t lag = worst_lag_ms_;
  worst_lag_ms_ = 0;
  if (lag > limits_.max_lag_ms) {
    return "loop stalled " + std::to_string(lag) + " ms (limit " +
           std::to_string(limits_.max_lag_ms) + ")";
  }
  if (probe_sent_ms_ >= 0 && now_ms - probe_sent_ms_ > limits_.max_store_ms) {
    return "store has not answered for " + std::to_string(now_ms - probe_sent_ms_) + " ms (limit " +
           std::to_string(limits_.max_store_ms) + ")";
  }
  if (!store_error_.empty()) return "store failed: " + store_error_;
  return "";
}

}  // namespace guardian
