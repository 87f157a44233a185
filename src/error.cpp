#include <fmt/format.h>
#include <sqlite3.h>

#include <sqlite_backup/sqlite_backup.hpp>
#include <stdexcept>
#include <string_view>
#include <utility>

namespace sqlite_backup {

SqliteBackupError::SqliteBackupError(ErrorKind kind, const std::string& message,
                                     std::filesystem::path path, ErrorCause cause)
    : std::runtime_error(message), kind_(kind), path_(std::move(path)), cause_(cause) {}

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

#include <algorithm>

#include "error_internal.hpp"

namespace sqlite_backup::detail {

std::string quoted(const std::filesystem::path& path) {
  const std::string& text = path.native();
  // (NUL among them: what() is a C string, and a NUL would end the message there.)
  constexpr std::string_view kNeedQuotes(" \t\n'\"\\\0", 7);
  const bool plain = !text.empty() && text.find_first_of(kNeedQuotes) == std::string::npos;
  if (plain) return text;
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') {
      out += "'\\''";
    } else if (c == '\n') {
      out += "\\n";  // every error is one line, whatever the file is called
    } else if (c == '\0') {
      out += "\\0";
    } else {
      out += c;
    }
  }
  return out + "'";
}

void refuse_a_nul_in(const std::filesystem::path& path, const char* operation, const char* role) {
  if (path.native().find('\0') != std::string::npos) {
    throw std::invalid_argument(fmt::format("{}: {} {} holds a NUL byte, which no file name has",
                                            operation, role, quoted(path)));
  }
}

bool is_inside(const std::filesystem::path& path, const std::filesystem::path& folder) {
  if (path.empty() || folder.empty()) return false;
  const std::filesystem::path file = path.lexically_normal();
  const std::filesystem::path within = folder.lexically_normal();
  auto [in_folder, in_file] = std::mismatch(within.begin(), within.end(), file.begin(), file.end());
  // (A trailing separator leaves an empty last element.)
  return (in_folder == within.end() || in_folder->empty()) && in_file != file.end();
}

void rethrow_naming(const SqliteBackupError& error, const std::filesystem::path& shown) {
  // Messages name their file as quoted() writes it (throw_error's callers all do): that is
  // the text to replace, wherever the message has it.
  std::string message = error.what();
  const std::string from = quoted(error.path());
  const std::string to = quoted(shown);
  for (std::size_t at = message.find(from); at != std::string::npos;
       at = message.find(from, at + to.size())) {
    message.replace(at, from.size(), to);
  }
  throw SqliteBackupError(error.kind(), message, shown, error.cause());
}

}  // namespace sqlite_backup::detail
