// A memory snapshot of a source past 1.5 GiB (io::kLargestHeapImage): one image in a memory
// file with room to grow, by either path (the live WAL applied in memory, or a staged copy read
// in), where SQLite's heap could not let it grow; and, where no memory file can be had, SQLite's
// backup API, slower but unbounded. The source is a real 1.5 GiB database (two 810 MB blobs in
// 64 KiB pages, written once with no journal: just past the line), with a commit its owner
// holds in the WAL. One test, so that the source is written once (it takes seconds).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sqlite_backup/log.hpp>
#include <sqlite_backup/sqlite_backup.hpp>
#include <string>
#include <vector>

#include "io/sqlite_memory.hpp"
#include "test_support.hpp"

namespace sqlite_backup::testing {
namespace {

constexpr long long kBlobBytes = 810'000'000;

// The total length of the mappings of our memory files in this process (/proc/self/maps names
// them "/memfd:sqlite_backup snapshot (deleted)").
std::uint64_t snapshot_mapped_bytes() {
  std::ifstream maps("/proc/self/maps");
  std::uint64_t bytes = 0;
  for (std::string line; std::getline(maps, line);) {
    if (line.find("/memfd:sqlite_backup snapshot") == std::string::npos) continue;
    const auto dash = line.find('-');
    const auto space = line.find(' ');
    bytes += std::stoull(line.substr(dash + 1, space - dash - 1), nullptr, 16) -
             std::stoull(line.substr(0, dash), nullptr, 16);
  }
  return bytes;
}

void exec(sqlite3* db, const char* sql) {
  char* error = nullptr;
  ASSERT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, &error), SQLITE_OK) << error;
}

class LargeMemorySnapshot : public ::testing::Test {
 protected:
  void SetUp() override {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(source().c_str(), &db), SQLITE_OK);
    exec(db,
         "PRAGMA page_size = 65536; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
         "CREATE TABLE t (id INTEGER PRIMARY KEY, v);"
         "INSERT INTO t (v) VALUES (zeroblob(810000000)), (zeroblob(810000000));"
         "PRAGMA journal_mode = WAL;");
    sqlite3_close(db);
    ASSERT_GT(fs::file_size(source()), io::kLargestHeapImage) << "not past the heap's limit";
    set_log_level(LogLevel::debug);
  }
  void TearDown() override {
    io::set_memory_files_allowed(true);
    set_log_level(LogLevel::warning);
  }
  [[nodiscard]] fs::path source() const { return dir_ / "large.db"; }

  // A snapshot of the source into a new connection, with the debug records it logged.
  sqlite3* snapshot(std::vector<std::string>& records) {
    std::mutex mutex;
    const ScopedLogSink sink([&](const LogRecord& record) {
      const std::lock_guard lock(mutex);
      records.emplace_back(record.message);
    });
    sqlite3* target = nullptr;
    EXPECT_EQ(sqlite3_open(":memory:", &target), SQLITE_OK);
    sqlite_backup_to_connection(source(), target);
    return target;
  }

  static bool logged(const std::vector<std::string>& records, const std::string& text) {
    for (const auto& message : records) {
      if (message.find(text) != std::string::npos) return true;
    }
    return false;
  }

  TempDir dir_{"sqlite_backup_large"};
};

TEST_F(LargeMemorySnapshot, TakesAMemoryFileByEitherPathOrElseTheBackupApi) {
  const std::uint64_t before = snapshot_mapped_bytes();
  {
    SCOPED_TRACE("a live WAL: read and applied straight into memory");
    sqlite3* owner = nullptr;
    ASSERT_EQ(sqlite3_open(source().c_str(), &owner), SQLITE_OK);
    exec(owner, "PRAGMA wal_autocheckpoint = 0; INSERT INTO t (v) VALUES ('in the WAL')");
    std::vector<std::string> records;
    sqlite3* copy = snapshot(records);
    EXPECT_TRUE(logged(records, "straight into memory")) << ::testing::PrintToString(records);
    EXPECT_GE(snapshot_mapped_bytes() - before, fs::file_size(source()));
    EXPECT_EQ(query_text(copy, "SELECT v FROM t WHERE id = 3"), "in the WAL");
    EXPECT_EQ(query_text(copy, "SELECT sum(length(v)) FROM t WHERE id < 3"),
              std::to_string(2 * kBlobBytes));
    exec(copy, "INSERT INTO t (v) VALUES (zeroblob(67108864))");  // 64 MiB past the snapshot
    EXPECT_EQ(count_rows(copy), 4);
    ASSERT_EQ(sqlite3_close(copy), SQLITE_OK);
    EXPECT_EQ(snapshot_mapped_bytes(), before);
    ASSERT_EQ(sqlite3_close(owner), SQLITE_OK);  // (the last connection: checkpoints the WAL)
  }
  ASSERT_FALSE(fs::exists(source().string() + "-wal"));
  {
    SCOPED_TRACE("no live WAL: a staged copy, read into memory");
    std::vector<std::string> records;
    sqlite3* copy = snapshot(records);
    EXPECT_FALSE(logged(records, "straight into memory"));
    EXPECT_GE(snapshot_mapped_bytes() - before, fs::file_size(source()));
    EXPECT_EQ(count_rows(copy), 3);
    exec(copy, "INSERT INTO t (v) VALUES (zeroblob(67108864))");
    EXPECT_EQ(count_rows(copy), 4);
    ASSERT_EQ(sqlite3_close(copy), SQLITE_OK);
    EXPECT_EQ(snapshot_mapped_bytes(), before);
  }
  {
    SCOPED_TRACE("no memory file: SQLite's backup API");
    io::set_memory_files_allowed(false);
    std::vector<std::string> records;
    sqlite3* copy = snapshot(records);
    EXPECT_TRUE(logged(records, "no memory file with room")) << ::testing::PrintToString(records);
    EXPECT_TRUE(logged(records, "backup step")) << "not through the backup API";
    EXPECT_EQ(snapshot_mapped_bytes(), before);
    EXPECT_EQ(query_text(copy, "PRAGMA page_size"), "65536");
    EXPECT_EQ(count_rows(copy), 3);
    ASSERT_EQ(sqlite3_close(copy), SQLITE_OK);
  }
}

}  // namespace
}  // namespace sqlite_backup::testing
