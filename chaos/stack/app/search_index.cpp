// The word -> ids index behind GET /search.

#include "chaos/stack/app/search_index.h"

#include <cctype>

namespace demoapp {

std::vector<std::string> SearchIndex::Words(const std::string& text) {
  std::vector<std::string> words;
  std::string word;
  for (char ch : text + " ") {
    unsigned char c = static_cast<unsigned char>(ch);
    if (std::isalnum(c)) {
      word += static_cast<char>(std::tolower(c));
    } else if (!word.empty()) {
      words.push_back(word);
      word.clear();
    }
  }
  return words;
}

DbResult SearchIndex::Build(Database& db) {
  // Built aside and swapped in, so that lookups never see half an index.
  std::map<std::string, std::vector<int64_t>> next;
  DbResult r = db.ForEach([&](const Item& item) {
    for (const std::string& w : Words(item.body)) {
      std::vector<int64_t>& ids = next[w];
      if (ids.empty() || ids.back() != item.id) ids.push_back(item.id);
    }
  });
  std::lock_guard lock(mu_);
  attempted_ = true;
  built_ = r.ok;
  if (r.ok) {
    index_.swap(next);
  } else {
    index_.clear();
  }
  return r;
}

void SearchIndex::Add(int64_t id, const std::string& body) {
  std::lock_guard lock(mu_);
  if (!built_) return;
  for (const std::string& w : Words(body)) {
    std::vector<int64_t>& ids = index_[w];
    if (ids.empty() || ids.back() != id) ids.push_back(id);
  }
}

bool SearchIndex::Lookup(const std::string& word, std::vector<int64_t>* ids) const {
  std::lock_guard lock(mu_);
  if (!built_) return false;
  std::vector<std::string> words = Words(word);
  ids->clear();
  if (words.size() == 1) {
    auto it = index_.find(words[0]);
    if (it != index_.end()) *ids = it->second;
  }
  return true;
}

bool SearchIndex::built() const {
  std::lock_guard lock(mu_);
  return built_;
}

bool SearchIndex::attempted() const {
  std::lock_guard lock(mu_);
  return attempted_;
}

size_t SearchIndex::words() const {
  std::lock_guard lock(mu_);
  return index_.size();
}

}  // namespace demoapp
