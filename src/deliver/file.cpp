#include "deliver/file.hpp"

#include <sqlite3.h>
#include <sys/stat.h>

#include <cstdio>

#include "error_internal.hpp"
#include "io/file.hpp"
#include "io/staging.hpp"
#include "sqlite/connect.hpp"
#include "sqlite/long_path.hpp"

namespace sqlite_backup::deliver {

void copy_file_through_backup_api(sql::Database& from, const std::filesystem::path& to,
                                  const Settings& settings) {
  sql::Database copy(sql::openable_file(to, "", ""),
                     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, to);
  backup_api_copy(from, copy.get(), settings, to);
  copy.close();
}

void rewrite_through_backup_api(const std::filesystem::path& staged,
                                const std::filesystem::path& source, const Settings& settings) {
  const std::filesystem::path through_api = staged.string() + ".backup-api";
  {
    sql::Database from = sql::open_for_reading(staged, settings.connect, true, source);
    copy_file_through_backup_api(from, through_api, settings);
    from.close();
  }
  if (::rename(through_api.c_str(), staged.c_str()) != 0) {
    io::throw_errno(errno, "cannot write", staged);
  }
}

void to_file(const std::filesystem::path& staged, const std::filesystem::path& source,
             const FileTarget& target, const std::atomic<bool>* cancel) {
  detail::throw_if_cancelled(cancel, source);
  // The source's read and write bits; where a database is replaced, no more than its own
  // either: the snapshot is never more readable than the source, nor than the file it
  // replaces (a backup made private stays private).
  const auto source_stat = io::stat_path(source);
  mode_t permissions = source_stat ? source_stat->mode & 0666 : 0600;
  const auto existing = io::stat_path(target.destination);
  if (existing && S_ISREG(existing->mode)) permissions &= existing->mode;
  io::commit_file(staged, target.destination, permissions, target.replace, target.durable);
}

}  // namespace sqlite_backup::deliver
