// Stage 1 of the pipeline: which files make up a database.
#pragma once

#include <filesystem>

namespace sqlite_backup::discover {

// The names SQLite uses beside a database. "-shm" is deliberately absent: it is a cache
// of the WAL's index that SQLite rebuilds, and it can only be read consistently under
// the owner's locks, which we never take.
struct DatabaseFiles {
  std::filesystem::path database;
  std::filesystem::path wal;      // database + "-wal"
  std::filesystem::path journal;  // database + "-journal"

  explicit DatabaseFiles(const std::filesystem::path& database_path);
};

}  // namespace sqlite_backup::discover
