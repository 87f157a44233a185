// Stage 2 for memory destinations of databases with a live WAL (what browsers and most apps
// keep): the database is read straight into memory SQLite will own, and the committed frames
// of the source's WAL are applied there as they are read (recover::apply_live_wal), so each
// byte of the result is written once and nothing is staged. Judged by the same rules, in the
// same order, as copy_consistent_set(): the set is looked at before the first byte and after
// the last, the database is read before the WAL.
#pragma once

#include <filesystem>
#include <optional>

#include "discover/database_files.hpp"
#include "io/sqlite_memory.hpp"
#include "snapshot/copy_set.hpp"

namespace sqlite_backup::snapshot {

struct MemoryCopy {
  // The snapshot, recovered: the database as read with the WAL's committed pages applied
  // and its header out of WAL mode (a self-contained rollback-mode database).
  io::SqliteMemory database;
  std::uint64_t bytes = 0;  // database and WAL bytes read
};

// One attempt. Returns nullopt when the source is not one this path takes (no live WAL at
// the first look, a -journal beside it, a caller's copy function, a WAL that only SQLite
// should replay, a source past 1.5 GiB, or growing past it during the read, and no memory
// file with room for it: see io::SqliteMemory::reserve_image()) or when the attempt is not proven
// consistent: the caller then takes the general path, which retries. Never writes to or locks the
// source, and writes no file. The caller must have checked that SQLite reads the files plainly
// (sql::sqlite_reads_plain_files). Throws SqliteBackupError for I/O errors and
// cancellation.
std::optional<MemoryCopy> copy_live_wal_set_into_memory(const discover::DatabaseFiles& source,
                                                        const Settings& settings);

}  // namespace sqlite_backup::snapshot
