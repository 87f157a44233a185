#include "sqlite/backup.hpp"

#include <sqlite3.h>

#include <utility>

namespace sqlite_backup::sql {

Backup::Backup(sqlite3* to, Database& from, const std::string& schema)
    : handle_(sqlite3_backup_init(to, "main", from.get(), schema.c_str())) {
  if (handle_ == nullptr) {
    throw_result(sqlite3_extended_errcode(to), to, "cannot start the backup of", from.path());
  }
}

Backup::~Backup() {
  if (handle_ != nullptr) sqlite3_backup_finish(handle_);
}

int Backup::finish() noexcept { return sqlite3_backup_finish(std::exchange(handle_, nullptr)); }

}  // namespace sqlite_backup::sql
