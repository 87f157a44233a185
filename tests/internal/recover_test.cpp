// recover::recover_in_place against SQLite's own recovery of the same staged set: where the
// library applies the WAL itself and where it must leave the job to SQLite.
#include "recover/recover.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <array>
#include <cstdint>
#include <fstream>
#include <mutex>
#include <sqlite_backup/log.hpp>
#include <sqlite_backup/sqlite_backup.hpp>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace sqlite_backup::testing {
namespace {

void exec(sqlite3* db, const std::string& sql) {
  char* message = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
    const std::string why = message != nullptr ? message : "?";
    sqlite3_free(message);
    throw std::runtime_error(sql + ": " + why);
  }
}

// Copies `files` (a database and whichever side files exist) into folders "ours" and
// "sqlite"; recovers the first with recover_in_place() and the second with SQLite alone.
class RecoverBoth {
 public:
  explicit RecoverBoth(const fs::path& database) {
    for (const char* side : {"ours", "sqlite"}) {
      fs::create_directory(dir_ / side);
      for (const char* suffix : {"", "-wal", "-journal"}) {
        const fs::path from = database.string() + suffix;
        if (fs::exists(from)) fs::copy_file(from, dir_ / side / (std::string("db") + suffix));
      }
    }
  }
  [[nodiscard]] fs::path ours() const { return dir_ / "ours" / "db"; }
  [[nodiscard]] fs::path theirs() const { return dir_ / "sqlite" / "db"; }

  // The debug log of our recovery.
  std::vector<std::string> recover() {
    std::vector<std::string> log;
    std::mutex mutex;
    const LogLevel saved = log_level();
    set_log_level(LogLevel::debug);
    set_log_sink([&](const LogRecord& record) {
      const std::lock_guard lock(mutex);
      log.emplace_back(record.message);
    });
    recover::recover_in_place(ours(), recover::Settings{}, "source.db");
    set_log_sink({});
    set_log_level(saved);
    exec_sql(theirs(), "PRAGMA journal_mode=DELETE");
    return log;
  }

 private:
  TempDir dir_{"sqlite_backup_recover"};
};

bool mentions(const std::vector<std::string>& log, const std::string& text) {
  for (const auto& line : log) {
    if (line.find(text) != std::string::npos) return true;
  }
  return false;
}

void put_be32(std::string& bytes, std::size_t at, std::uint32_t value) {
  for (int i = 3; i >= 0; --i, value >>= 8) bytes[at + i] = static_cast<char>(value & 0xff);
}

// A hot rollback journal holding `original` as the content of page `page` of a database of
// `pages` pages of 4096 bytes (the journal format of https://www.sqlite.org/fileformat.html,
// one record, its checksum as SQLite computes it).
std::string hot_journal(std::uint32_t pages, std::uint32_t page, const std::string& original) {
  constexpr std::uint32_t kPageSize = 4096;
  constexpr std::uint32_t kNonce = 0x2468ace0;
  std::string journal(512, '\0');
  const std::array<unsigned char, 8> magic = {0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7};
  for (std::size_t i = 0; i < magic.size(); ++i) journal[i] = static_cast<char>(magic[i]);
  put_be32(journal, 8, 1);  // records
  put_be32(journal, 12, kNonce);
  put_be32(journal, 16, pages);  // the database's size when the transaction began
  put_be32(journal, 20, 512);    // sector size
  put_be32(journal, 24, kPageSize);
  std::string record(4 + kPageSize + 4, '\0');
  put_be32(record, 0, page);
  record.replace(4, kPageSize, original);
  std::uint32_t checksum = kNonce;
  for (int i = static_cast<int>(kPageSize) - 200; i > 0; i -= 200) {
    checksum += static_cast<unsigned char>(original[static_cast<std::size_t>(i)]);
  }
  put_be32(record, 4 + kPageSize, checksum);
  return journal + record;
}

// SQLite rolls a hot journal back before it reads the WAL: with both staged, the WAL's pages
// win. Applying the WAL first would let the journal's older pages win instead.
TEST(RecoverInPlace, LeavesAHotJournalBesideAWalToSqlite) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  sqlite3* owner = nullptr;
  ASSERT_EQ(sqlite3_open(source.c_str(), &owner), SQLITE_OK);
  exec(owner,
       "PRAGMA page_size=4096; PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;"
       "CREATE TABLE t(v TEXT); INSERT INTO t VALUES('base');"
       "PRAGMA wal_checkpoint(TRUNCATE); UPDATE t SET v = 'wal!'");
  // Page 2 (t's only page) as the main file holds it, with 'base' made 'jour'.
  std::string page2 = read_file(source).substr(4096, 4096);
  page2.replace(page2.find("base"), 4, "jour");
  const auto pages = static_cast<std::uint32_t>(fs::file_size(source) / 4096);
  {
    std::ofstream journal(source.string() + "-journal", std::ios::binary);
    const std::string bytes = hot_journal(pages, 2, page2);
    journal.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  RecoverBoth copies(source);
  sqlite3_close(owner);
  const auto log = copies.recover();
  EXPECT_FALSE(mentions(log, "applied the WAL")) << "applied before the journal was rolled back";
  EXPECT_EQ(query_text(copies.theirs(), "SELECT v FROM t"), "wal!");
  EXPECT_EQ(query_text(copies.ours(), "SELECT v FROM t"), "wal!");
  EXPECT_TRUE(read_file(copies.ours()) == read_file(copies.theirs())) << "the files differ";
}

// A host application may make its own VFS the process's default (page encryption, page
// checksums): the bytes on disk are then not the documented format, and SQLite, reading
// through that VFS, replays the WAL. A pass-through copy of the unix VFS stands in for one.
TEST(RecoverInPlace, LeavesTheWalToSqliteWhenTheDefaultVfsIsNotSqlites) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  sqlite3* owner = nullptr;
  ASSERT_EQ(sqlite3_open(source.c_str(), &owner), SQLITE_OK);
  exec(owner,
       "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;"
       "CREATE TABLE t(v TEXT); INSERT INTO t VALUES('a'), ('b'), ('c')");
  {
    RecoverBoth copies(source);
    EXPECT_TRUE(mentions(copies.recover(), "applied the WAL")) << "the control case";
  }
  sqlite3_vfs host_vfs = *sqlite3_vfs_find("unix");
  host_vfs.zName = "host-default";
  ASSERT_EQ(sqlite3_vfs_register(&host_vfs, 1), SQLITE_OK);
  RecoverBoth copies(source);
  const auto log = copies.recover();
  sqlite3_vfs_unregister(&host_vfs);
  sqlite3_close(owner);
  EXPECT_FALSE(mentions(log, "applied the WAL"));
  EXPECT_EQ(query_int(copies.ours(), "SELECT count(*) FROM t"), 3);
  EXPECT_TRUE(read_file(copies.ours()) == read_file(copies.theirs())) << "the files differ";
}

}  // namespace
}  // namespace sqlite_backup::testing
