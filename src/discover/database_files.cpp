#include "discover/database_files.hpp"

#include <sqlite_backup/sqlite_backup.hpp>
#include <system_error>

#include "error_internal.hpp"

namespace sqlite_backup {

namespace discover {

DatabaseFiles::DatabaseFiles(const std::filesystem::path& database_path)
    : database(database_path),
      wal(database_path.native() + "-wal"),
      journal(database_path.native() + "-journal") {}

}  // namespace discover

std::vector<std::filesystem::path> glob_database_files(const std::filesystem::path& source) {
  detail::refuse_a_nul_in(source, "glob_database_files", "source");
  const discover::DatabaseFiles files(source);
  std::vector<std::filesystem::path> found{files.database};
  for (const auto& side : {files.wal, files.journal}) {
    std::error_code error;
    if (std::filesystem::exists(side, error)) found.push_back(side);
  }
  return found;
}

}  // namespace sqlite_backup
