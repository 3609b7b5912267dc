#pragma once
// How figures read in evidence and incident messages: sizes in MiB/GiB, shares in percent, with
// the precision an operator needs ("312 MiB", "2.1 GiB", "4.5%", "37%").

#include <cstdint>
#include <string>

namespace guardian {

std::string FormatBytes(uint64_t bytes);
// One decimal under 10 %, none above.
std::string FormatPercent(double percent);

}  // namespace guardian
