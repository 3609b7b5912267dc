#include "daemon/audit_chain.h"

#include <nettle/sha2.h>

#include <nlohmann/json.hpp>

namespace guardian {

const char* const kAuditGenesis =
    "0000000000000000000000000000000000000000000000000000000000000000";

std::string AuditRowHash(const std::string& prev_hash, const EventRecord& row) {
  std::string text = nlohmann::json::array(
                         {prev_hash, row.id, row.at, row.actor, row.kind, row.check_id, row.detail})
                         .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  sha256_ctx ctx;
  sha256_init(&ctx);
  sha256_update(&ctx, text.size(), reinterpret_cast<const uint8_t*>(text.data()));
  uint8_t md[SHA256_DIGEST_SIZE];
  sha256_digest(&ctx, sizeof md, md);
  const unsigned int len = sizeof md;
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    hex.push_back(kHex[md[i] >> 4]);
    hex.push_back(kHex[md[i] & 15]);
  }
  return hex;
}

bool AuditChainVerifier::Feed(const EventRecord& row) {
  if (broken_id_) return false;
  auto broken = [&](std::string why) {
    broken_id_ = row.id;
    reason_ = std::move(why);
    return false;
  };
  // Rows are numbered 1, 2, 3... as written; a gap is a deleted row even when someone
  // recomputed the hashes after it.
  if (row.id != prev_id_ + 1) {
    if (row.id <= prev_id_) return broken("row id " + std::to_string(row.id) + " out of order");
    return broken(row.id == prev_id_ + 2
                      ? "row " + std::to_string(prev_id_ + 1) + " before it is missing"
                      : "rows " + std::to_string(prev_id_ + 1) + " to " +
                            std::to_string(row.id - 1) + " before it are missing");
  }
  if (row.hash.empty()) return broken("it has no hash");
  std::string want = AuditRowHash(prev_hash_, row);
  if (want != row.hash) {
    return broken(
        "its hash does not match its contents and the row before it (edited, or moved from "
        "elsewhere in the trail)");
  }
  prev_hash_ = row.hash;
  prev_id_ = row.id;
  ++rows_;
  return true;
}

}  // namespace guardian
