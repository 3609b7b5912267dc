#include "daemon/loop_lag.h"

#include <algorithm>

namespace guardian {

LoopLag::LoopLag(uv_loop_t* loop, int64_t period_ms, size_t window)
    : period_ms_(period_ms), timer_(loop), ring_(window, 0) {}

void LoopLag::Start() {
  expected_ns_ = uv_hrtime() + static_cast<uint64_t>(period_ms_) * 1'000'000;
  timer_.StartRepeat(period_ms_, [this] { Tick(); });
  timer_.Unref();  // measuring must not keep a stopping loop alive
}

void LoopLag::Tick() {
  uint64_t now = uv_hrtime();
  int64_t lag_us = now > expected_ns_ ? static_cast<int64_t>((now - expected_ns_) / 1000) : 0;
  ring_[next_] = lag_us;
  peak_us_ = std::max(peak_us_, lag_us);
  next_ = (next_ + 1) % ring_.size();
  filled_ = std::min(filled_ + 1, ring_.size());
  expected_ns_ = now + static_cast<uint64_t>(period_ms_) * 1'000'000;
}

int64_t LoopLag::PercentileUs(double p) const {
  if (filled_ == 0) return 0;
  std::vector<int64_t> v(ring_.begin(), ring_.begin() + static_cast<std::ptrdiff_t>(filled_));
  size_t k =
      std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

int64_t LoopLag::TakePeakUs() {
  uint64_t now = uv_hrtime();
  int64_t overdue = now > expected_ns_ ? static_cast<int64_t>((now - expected_ns_) / 1000) : 0;
  int64_t p = std::max(peak_us_, overdue);
  peak_us_ = 0;
  return p;
}

int64_t LoopLag::MaxUs() const {
  if (filled_ == 0) return 0;
  return *std::max_element(ring_.begin(), ring_.begin() + static_cast<std::ptrdiff_t>(filled_));
}

}  // namespace guardian
