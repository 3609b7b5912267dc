#pragma once
// Audit chain: what makes the audit trail (the store's `events` table) tamper-evident. Each
// row carries `hash` = SHA-256 of the previous row's hash and this row's fields, so editing,
// deleting or reordering a row breaks the chain at that row or the next one, and
// `guardian audit verify` names the first row that no longer fits. Plain functions, no store:
// the store writes and reads the rows, this decides what they should hash to.
//
// What it cannot show on its own: rows cut from the end (the chain that is left still holds)
// and a chain rewritten whole by someone who can write the database. Compare the head hash
// with one kept elsewhere (guardiand logs it at start; `guardian audit verify` prints it).

#include <cstdint>
#include <string>

#include "daemon/store.h"

namespace guardian {

// The `hash` the first row chains from.
extern const char* const kAuditGenesis;

// Lower-case hex SHA-256 of `prev_hash` and the row's id, time, actor, kind, check and detail
// (its `hash` is not read). The fields are framed (as a JSON array), so no two rows hash alike
// by moving text from one field to the next.
std::string AuditRowHash(const std::string& prev_hash, const EventRecord& row);

// Checks rows fed in id order, one at a time (the store pages through the table).
class AuditChainVerifier {
 public:
  // False once the chain is broken; later rows are not looked at.
  bool Feed(const EventRecord& row);

  bool ok() const { return broken_id_ == 0; }
  int64_t rows() const { return rows_; }            // rows that checked out
  int64_t broken_id() const { return broken_id_; }  // the first row that does not fit; 0: none
  const std::string& reason() const { return reason_; }
  const std::string& head() const { return prev_hash_; }  // the last good row's hash
  int64_t head_id() const { return prev_id_; }

 private:
  std::string prev_hash_ = kAuditGenesis;
  int64_t prev_id_ = 0;
  int64_t rows_ = 0;
  int64_t broken_id_ = 0;
  std::string reason_;
};

}  // namespace guardian
