// Stage 2 for memory destinations of databases with a live WAL (what browsers and most apps
// keep): the database is read straight into memory SQLite will own instead of into a staged
// file that would then be read back, and the WAL is staged beside where the database would
// be. Judged by the same rules, in the same order, as copy_consistent_set(): the set is
// looked at before the first byte and after the last, the database is read before the WAL.
#pragma once

#include <filesystem>
#include <optional>

#include "discover/database_files.hpp"
#include "io/sqlite_memory.hpp"
#include "snapshot/copy_set.hpp"

namespace sqlite_backup::snapshot {

struct MemoryCopy {
  io::SqliteMemory database;  // the database file's bytes as read
  std::uint64_t bytes = 0;    // database and WAL bytes read
};

// One attempt. Returns nullopt, having left nothing staged, when the source is not one this
// path takes (no live WAL at the first look, a -journal beside it, a caller's copy function)
// or when the attempt is not proven consistent: the caller then takes the general path,
// which retries. Never writes to or locks the source. Throws SqliteBackupError for I/O
// errors and cancellation.
std::optional<MemoryCopy> copy_live_wal_set_into_memory(const discover::DatabaseFiles& source,
                                                        const std::filesystem::path& staged_wal,
                                                        const Settings& settings);

}  // namespace sqlite_backup::snapshot
