#include "sqlite/connect.hpp"

#include <sqlite3.h>

#include <string>
#include <string_view>

#include "error_internal.hpp"
#include "sqlite/long_path.hpp"

namespace sqlite_backup::sql {

Database open_for_reading(const std::filesystem::path& database, const ConnectOptions& connect,
                          bool read_only, const std::filesystem::path& source) {
  std::string query = read_only ? "mode=ro" : "mode=rw";
  if (!connect.uri_parameters.empty()) query += "&" + connect.uri_parameters;
  const int flags = (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_URI |
                    connect.open_flags;
  Database db(openable_file(database, query, connect.vfs), flags, source);
  db.set_busy_timeout(static_cast<int>(connect.busy_timeout.count()));
  return db;
}

bool sqlite_reads_plain_files(const ConnectOptions& connect) {
  if (!connect.vfs.empty() || !connect.uri_parameters.empty()) return false;
  const sqlite3_vfs* vfs = sqlite3_vfs_find(nullptr);
  return vfs != nullptr && vfs->zName != nullptr && std::string_view(vfs->zName) == "unix";
}

void verify(sqlite3* db, Verify verify, const std::filesystem::path& source) {
  if (verify == Verify::none) return;
  const char* pragma =
      verify == Verify::quick ? "PRAGMA quick_check(10)" : "PRAGMA integrity_check(10)";
  const char* check_name = verify == Verify::quick ? "quick_check" : "integrity_check";
  std::string problems;
  ErrorCause cause;  // SQLite's, when the check itself ran into the damage
  try {
    Statement check(db, pragma, "cannot verify the snapshot of", source);
    while (check.step()) {
      const std::string line = check.column_text(0);
      if (line == "ok") return;
      if (!problems.empty()) problems += "; ";
      problems += line;
    }
  } catch (const SqliteBackupError& error) {
    // Damage the check runs into (SQLite gives up with SQLITE_CORRUPT on a page it cannot
    // parse) is what the check is there to find, just as the damage it lists: both are a
    // failed verification. A copy SQLite could not open or recover at all failed earlier,
    // as an invalid source.
    if (error.kind() != ErrorKind::invalid_source) throw;
    problems = error.what();
    cause = error.cause();
  }
  detail::throw_error(cause, ErrorKind::verification_failed, source,
                      "verification ({}) of the snapshot of {} failed: {}", check_name,
                      detail::quoted(source), problems);
}

void allow_cancellation(sqlite3* db, const std::atomic<bool>* cancel) {
  if (cancel == nullptr) return;
  sqlite3_progress_handler(
      db, 10000,
      [](void* flag) -> int { return static_cast<const std::atomic<bool>*>(flag)->load() ? 1 : 0; },
      // SQLite's C API takes void*; the handler above only reads through it.
      // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast)
      const_cast<std::atomic<bool>*>(cancel));
}

CancellationHandler::CancellationHandler(sqlite3* db, const std::atomic<bool>* cancel) : db_(db) {
  if (cancel == nullptr) return;
  allow_cancellation(db_, cancel);
  installed_ = true;
}

CancellationHandler::~CancellationHandler() {
  if (installed_) sqlite3_progress_handler(db_, 0, nullptr, nullptr);
}

}  // namespace sqlite_backup::sql
