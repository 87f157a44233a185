#include "live_db.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <system_error>

namespace sqlite_backup_bench {
namespace {

constexpr std::uint64_t kPageSize = 4096;
constexpr std::uint64_t kRowBytes = 1000;  // four rows to a 4 KiB page

[[noreturn]] void fail(sqlite3* db, const std::string& operation,
                       const std::filesystem::path& path) {
  throw std::runtime_error(operation + " on " + path.string() + ": " +
                           (db != nullptr ? sqlite3_errmsg(db) : "out of memory"));
}

void exec(sqlite3* db, const std::string& sql, const std::filesystem::path& path) {
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    fail(db, "bench: executing \"" + sql + "\"", path);
  }
}

std::int64_t query_int(sqlite3* db, const std::string& sql, const std::filesystem::path& path) {
  sqlite3_stmt* statement = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &statement, nullptr) != SQLITE_OK) {
    fail(db, "bench: preparing \"" + sql + "\"", path);
  }
  std::int64_t value = 0;
  const int step = sqlite3_step(statement);
  if (step == SQLITE_ROW) value = sqlite3_column_int64(statement, 0);
  sqlite3_finalize(statement);
  if (step != SQLITE_ROW) fail(db, "bench: querying \"" + sql + "\"", path);
  return value;
}

sqlite3* open_database(const std::filesystem::path& path, int flags) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    const std::string message = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    throw std::runtime_error("bench: opening " + path.string() + ": " + message);
  }
  return db;
}

std::string insert_rows_sql(std::uint64_t rows) {
  return "INSERT INTO t(v) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
         "WHERE i < " +
         std::to_string(rows) + ") SELECT randomblob(" + std::to_string(kRowBytes) + ") FROM n";
}

}  // namespace

std::uint64_t wal_size(const std::filesystem::path& database) {
  std::error_code error;
  const auto size = std::filesystem::file_size(database.string() + "-wal", error);
  return error ? 0 : size;
}

void make_database(const std::filesystem::path& database, std::uint64_t bytes) {
  if (std::filesystem::exists(database)) {
    throw std::runtime_error("bench: making " + database.string() + ": it already exists");
  }
  sqlite3* db = open_database(database, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  try {
    // No journal while filling: nothing here needs to survive a crash, and it halves the writes.
    exec(db,
         "PRAGMA page_size = " + std::to_string(kPageSize) +
             "; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
             "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)",
         database);
    // Batches of about 1/64 of the target keep the overshoot small at every size.
    const std::uint64_t rows_per_batch =
        std::clamp<std::uint64_t>(bytes / kPageSize / 16, 16, 4096);
    const std::string insert = insert_rows_sql(rows_per_batch);
    while (static_cast<std::uint64_t>(query_int(db, "PRAGMA page_count", database)) * kPageSize <
           bytes) {
      exec(db, insert, database);
    }
    exec(db, "PRAGMA journal_mode = WAL", database);
  } catch (...) {
    sqlite3_close(db);
    throw;
  }
  if (sqlite3_close(db) != SQLITE_OK) fail(db, "bench: closing", database);
}

WalOwner::WalOwner(const std::filesystem::path& database)
    : database_(database), db_(open_database(database, SQLITE_OPEN_READWRITE)) {
  try {
    // synchronous=OFF only skips fsyncs; the frames in the -wal are the same.
    exec(db_, "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; PRAGMA synchronous = OFF",
         database_);
  } catch (...) {
    sqlite3_close(db_);
    throw;
  }
}

WalOwner::~WalOwner() { sqlite3_close(db_); }

std::uint64_t WalOwner::grow_wal_to(std::uint64_t bytes) {
  // Each transaction: half new rows (pages past the main file's end), half rewritten existing
  // rows (pages the WAL overrides in the main file); up to 1 MiB, and small enough for the
  // WAL to overshoot its target by no more than about a tenth.
  const std::uint64_t rows_per_half = std::clamp<std::uint64_t>(bytes / kRowBytes / 20, 8, 512);
  const std::string insert = insert_rows_sql(rows_per_half);
  const std::string update =
      "UPDATE t SET v = randomblob(" + std::to_string(kRowBytes) +
      ") WHERE id IN (SELECT 1 + abs(random()) % (SELECT max(id) FROM t) FROM t LIMIT " +
      std::to_string(rows_per_half) + ")";
  std::uint64_t size = wal_size(database_);
  while (size < bytes) {
    exec(db_, "BEGIN; " + insert + "; " + update + "; COMMIT", database_);
    size = wal_size(database_);
  }
  return size;
}

}  // namespace sqlite_backup_bench
