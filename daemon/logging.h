#pragma once
// Logging setup for guardiand. Under systemd (JOURNAL_STREAM set: stderr goes to the journal)
// each line goes to stderr as "<N>message", N being the syslog priority, the prefix journald
// reads to set PRIORITY= (as sd-daemon.h's SD_ERR, SD_WARNING, ... do); no timestamp, journald
// adds its own. Otherwise lines carry an ISO timestamp and the level name.

#include <spdlog/common.h>

namespace guardian {

// The syslog priority journald should record for a spdlog level.
int SyslogPriority(spdlog::level::level_enum level);

// Call once at start, before anything logs.
void SetupLogging();

}  // namespace guardian
