#include <sqlite3.h>

#include <sqlite_backup/sqlite_backup.hpp>
#include <utility>

namespace sqlite_backup {

SqliteBackupError::SqliteBackupError(ErrorKind kind, const std::string& message,
                                     std::filesystem::path path)
    : std::runtime_error(message), kind_(kind), path_(std::move(path)) {}

Connection& Connection::operator=(Connection&& other) noexcept {
  if (this != &other) {
    Connection old(std::exchange(db_, other.release()));
  }
  return *this;
}

Connection::~Connection() {
  // close_v2 never fails for a valid handle: unfinalized statements only defer the close.
  if (db_ != nullptr) sqlite3_close_v2(db_);
}

sqlite3* Connection::release() noexcept { return std::exchange(db_, nullptr); }

}  // namespace sqlite_backup

#include "error_internal.hpp"

namespace sqlite_backup::detail {

std::string quoted(const std::filesystem::path& path) {
  const std::string& text = path.native();
  const bool plain = !text.empty() && text.find_first_of(" \t\n'\"\\") == std::string::npos;
  if (plain) return text;
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') {
      out += "'\\''";
    } else if (c == '\n') {
      out += "\\n";  // every error is one line, whatever the file is called
    } else {
      out += c;
    }
  }
  return out + "'";
}

}  // namespace sqlite_backup::detail
