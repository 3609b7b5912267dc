#pragma once
// File helpers for code that reads files an untrusted party may have replaced: never block on
// a FIFO or device, never read more than asked, never throw.

#include <cstddef>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "daemon/status.h"

namespace guardian {

// Reads a regular file (following symlinks) of at most `max_bytes`. A FIFO, device or folder
// is refused without blocking; a missing file is NotFound. Blocking: call off the loop thread.
Status ReadRegularFile(const std::string& path, size_t max_bytes, std::string* out);

// Reads a file holding one JSON object (status and flags files, records), under the same rules
// as ReadRegularFile. Corruption when the text is not a JSON object. Blocking.
Status ReadJsonObject(const std::string& path, size_t max_bytes, nlohmann::json* out);

// Replaces `path` with `content` so readers see the old file or the new one, never a mix:
// writes PATH.tmp, fsyncs it, renames it over PATH and fsyncs the folder. Blocking.
Status WriteFileAtomic(const std::string& path, const std::string& content, int mode = 0644);

// The entries of a folder, sorted; empty (and `ec` set) when it cannot be read.
std::vector<std::filesystem::path> ListDir(const std::filesystem::path& dir, std::error_code* ec);

}  // namespace guardian
