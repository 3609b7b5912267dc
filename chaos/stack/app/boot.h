#pragma once
// Boot: the configured chunks in order (listen, database, cache_warm, search_index, plugins),
// each reported in the status as it starts and ends, and the operations that redo part of it.

#include <optional>

#include "chaos/stack/app/app.h"

namespace demoapp {

// The port to listen on: `cli_port`, else the port registry's entry for this service, else
// server.port. A missing or bad registry is logged, not fatal.
int ResolvePort(const AppConfig& config, std::optional<int> cli_port, Log& log);

// Runs every chunk; on a bind failure records it and finishes the lifecycle with exit code 3.
void RunBoot(App& app);

// Closes and reopens the database (after the file was restored) and rebuilds the search index
// when boot had built one.
DbResult ReopenDatabase(App& app, int64_t* rows);

}  // namespace demoapp
