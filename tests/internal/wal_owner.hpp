// An in-process owner of a WAL database for the internal tests: a SQLite connection that
// stays open with automatic checkpoints off, as a live owner's would.
#pragma once

#include <sqlite3.h>

#include <filesystem>
#include <stdexcept>
#include <string>

namespace sqlite_backup::testing {

// An open connection, as the owner of the database holds it: with automatic checkpoints
// off, and never closed before the test has taken its copies (closing would checkpoint).
class WalOwner {
 public:
  WalOwner(const std::filesystem::path& database, int page_size,
           const std::string& extra_pragmas = "") {
    if (sqlite3_open(database.c_str(), &db_) != SQLITE_OK) {
      throw std::runtime_error("cannot open " + database.string());
    }
    exec("PRAGMA page_size=" + std::to_string(page_size) + ";" + extra_pragmas +
         "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;"
         "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
  }
  WalOwner(const WalOwner&) = delete;
  WalOwner& operator=(const WalOwner&) = delete;
  ~WalOwner() { sqlite3_close(db_); }

  void exec(const std::string& sql) const {
    char* message = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
      const std::string why = message != nullptr ? message : "?";
      sqlite3_free(message);
      throw std::runtime_error(sql + ": " + why);
    }
  }
  [[nodiscard]] sqlite3* handle() const noexcept { return db_; }
  void insert(int rows, int bytes) const {
    exec("INSERT INTO t(v) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT " +
         std::to_string(rows) + ") SELECT randomblob(" + std::to_string(bytes) + ") FROM n");
  }

 private:
  sqlite3* db_ = nullptr;
};

}  // namespace sqlite_backup::testing
