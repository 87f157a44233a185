// RAII over SQLite's online backup API, beside sql::Database.
#pragma once

#include <filesystem>
#include <string>

#include "sqlite/handle.hpp"

struct sqlite3_backup;

namespace sqlite_backup::sql {

// Owns one sqlite3_backup copying `from`'s schema into the main database of `to`.
// finish() releases it and reports the final result; the destructor finishes it silently.
class Backup {
 public:
  // Throws SqliteBackupError naming `from`'s path when SQLite refuses to start (the target
  // busy, or in a transaction, say).
  Backup(sqlite3* to, Database& from, const std::string& schema);
  Backup(const Backup&) = delete;
  Backup& operator=(const Backup&) = delete;
  Backup(Backup&&) = delete;
  Backup& operator=(Backup&&) = delete;
  ~Backup();

  [[nodiscard]] sqlite3_backup* get() const noexcept { return handle_; }
  // sqlite3_backup_finish()'s result; afterwards get() is null.
  int finish() noexcept;

 private:
  sqlite3_backup* handle_;
};

}  // namespace sqlite_backup::sql
