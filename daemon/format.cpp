#include "daemon/format.h"

#include <cstdio>

namespace guardian {

std::string FormatBytes(uint64_t bytes) {
  char buf[32];
  double mib = static_cast<double>(bytes) / (1 << 20);
  if (mib >= 1024) {
    std::snprintf(buf, sizeof buf, "%.1f GiB", mib / 1024);
  } else {
    std::snprintf(buf, sizeof buf, "%.0f MiB", mib);
  }
  return buf;
}

std::string FormatPercent(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, v < 10 ? "%.1f%%" : "%.0f%%", v);
  return buf;
}

}  // namespace guardian
