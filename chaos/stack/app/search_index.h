#pragma once
// The in-memory search index built by the search_index boot chunk: word -> item ids over every
// item body. Not a cache: shedding caches leaves it alone.

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "chaos/stack/app/database.h"

namespace demoapp {

class SearchIndex {
 public:
  // Rebuilds from every item. On a database error the index is left unbuilt.
  DbResult Build(Database& db);
  // Adds one new item (no-op until the index is built).
  void Add(int64_t id, const std::string& body);
  // False when the index was never built (chunk skipped, not reached, or failed).
  bool Lookup(const std::string& word, std::vector<int64_t>* ids) const;
  bool built() const;
  // True once Build() ran, whatever its outcome: a reopened database rebuilds the index then.
  bool attempted() const;
  size_t words() const;

  // Lower-case words of letters and digits.
  static std::vector<std::string> Words(const std::string& text);

 private:
  mutable std::mutex mu_;
  bool built_ = false;
  bool attempted_ = false;
  std::map<std::string, std::vector<int64_t>> index_;
};

}  // namespace demoapp
