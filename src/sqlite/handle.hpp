// RAII over the SQLite C API, and the one place where result codes are classified.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "sqlite/long_path.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace sqlite_backup {
enum class ErrorKind;
}

namespace sqlite_backup::sql {

// As SQLite's own backup.c decides: only BUSY and LOCKED mean "try again later";
// every other non-OK result is final.
[[nodiscard]] bool is_retryable(int result) noexcept;

// Whether a result is a failure to write (a full disk, a read-only file or folder, an I/O
// error while writing, syncing, truncating or deleting): where SQLite reads one file and
// writes another, as its backup API does, these are the written file's.
[[nodiscard]] bool is_write_failure(int result) noexcept;

// What a final SQLite result means for the caller: a bad database (NOTADB, CORRUPT, ...),
// an I/O problem (FULL, IOERR, CANTOPEN, PERM, READONLY), or SQLite refusing otherwise.
[[nodiscard]] ErrorKind classify(int result) noexcept;

// The first column of the first row of `sql` on `db` (a PRAGMA, say), or 0 where it cannot
// be read: for what is only reported, or looked at while another error is on its way out.
[[nodiscard]] std::int64_t query_int_or_zero(sqlite3* db, const char* sql) noexcept;

// Throws SqliteBackupError "<operation> <path>: <sqlite message> (<code name>)".
[[noreturn]] void throw_result(int result, sqlite3* db, std::string_view operation,
                               const std::filesystem::path& path);

class Database {
 public:
  // Opens `filename` (a file: URI when flags contain SQLITE_OPEN_URI). The handle is owned
  // before the result is checked: SQLite allocates one even when the open fails.
  Database(const std::string& filename, int flags, const std::string& vfs,
           std::filesystem::path path_for_errors);
  // Opens `file` (see openable_file(); flags must contain SQLITE_OPEN_URI) and keeps its
  // folder descriptor until the connection is closed. A failure to open names the file
  // (a staged copy that cannot be opened is a problem of where it is staged, which the
  // caller may name as the destination it becomes); later errors name `path_for_errors`.
  Database(OpenableFile file, int flags, std::filesystem::path path_for_errors);
  Database(Database&& other) noexcept;
  Database& operator=(Database&&) = delete;
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  ~Database();

  [[nodiscard]] sqlite3* get() const noexcept { return db_; }
  // Gives up ownership (the caller closes the handle). Not for a connection opened through
  // a folder descriptor (its name would stop working when this object goes).
  [[nodiscard]] sqlite3* release() noexcept;
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

  void exec(const std::string& sql, std::string_view operation);
  // First column of the first row, as text ("" when there is no row).
  std::string query_text(const std::string& sql, std::string_view operation);
  std::int64_t query_int(const std::string& sql, std::string_view operation);
  void set_busy_timeout(int milliseconds);

  // Closes now and reports a failure (the destructor cannot).
  void close();

 private:
  void open(const std::string& filename, int flags, const std::string& vfs,
            const std::filesystem::path& opened);

  sqlite3* db_ = nullptr;
  std::filesystem::path path_;
  io::UniqueFd folder_;  // declared after db_: closed only after the connection
};

class Statement {
 public:
  Statement(Database& db, const std::string& sql, std::string_view operation);
  // On a handle owned elsewhere (a caller's connection); errors name `path_for_errors`.
  Statement(sqlite3* db, const std::string& sql, std::string_view operation,
            std::filesystem::path path_for_errors);
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement(Statement&&) = delete;
  Statement& operator=(Statement&&) = delete;
  ~Statement();
  // true: a row is ready; false: done. Throws on error.
  bool step();
  [[nodiscard]] std::string column_text(int column) const;
  [[nodiscard]] std::int64_t column_int(int column) const;

 private:
  sqlite3* db_;
  std::filesystem::path path_;
  sqlite3_stmt* stmt_ = nullptr;
  std::string operation_;
};

}  // namespace sqlite_backup::sql
