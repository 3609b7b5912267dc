#include "plugins/lua_patterns.h"

#include <cctype>
#include <cstring>

namespace guardian {
namespace {

constexpr int kMaxDepth = 200;              // nested matcher calls, as in the stock library
constexpr int kMaxCaptures = 32;            // as LUA_MAXCAPTURES in the stock library
constexpr int64_t kChargeEvery = 1024;      // steps collected between two charges
constexpr ptrdiff_t kOpen = -1;             // a capture whose ')' has not been reached yet
constexpr ptrdiff_t kPosition = -2;         // a position capture, "()"
constexpr char kSpecials[] = "^$*+?.([%-";  // a find pattern without these is plain text

int Byte(const char* p) { return static_cast<unsigned char>(*p); }

const PatternCharge* ChargeOf(lua_State* L) {
  return static_cast<const PatternCharge*>(lua_touserdata(L, lua_upvalueindex(1)));
}

// The 1-based start position an `init` argument names, clamped to 1 (string.find's rules).
size_t StartPosition(lua_Integer pos, size_t len) {
  if (pos > 0) return static_cast<size_t>(pos);
  if (pos == 0) return 1;
  if (pos < -static_cast<lua_Integer>(len)) return 1;
  return len + static_cast<size_t>(pos) + 1;
}

bool NoSpecials(const char* p, size_t lp) {
  for (size_t i = 0; i < lp; ++i) {
    if (p[i] != '\0' && std::memchr(kSpecials, p[i], sizeof kSpecials - 1) != nullptr) return false;
  }
  return true;
}

void CheckPatternLength(lua_State* L, size_t lp, const char* function) {
  if (lp > kMaxPatternBytes) {
    luaL_error(L, "%s: pattern too long (%I bytes; the playbook sandbox allows %I)", function,
               static_cast<lua_Integer>(lp), static_cast<lua_Integer>(kMaxPatternBytes));
  }
}

// One match attempt's state: the subject, the pattern, the captures, and the steps not yet
// charged. Errors are Lua errors (luaL_error), which unwind through it: it owns no resources.
class Matcher {
 public:
  Matcher(lua_State* L, const PatternCharge* charge, const char* function, const char* s, size_t ls,
          const char* p, size_t lp)
      : L_(L),
        charge_(charge),
        function_(function),
        s_begin_(s),
        s_end_(s + ls),
        p_begin_(p),
        p_end_(p + lp),
        first_(RequiredFirst()) {}

  // Spends `n` steps; every kChargeEvery of them go to the budget, which may raise.
  void Spend(int64_t n) {
    pending_ += n;
    if (pending_ >= kChargeEvery) Flush();
  }
  void Flush() {
    if (pending_ == 0) return;
    const int64_t n = pending_;
    pending_ = 0;
    (*charge_)(L_, n, function_);
  }

  // Tries the whole pattern with its first item at `s`: the end of the match, or nullptr.
  const char* Attempt(const char* s) {
    level_ = 0;
    depth_ = kMaxDepth;
    return Match(s, p_begin_);
  }

  // Where a match can start, from `s` on (the end when nowhere). When the pattern starts with
  // a character that must be there, memchr finds it far faster than trying every position.
  const char* Skip(const char* s) {
    if (first_ < 0 || s >= s_end_) return s;
    const auto* hit =
        static_cast<const char*>(std::memchr(s, first_, static_cast<size_t>(s_end_ - s)));
    if (hit == nullptr) hit = s_end_;
    Spend((hit - s) / 16);
    return hit;
  }

  // Plain-text search for the pattern from `s`: the start of the first occurrence, or nullptr.
  const char* FindPlain(const char* s) {
    const size_t ln = static_cast<size_t>(p_end_ - p_begin_);
    if (ln == 0) return s;
    if (ln > static_cast<size_t>(s_end_ - s)) return nullptr;
    const char* last = s_end_ - ln;  // the last place an occurrence can start
    for (const char* at = s; at <= last;) {
      const size_t span = static_cast<size_t>(last - at) + 1;
      const auto* hit = static_cast<const char*>(std::memchr(at, *p_begin_, span));
      Spend(static_cast<int64_t>((hit != nullptr ? hit - at : span) / 16 + 1));
      if (hit == nullptr) return nullptr;
      Spend(static_cast<int64_t>(ln / 16 + 1));
      if (std::memcmp(hit + 1, p_begin_ + 1, ln - 1) == 0) return hit;
      at = hit + 1;
    }
    return nullptr;
  }

  // Pushes the captures of the match s..e (the whole match when the pattern has none and `s`
  // is given) and returns how many.
  int PushCaptures(const char* s, const char* e) {
    const int n = level_ == 0 && s != nullptr ? 1 : level_;
    luaL_checkstack(L_, n, "too many captures");
    for (int i = 0; i < n; ++i) PushCapture(i, s, e);
    return n;
  }

  void PushCapture(int i, const char* s, const char* e) {
    const char* start = nullptr;
    const ptrdiff_t len = Capture(i, s, e, &start);
    if (len == kPosition) {
      lua_pushinteger(L_, static_cast<lua_Integer>(start - s_begin_) + 1);
    } else {
      lua_pushlstring(L_, start, static_cast<size_t>(len));
    }
  }

  // Adds the replacement for the match s..e to `b`, as string.gsub's third argument (at stack
  // index 3, of Lua type `type`) says. False when the match is kept as it was.
  bool AddReplacement(luaL_Buffer* b, const char* s, const char* e, int type) {
    if (type == LUA_TFUNCTION) {
      Flush();  // the callback is Lua code, counted by the hook from here
      lua_pushvalue(L_, 3);
      const int n = PushCaptures(s, e);
      lua_call(L_, n, 1);
    } else if (type == LUA_TTABLE) {
      PushCapture(0, s, e);
      lua_gettable(L_, 3);
    } else {
      AddTemplate(b, s, e);
      return true;
    }
    if (!lua_toboolean(L_, -1)) {
      lua_pop(L_, 1);
      luaL_addlstring(b, s, static_cast<size_t>(e - s));
      return false;
    }
    if (!lua_isstring(L_, -1)) {
      luaL_error(L_, "invalid replacement value (a %s)", luaL_typename(L_, -1));
    }
    luaL_addvalue(b);
    return true;
  }

 private:
  // Capture `i` of the match s..e: its length (or kPosition) and where it starts.
  ptrdiff_t Capture(int i, const char* s, const char* e, const char** start) {
    if (i >= level_) {
      if (i != 0) luaL_error(L_, "invalid capture index %%%d", i + 1);
      *start = s;
      return e - s;
    }
    if (captures_[i].len == kOpen) luaL_error(L_, "unfinished capture");
    *start = captures_[i].start;
    return captures_[i].len;
  }

  // The replacement string with %0..%9 and %% expanded.
  void AddTemplate(luaL_Buffer* b, const char* s, const char* e) {
    size_t len = 0;
    const char* r = lua_tolstring(L_, 3, &len);
    const char* end = r + len;
    Spend(static_cast<int64_t>(len / 16 + 1));
    for (;;) {
      const auto* pct = static_cast<const char*>(std::memchr(r, '%', static_cast<size_t>(end - r)));
      if (pct == nullptr) break;
      luaL_addlstring(b, r, static_cast<size_t>(pct - r));
      const int c = pct + 1 < end ? Byte(pct + 1) : '\0';
      if (c == '%') {
        luaL_addchar(b, '%');
      } else if (c == '0') {
        luaL_addlstring(b, s, static_cast<size_t>(e - s));
      } else if (std::isdigit(c)) {
        const char* start = nullptr;
        const ptrdiff_t n = Capture(c - '1', s, e, &start);
        if (n == kPosition) {
          lua_pushinteger(L_, static_cast<lua_Integer>(start - s_begin_) + 1);
          luaL_addvalue(b);
        } else {
          luaL_addlstring(b, start, static_cast<size_t>(n));
        }
      } else {
        luaL_error(L_, "invalid use of '%c' in replacement string", '%');
      }
      r = pct + 2;
    }
    luaL_addlstring(b, r, static_cast<size_t>(end - r));
  }

  const char* Match(const char* s, const char* p) {
    if (depth_ == 0) luaL_error(L_, "pattern too complex");
    --depth_;
    const char* end = MatchHere(s, p);
    ++depth_;
    return end;
  }

  // Matches items from `p` on at `s`. Items that must backtrack recurse through Match;
  // everything else moves along in this loop.
  const char* MatchHere(const char* s, const char* p) {
    for (;;) {
      Spend(1);
      if (p == p_end_) return s;
      if (*p == '(') {
        if (p + 1 < p_end_ && p[1] == ')') return OpenCapture(s, p + 2, kPosition);
        return OpenCapture(s, p + 1, kOpen);
      }
      if (*p == ')') return CloseCapture(s, p + 1);
      if (*p == '$' && p + 1 == p_end_) return s == s_end_ ? s : nullptr;
      if (*p == '%' && p + 1 < p_end_) {
        const char kind = p[1];
        if (kind == 'b') {
          s = Balanced(s, p + 2);
          if (s == nullptr) return nullptr;
          p += 4;
          continue;
        }
        if (kind == 'f') {
          p += 2;
          if (p == p_end_ || *p != '[') luaL_error(L_, "missing '[' after '%%f' in pattern");
          const char* set_end = ItemEnd(p);
          const int before = s == s_begin_ ? '\0' : Byte(s - 1);
          const int here = s < s_end_ ? Byte(s) : '\0';
          if (InSet(before, p, set_end - 1) || !InSet(here, p, set_end - 1)) return nullptr;
          p = set_end;
          continue;
        }
        if (kind >= '0' && kind <= '9') {
          s = BackReference(s, kind);
          if (s == nullptr) return nullptr;
          p += 2;
          continue;
        }
      }
      // One character class, maybe followed by a quantifier.
      const char* ep = ItemEnd(p);
      const char quantifier = ep < p_end_ ? *ep : '\0';
      if (!Single(s, p, ep)) {
        if (quantifier == '*' || quantifier == '?' || quantifier == '-') {
          p = ep + 1;  // zero repetitions are fine
          continue;
        }
        return nullptr;
      }
      switch (quantifier) {
        case '?': {
          if (const char* end = Match(s + 1, ep + 1)) return end;
          p = ep + 1;
          continue;
        }
        case '+':
          return Greedy(s + 1, p, ep);
        case '*':
          return Greedy(s, p, ep);
        case '-':
          return Lazy(s, p, ep);
        default:
          ++s;
          p = ep;
      }
    }
  }

  // As many repetitions of item p..ep as match from `s`, then fewer until the rest matches.
  const char* Greedy(const char* s, const char* p, const char* ep) {
    ptrdiff_t n = 0;
    while (Single(s + n, p, ep)) ++n;
    for (; n >= 0; --n) {
      if (const char* end = Match(s + n, ep + 1)) return end;
    }
    return nullptr;
  }

  // As few repetitions of item p..ep as let the rest match.
  const char* Lazy(const char* s, const char* p, const char* ep) {
    for (;;) {
      if (const char* end = Match(s, ep + 1)) return end;
      if (!Single(s, p, ep)) return nullptr;
      ++s;
    }
  }

  const char* OpenCapture(const char* s, const char* p, ptrdiff_t what) {
    if (level_ >= kMaxCaptures) luaL_error(L_, "too many captures");
    captures_[level_] = {s, what};
    ++level_;
    const char* end = Match(s, p);
    if (end == nullptr) --level_;
    return end;
  }

  const char* CloseCapture(const char* s, const char* p) {
    int open = level_ - 1;
    while (open >= 0 && captures_[open].len != kOpen) --open;
    if (open < 0) luaL_error(L_, "invalid pattern capture");
    captures_[open].len = s - captures_[open].start;
    const char* end = Match(s, p);
    if (end == nullptr) captures_[open].len = kOpen;
    return end;
  }

  // %bxy at `s`: an x, then up to the y that balances it.
  const char* Balanced(const char* s, const char* p) {
    if (p + 1 >= p_end_) luaL_error(L_, "malformed pattern (missing arguments to '%%b')");
    if (s >= s_end_ || *s != *p) return nullptr;
    int depth = 1;
    for (const char* c = s + 1; c < s_end_; ++c) {
      Spend(1);
      if (*c == p[1]) {
        if (--depth == 0) return c + 1;
      } else if (*c == *p) {
        ++depth;
      }
    }
    return nullptr;
  }

  // %1..%9 at `s`: the same text as that capture again.
  const char* BackReference(const char* s, char digit) {
    const int i = digit - '1';
    if (i < 0 || i >= level_ || captures_[i].len == kOpen) {
      luaL_error(L_, "invalid capture index %%%d", i + 1);
    }
    const ptrdiff_t len = captures_[i].len;
    if (len < 0) return nullptr;  // a position capture never matches text
    Spend(len / 16 + 1);
    if (s_end_ - s >= len && std::memcmp(captures_[i].start, s, static_cast<size_t>(len)) == 0) {
      return s + len;
    }
    return nullptr;
  }

  // Where the single-character item at `p` ends (past a set's ']').
  const char* ItemEnd(const char* p) {
    const char* start = p;
    const char c = *p++;
    if (c == '%') {
      if (p == p_end_) luaL_error(L_, "malformed pattern (ends with '%%')");
      return p + 1;
    }
    if (c != '[') return p;
    if (p < p_end_ && *p == '^') ++p;
    do {  // the first character of a set is never its end, so "[]]" holds a ']'
      if (p == p_end_) luaL_error(L_, "malformed pattern (missing ']')");
      const char d = *p++;
      if (d == '%' && p < p_end_) ++p;
    } while (p == p_end_ || *p != ']');
    Spend((p - start) / 8);
    return p + 1;
  }

  // Whether the character at `s` (none at the end) matches the item p..ep.
  bool Single(const char* s, const char* p, const char* ep) {
    Spend(1);
    if (s >= s_end_) return false;
    const int c = Byte(s);
    switch (*p) {
      case '.':
        return true;
      case '%':
        return ClassMatches(c, Byte(p + 1));
      case '[':
        return InSet(c, p, ep - 1);
      default:
        return Byte(p) == c;
    }
  }

  // Whether `c` is in the set from '[' at `p` to its ']' at `close`.
  bool InSet(int c, const char* p, const char* close) {
    bool in = true;
    if (p[1] == '^') {
      in = false;
      ++p;
    }
    Spend((close - p) / 8);
    while (++p < close) {
      if (*p == '%') {
        ++p;
        if (ClassMatches(c, Byte(p))) return in;
      } else if (p[1] == '-' && p + 2 < close) {
        if (Byte(p) <= c && c <= Byte(p + 2)) return in;
        p += 2;
      } else if (Byte(p) == c) {
        return in;
      }
    }
    return !in;
  }

  // The character a match must start with, when the pattern's first item is one literal
  // character that must appear at least once; -1 otherwise.
  int RequiredFirst() const {
    if (p_begin_ == p_end_) return -1;
    const char* item_end = p_begin_ + 1;
    int c = Byte(p_begin_);
    if (c == '%') {
      if (item_end == p_end_ || std::isalnum(Byte(item_end))) return -1;  // a class, %b, %f, %1
      c = Byte(item_end++);
    } else if (c == '(' || c == ')' || c == '[' || c == '.' || c == '$') {
      return -1;
    }
    if (item_end < p_end_ && (*item_end == '*' || *item_end == '?' || *item_end == '-')) return -1;
    return c;
  }

  // %a, %d, ...; an upper-case letter is the complement; any other character stands for itself.
  static bool ClassMatches(int c, int cls) {
    struct Class {
      char letter;
      bool (*test)(int);
    };
    static constexpr Class kClasses[] = {
        {'a', [](int x) { return std::isalpha(x) != 0; }},
        {'c', [](int x) { return std::iscntrl(x) != 0; }},
        {'d', [](int x) { return std::isdigit(x) != 0; }},
        {'g', [](int x) { return std::isgraph(x) != 0; }},
        {'l', [](int x) { return std::islower(x) != 0; }},
        {'p', [](int x) { return std::ispunct(x) != 0; }},
        {'s', [](int x) { return std::isspace(x) != 0; }},
        {'u', [](int x) { return std::isupper(x) != 0; }},
        {'w', [](int x) { return std::isalnum(x) != 0; }},
        {'x', [](int x) { return std::isxdigit(x) != 0; }},
        {'z', [](int x) { return x == 0; }},  // deprecated, but Lua 5.4 still has it
    };
    const int lower = std::tolower(cls);
    for (const Class& k : kClasses) {
      if (k.letter == lower) return std::isupper(cls) ? !k.test(c) : k.test(c);
    }
    return cls == c;
  }

  struct Span {
    const char* start;
    ptrdiff_t len;
  };

  lua_State* L_;
  const PatternCharge* charge_;
  const char* function_;
  const char* s_begin_;
  const char* s_end_;
  const char* p_begin_;
  const char* p_end_;
  const int first_;  // the character every match starts with, or -1
  int64_t pending_ = 0;
  int depth_ = kMaxDepth;
  int level_ = 0;
  Span captures_[kMaxCaptures] = {};
};

// string.find and string.match: the first match from `init` on.
int FindOrMatch(lua_State* L, bool find) {
  const char* function = find ? "string.find" : "string.match";
  size_t ls = 0;
  size_t lp = 0;
  const char* s = luaL_checklstring(L, 1, &ls);
  const char* p = luaL_checklstring(L, 2, &lp);
  const size_t init = StartPosition(luaL_optinteger(L, 3, 1), ls) - 1;
  if (init > ls) {
    luaL_pushfail(L);
    return 1;
  }
  if (find && (lua_toboolean(L, 4) || NoSpecials(p, lp))) {
    Matcher m(L, ChargeOf(L), function, s, ls, p, lp);
    const char* hit = m.FindPlain(s + init);
    m.Flush();
    if (hit != nullptr) {
      lua_pushinteger(L, static_cast<lua_Integer>(hit - s) + 1);
      lua_pushinteger(L, static_cast<lua_Integer>(hit - s + lp));
      return 2;
    }
    luaL_pushfail(L);
    return 1;
  }
  CheckPatternLength(L, lp, function);
  const bool anchor = lp > 0 && *p == '^';
  if (anchor) {
    ++p;
    --lp;
  }
  Matcher m(L, ChargeOf(L), function, s, ls, p, lp);
  for (const char* from = anchor ? s + init : m.Skip(s + init);; from = m.Skip(from + 1)) {
    if (const char* end = m.Attempt(from)) {
      m.Flush();
      if (!find) return m.PushCaptures(from, end);
      lua_pushinteger(L, static_cast<lua_Integer>(from - s) + 1);
      lua_pushinteger(L, static_cast<lua_Integer>(end - s));
      return m.PushCaptures(nullptr, nullptr) + 2;
    }
    if (anchor || from == s + ls) break;
  }
  m.Flush();
  luaL_pushfail(L);
  return 1;
}

int Find(lua_State* L) { return FindOrMatch(L, true); }
int MatchFn(lua_State* L) { return FindOrMatch(L, false); }

// The iterator string.gmatch returns. Upvalues: charge, subject, pattern, where the next
// search starts (0-based), where the last match ended (-1: none yet).
int GmatchNext(lua_State* L) {
  size_t ls = 0;
  size_t lp = 0;
  const char* s = lua_tolstring(L, lua_upvalueindex(2), &ls);
  const char* p = lua_tolstring(L, lua_upvalueindex(3), &lp);
  const auto from = static_cast<size_t>(lua_tointeger(L, lua_upvalueindex(4)));
  const lua_Integer last = lua_tointeger(L, lua_upvalueindex(5));
  if (from > ls) return 0;
  Matcher m(L, ChargeOf(L), "string.gmatch", s, ls, p, lp);
  for (const char* at = m.Skip(s + from);; at = m.Skip(at + 1)) {
    const char* end = m.Attempt(at);
    // An empty match right where the previous one ended would repeat it: move on.
    if (end != nullptr && end - s != last) {
      lua_pushinteger(L, end - s);
      lua_replace(L, lua_upvalueindex(4));
      lua_pushinteger(L, end - s);
      lua_replace(L, lua_upvalueindex(5));
      m.Flush();
      return m.PushCaptures(at, end);
    }
    if (at == s + ls) break;
  }
  m.Flush();
  return 0;
}

int Gmatch(lua_State* L) {
  size_t ls = 0;
  size_t lp = 0;
  luaL_checklstring(L, 1, &ls);
  luaL_checklstring(L, 2, &lp);
  size_t init = StartPosition(luaL_optinteger(L, 3, 1), ls) - 1;
  if (init > ls) init = ls + 1;  // nothing to match
  CheckPatternLength(L, lp, "string.gmatch");
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_pushinteger(L, static_cast<lua_Integer>(init));
  lua_pushinteger(L, -1);
  lua_pushcclosure(L, GmatchNext, 5);
  return 1;
}

int Gsub(lua_State* L) {
  size_t ls = 0;
  size_t lp = 0;
  const char* src = luaL_checklstring(L, 1, &ls);
  const char* p = luaL_checklstring(L, 2, &lp);
  const int type = lua_type(L, 3);
  const lua_Integer max_n = luaL_optinteger(L, 4, static_cast<lua_Integer>(ls) + 1);
  luaL_argexpected(
      L, type == LUA_TNUMBER || type == LUA_TSTRING || type == LUA_TFUNCTION || type == LUA_TTABLE,
      3, "string/function/table");
  CheckPatternLength(L, lp, "string.gsub");
  const bool anchor = lp > 0 && *p == '^';
  if (anchor) {
    ++p;
    --lp;
  }
  Matcher m(L, ChargeOf(L), "string.gsub", src, ls, p, lp);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  const char* end = src + ls;
  const char* s = anchor ? src : m.Skip(src);
  const char* kept = src;  // start of the text since the last match, not copied yet
  const char* last = nullptr;
  lua_Integer n = 0;
  bool changed = false;
  while (n < max_n) {
    const char* e = m.Attempt(s);
    if (e != nullptr && e != last) {
      ++n;
      luaL_addlstring(&b, kept, static_cast<size_t>(s - kept));
      changed = m.AddReplacement(&b, s, e, type) || changed;
      s = last = kept = e;
    } else if (s < end) {
      s = anchor ? s + 1 : m.Skip(s + 1);
    } else {
      break;
    }
    if (anchor) break;
  }
  m.Flush();
  if (changed) {
    luaL_addlstring(&b, kept, static_cast<size_t>(end - kept));
    luaL_pushresult(&b);
  } else {
    lua_pushvalue(L, 1);
  }
  lua_pushinteger(L, n);
  return 2;
}

}  // namespace

void InstallBoundedPatterns(lua_State* L, int lib, const PatternCharge* charge) {
  static const luaL_Reg kFunctions[] = {
      {"find", Find}, {"match", MatchFn}, {"gmatch", Gmatch}, {"gsub", Gsub}, {nullptr, nullptr}};
  lua_pushvalue(L, lib);
  lua_pushlightuserdata(L, const_cast<PatternCharge*>(charge));
  luaL_setfuncs(L, kFunctions, 1);
  lua_pop(L, 1);
}

}  // namespace guardian
