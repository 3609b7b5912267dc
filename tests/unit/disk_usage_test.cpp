// Disk figures from statvfs, how they are judged, and the file work of disk_full's playbook on
// real files: gzip in place, moves within and across filesystems.
#include "daemon/disk_usage.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace guardian {
namespace {
namespace fs = std::filesystem;

constexpr uint64_t kMiB = 1 << 20;

struct TempDir {
  fs::path path;
  explicit TempDir(const fs::path& base = fs::temp_directory_path()) {
    path = base / ("disk_usage_test." + std::to_string(::getpid()) + "." +
                   std::to_string(reinterpret_cast<uintptr_t>(this)));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::string Slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Gunzip(const fs::path& p) {
  gzFile f = gzopen(p.c_str(), "rb");
  REQUIRE(f != nullptr);
  std::string out;
  char buf[4096];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  gzclose(f);
  return out;
}

}  // namespace

TEST_CASE("statvfs of a real filesystem, and a missing path is an error") {
  DiskUsage u;
  REQUIRE(ReadDiskUsage("/tmp", &u).ok());
  CHECK(u.total_bytes > 0);
  CHECK(u.free_bytes <= u.total_bytes);
  CHECK(!ReadDiskUsage("/no/such/folder", &u).ok());
}

TEST_CASE("judge: space by percent or bytes, inodes by percent; 0 is off") {
  DiskUsage u;
  u.total_bytes = 100 * kMiB;
  u.free_bytes = 5 * kMiB;
  u.total_inodes = 1000;
  u.free_inodes = 20;
  DiskLimits l;  // 10% space, 5% inodes
  std::vector<std::string> why = JudgeDisk(u, l);
  REQUIRE(why.size() == 2);
  CHECK(why[0] == "free 5 MiB (5.0%) under 10%");
  CHECK(why[1] == "free inodes 20 (2.0%) under 5.0%");
  DiskLimits bytes{0, 8 * kMiB, 0};
  CHECK(JudgeDisk(u, bytes) == std::vector<std::string>{"free 5 MiB (5.0%) under 8 MiB"});
  DiskLimits off{0, 0, 0};
  CHECK(JudgeDisk(u, off).empty());
  u.total_inodes = 0;  // a filesystem without an inode limit
  CHECK(u.free_inodes_percent() == 100);
}

TEST_CASE("gzip in place: the .gz holds the text, the original goes") {
  TempDir d;
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "2026-11-23 info request " + std::to_string(i % 7) + "\n";
  std::ofstream(d.path / "app.log.1") << text;
  uint64_t before = 0, after = 0;
  REQUIRE(GzipFile((d.path / "app.log.1").string(), &before, &after).ok());
  CHECK(before == text.size());
  CHECK(after < before / 10);
  CHECK(!fs::exists(d.path / "app.log.1"));
  CHECK(fs::file_size(d.path / "app.log.1.gz") == after);
  CHECK(Gunzip(d.path / "app.log.1.gz") == text);
  CHECK(!GzipFile((d.path / "missing").string(), &before, &after).ok());
}

TEST_CASE("move within a filesystem and across one; an existing target is refused") {
  TempDir a;
  std::ofstream(a.path / "snap-1.json") << "one";
  std::ofstream(a.path / "snap-2.json") << "two";
  REQUIRE(MoveFile((a.path / "snap-1.json").string(), (a.path / "moved.json").string()).ok());
  CHECK(Slurp(a.path / "moved.json") == "one");
  CHECK(!MoveFile((a.path / "snap-2.json").string(), (a.path / "moved.json").string()).ok());
  CHECK(Slurp(a.path / "snap-2.json") == "two");
  // /dev/shm is a tmpfs: another filesystem than /tmp on most machines (copy, then unlink).
  if (fs::exists("/dev/shm")) {
    TempDir b("/dev/shm");
    REQUIRE(MoveFile((a.path / "snap-2.json").string(), (b.path / "snap-2.json").string()).ok());
    CHECK(Slurp(b.path / "snap-2.json") == "two");
    CHECK(!fs::exists(a.path / "snap-2.json"));
    CHECK(!fs::exists(b.path / "snap-2.json.guardian-tmp"));
  }
}

TEST_CASE("list: oldest first, with sizes; symlinks are not followed") {
  TempDir d;
  std::ofstream(d.path / "b") << "12345";
  std::ofstream(d.path / "a") << "1";
  fs::last_write_time(d.path / "b", fs::file_time_type::clock::now() - std::chrono::hours(1));
  fs::create_symlink("/etc/passwd", d.path / "link");
  std::vector<FileEntry> files;
  REQUIRE(ListFiles(d.path.string(), &files).ok());
  REQUIRE(files.size() == 3);
  CHECK(files[0].name == "b");
  CHECK(files[0].size == 5);
  CHECK(files[0].regular);
  bool link_regular = true;
  for (const auto& f : files)
    if (f.name == "link") link_regular = f.regular;
  CHECK(!link_regular);
}

}  // namespace guardian
