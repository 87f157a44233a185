#include "sqlite/handle.hpp"

#include <sqlite3.h>

#include <cerrno>
#include <utility>

#include "error_internal.hpp"

namespace sqlite_backup::sql {

bool is_retryable(int result) noexcept {
  const int primary = result & 0xff;
  return primary == SQLITE_BUSY || primary == SQLITE_LOCKED;
}

bool is_write_failure(int result) noexcept {
  switch (result & 0xff) {
    case SQLITE_FULL:
      return true;
    case SQLITE_READONLY:
      // Not the other READONLY codes: ROLLBACK, RECOVERY, CANTINIT and CANTLOCK are a
      // read-only connection meeting a hot journal or a WAL it cannot recover, which is
      // what the file being read does.
      return result == SQLITE_READONLY || result == SQLITE_READONLY_DBMOVED ||
             result == SQLITE_READONLY_DIRECTORY;
    case SQLITE_IOERR:
      return result == SQLITE_IOERR_WRITE || result == SQLITE_IOERR_FSYNC ||
             result == SQLITE_IOERR_DIR_FSYNC || result == SQLITE_IOERR_TRUNCATE ||
             result == SQLITE_IOERR_DELETE;
    default:
      return false;
  }
}

ErrorKind classify(int result) noexcept {
  switch (result & 0xff) {
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
    case SQLITE_FORMAT:
    case SQLITE_EMPTY:
      return ErrorKind::invalid_source;
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_NOLFS:
      return ErrorKind::io;
    case SQLITE_INTERRUPT:
      return ErrorKind::cancelled;
    default:
      return ErrorKind::sqlite;
  }
}

namespace {

// The errno behind an SQLite result, where there is one. SQLite records the VFS's errno
// (sqlite3_system_errno) only for SQLITE_IOERR_* and SQLITE_CANTOPEN, and never clears it,
// so it is read only for those. The unix VFS reports SQLITE_FULL only for ENOSPC (or a short
// write) on a file; for an in-memory database it is a size limit, with no errno.
int system_errno_of(int result, sqlite3* db) noexcept {
  if (db == nullptr) return 0;
  switch (result & 0xff) {
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
      return sqlite3_system_errno(db);
    case SQLITE_FULL: {
      const char* file = sqlite3_db_filename(db, "main");
      return file != nullptr && *file != '\0' ? ENOSPC : 0;
    }
    default:
      return 0;
  }
}

}  // namespace

void throw_result(int result, sqlite3* db, std::string_view operation,
                  const std::filesystem::path& path) {
  // The connection's message is more specific than sqlite3_errstr() when it is about this result.
  const char* message = (db != nullptr && sqlite3_errcode(db) == result) ? sqlite3_errmsg(db)
                                                                         : sqlite3_errstr(result);
  const ErrorCause cause{.system_errno = system_errno_of(result, db), .sqlite_result = result};
  detail::throw_error(cause, classify(result), path, "{} {}: {} (SQLite error {})", operation,
                      detail::quoted(path), message, result);
}

Database::Database(const std::string& filename, int flags, const std::string& vfs,
                   std::filesystem::path path_for_errors)
    : path_(std::move(path_for_errors)) {
  open(filename, flags, vfs, path_);
}

Database::Database(OpenableFile file, int flags, std::filesystem::path path_for_errors)
    : path_(std::move(path_for_errors)), folder_(std::move(file.folder)) {
  open(file.uri, flags, file.vfs, file.path);
}

void Database::open(const std::string& filename, int flags, const std::string& vfs,
                    const std::filesystem::path& opened) {
  const int rc =
      sqlite3_open_v2(filename.c_str(), &db_, flags, vfs.empty() ? nullptr : vfs.c_str());
  if (rc != SQLITE_OK) {
    // Copy the message out before the destructor closes the handle that holds it.
    const int result = db_ != nullptr ? sqlite3_extended_errcode(db_) : rc;
    std::string message = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    const ErrorCause cause{.system_errno = system_errno_of(result, db_), .sqlite_result = result};
    sqlite3_close_v2(std::exchange(db_, nullptr));
    detail::throw_error(cause, classify(result), opened,
                        "cannot open {} with SQLite: {} (SQLite error {})", detail::quoted(opened),
                        message, result);
  }
  sqlite3_extended_result_codes(db_, 1);
}

Database::Database(Database&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)),
      path_(std::move(other.path_)),
      folder_(std::move(other.folder_)) {}

Database::~Database() {
  if (db_ != nullptr) sqlite3_close_v2(db_);
}

sqlite3* Database::release() noexcept { return std::exchange(db_, nullptr); }

void Database::close() {
  if (db_ == nullptr) return;
  const int rc = sqlite3_close(db_);
  if (rc != SQLITE_OK) throw_result(rc, db_, "cannot close", path_);
  db_ = nullptr;
}

void Database::set_busy_timeout(int milliseconds) { sqlite3_busy_timeout(db_, milliseconds); }

void Database::exec(const std::string& sql, std::string_view operation) {
  char* error = nullptr;
  const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
  sqlite3_free(error);  // the connection still holds the same message for throw_result
  if (rc != SQLITE_OK) throw_result(sqlite3_extended_errcode(db_), db_, operation, path_);
}

std::string Database::query_text(const std::string& sql, std::string_view operation) {
  Statement statement(*this, sql, operation);
  return statement.step() ? statement.column_text(0) : std::string();
}

std::int64_t query_int_or_zero(sqlite3* db, const char* sql) noexcept {
  sqlite3_stmt* statement = nullptr;
  std::int64_t value = 0;
  if (sqlite3_prepare_v2(db, sql, -1, &statement, nullptr) == SQLITE_OK &&
      sqlite3_step(statement) == SQLITE_ROW) {
    value = sqlite3_column_int64(statement, 0);
  }
  sqlite3_finalize(statement);
  return value;
}

std::int64_t Database::query_int(const std::string& sql, std::string_view operation) {
  Statement statement(*this, sql, operation);
  return statement.step() ? statement.column_int(0) : 0;
}

Statement::Statement(Database& db, const std::string& sql, std::string_view operation)
    : Statement(db.get(), sql, operation, db.path()) {}

Statement::Statement(sqlite3* db, const std::string& sql, std::string_view operation,
                     std::filesystem::path path_for_errors)
    : db_(db), path_(std::move(path_for_errors)), operation_(operation) {
  const int rc = sqlite3_prepare_v2(db, sql.c_str(), static_cast<int>(sql.size()), &stmt_, nullptr);
  if (rc != SQLITE_OK) {
    throw_result(sqlite3_extended_errcode(db), db, operation_, path_);
  }
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

bool Statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  throw_result(sqlite3_extended_errcode(db_), db_, operation_, path_);
}

std::string Statement::column_text(int column) const {
  // SQLite hands text out as unsigned char (UTF-8 bytes); std::string reads the same bytes.
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast)
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
  return text != nullptr ? std::string(text) : std::string();
}

std::int64_t Statement::column_int(int column) const { return sqlite3_column_int64(stmt_, column); }

}  // namespace sqlite_backup::sql
