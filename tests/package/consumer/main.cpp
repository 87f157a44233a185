// A consumer of the installed (or add_subdirectory'd) library: creates a small database,
// backs it up to a file and into memory, and checks both copies hold its rows.
// Exits 0 on success; prints what differed otherwise.
#include <sqlite3.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <sqlite_backup/sqlite_backup.hpp>
#include <string>

namespace {

constexpr int kRows = 100;

void check_sqlite(int result, sqlite3* db, const char* operation) {
  if (result != SQLITE_OK) {
    std::fprintf(stderr, "consumer: %s failed: %s\n", operation, db ? sqlite3_errmsg(db) : "?");
    std::exit(1);
  }
}

int count_rows(sqlite3* db) {
  sqlite3_stmt* statement = nullptr;
  check_sqlite(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &statement, nullptr), db,
               "prepare count(*)");
  const int rows = sqlite3_step(statement) == SQLITE_ROW ? sqlite3_column_int(statement, 0) : -1;
  sqlite3_finalize(statement);
  return rows;
}

}  // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  const fs::path folder =
      argc > 1 ? fs::path(argv[1]) : fs::temp_directory_path() / "sqlite_backup_consumer";
  fs::remove_all(folder);
  fs::create_directories(folder);
  const fs::path source = folder / "source.sqlite";
  const fs::path destination = folder / "backup.sqlite";

  sqlite3* db = nullptr;
  check_sqlite(sqlite3_open(source.c_str(), &db), db, "open the source");
  const std::string fill =
      "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < " +
      std::to_string(kRows) + ") INSERT INTO t(v) SELECT 'row ' || i FROM n;";
  check_sqlite(sqlite3_exec(db, fill.c_str(), nullptr, nullptr, nullptr), db, "fill the source");

  // The source stays open (its rows may still be in the -wal) while we back it up.
  sqlite_backup::Report report;
  sqlite_backup::sqlite_backup(source, destination, {.copy_retry = 5, .report = &report});
  std::optional<sqlite_backup::Connection> memory = sqlite_backup::sqlite_backup(source);
  sqlite3_close(db);

  sqlite3* copy = nullptr;
  check_sqlite(sqlite3_open_v2(destination.c_str(), &copy, SQLITE_OPEN_READONLY, nullptr), copy,
               "open the backup");
  const int file_rows = count_rows(copy);
  sqlite3_close(copy);
  const int memory_rows = memory && *memory ? count_rows(memory->get()) : -1;

  std::printf(
      "consumer: backup file has %d rows, memory copy %d rows (%d expected), %d attempt(s)\n",
      file_rows, memory_rows, kRows, report.attempts);
  fs::remove_all(folder);
  return file_rows == kRows && memory_rows == kRows ? 0 : 1;
}
