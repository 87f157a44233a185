// Stage 5 of the pipeline, for memory destinations: handing the snapshot to a connection (a
// new one the caller gets, or the caller's own). One read and sqlite3_deserialize where it
// can; SQLite's online backup API where the caller asked for what only it gives.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <sqlite_backup/sqlite_backup.hpp>

#include "io/sqlite_memory.hpp"
#include "sqlite/handle.hpp"

namespace sqlite_backup::deliver {

// What delivery needs of the caller's Options (sqlite_backup.cpp builds it).
struct Settings {
  ConnectOptions connect{};      // how SQLite opens a copy (the reference's connect kwargs)
  BackupOptions backup{};        // pages per step, progress, schema, pause (backup-API copies)
  Verify verify = Verify::none;  // the integrity check of the result
  const std::atomic<bool>* cancel = nullptr;
  std::function<void(const CopyProgress&)> on_progress{};  // bytes of backup-API copies
};

// Whether the caller asked for anything only the backup API gives (steps of some pages, a
// progress callback, another schema); otherwise a memory destination is loaded in one read.
bool wants_backup_api(const BackupOptions& backup) noexcept;

// The largest source (database and WAL) loaded into memory as one image (sqlite3_deserialize).
// Such a database lives in one block of memory, which SQLite 3.40's allocator caps at about
// 2 GiB, so its connection cannot grow past that, where a plain ":memory:" database (the
// reference's) grows page by page without a limit; and a source past it cannot be loaded so
// at all. Larger sources are copied into the connection through the backup API instead,
// unbounded but many times slower (a 1.1 GB source took 5.8 s), so the line is drawn to
// leave an image at least 0.5 GiB to grow.
inline constexpr std::uint64_t kLargestMemoryImage = std::uint64_t{3} << 29;  // 1.5 GiB
// How far an image may grow (SQLITE_FCNTL_SIZE_LIMIT): just under SQLite 3.40's largest block.
inline constexpr std::int64_t kLargestMemoryGrowth = 0x7fff0000;

// Whether a memory destination of a source of `source_bytes` is loaded as one image: not
// where the caller wants the backup API, nor past kLargestMemoryImage.
bool loads_as_image(const BackupOptions& backup, std::uint64_t source_bytes) noexcept;

// Copies `from` into the connection `to` with SQLite's online backup API, as BackupOptions
// say (pages per step, progress, schema name, pause when the source is busy). A source that
// stays busy longer than settings.connect.busy_timeout ends in SqliteBackupError. Errors name
// `from`'s path, but a failure to write (sql::is_write_failure) names `destination`, the
// file `to` writes, when one is given (a full disk is the destination's).
void backup_api_copy(sql::Database& from, sqlite3* to, const Settings& settings,
                     const std::filesystem::path& destination = {});

// Replaces the main database of `target` (a connection the caller owns) with a copy of `from`
// through the backup API, then runs settings.verify on it. Errors name `from`'s path.
void copy_into(sql::Database& from, sqlite3* target, const Settings& settings);

// Replaces the main database of `target` with the (recovered, self-contained) database file
// `staged`, read in one pass into memory SQLite owns and handed over with sqlite3_deserialize:
// one copy of the bytes, where the backup API would copy page by page through two page
// caches. Then runs settings.verify on it. Errors name `source`.
void load_into(sqlite3* target, const std::filesystem::path& staged, const Settings& settings,
               const std::filesystem::path& source);

// Hands a database image already recovered in memory (snapshot::copy_live_wal_set_into_memory
// applied its WAL there) to `target` with sqlite3_deserialize (SQLite owns the memory from
// then on, also when this fails), then reads it (the schema) and verifies it as
// settings.verify says. Errors name `source`.
void load_image_into(sqlite3* target, io::SqliteMemory database, const Settings& settings,
                     const std::filesystem::path& source);

}  // namespace sqlite_backup::deliver
