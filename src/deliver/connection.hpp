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

// How far an image in heap memory may grow (SQLITE_FCNTL_SIZE_LIMIT): just under SQLite 3.40's
// largest block, on a 64 KiB boundary. (An image in a memory file grows within its mapping's
// room.)
inline constexpr auto kLargestMemoryGrowth =
    static_cast<std::int64_t>(io::kLargestHeapBlock & ~std::uint64_t{0xffff});
static_assert(kLargestMemoryGrowth == 0x7fff0000);

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
// caches. Then runs settings.verify on it. Returns false, having done nothing, when no memory
// can hold it as one image (io::SqliteMemory::reserve_image(): past 1.5 GiB only a memory
// file with room to grow does): the caller copies it with copy_into() instead. Errors name
// `source`.
[[nodiscard]] bool load_into(sqlite3* target, const std::filesystem::path& staged,
                             const Settings& settings, const std::filesystem::path& source);

// Hands a database image already recovered in memory (snapshot::copy_live_wal_set_into_memory
// applied its WAL there) to `target` with sqlite3_deserialize (SQLite owns the memory from
// then on, also when this fails), then reads it (the schema) and verifies it as
// settings.verify says. Errors name `source`.
void load_image_into(sqlite3* target, io::SqliteMemory database, const Settings& settings,
                     const std::filesystem::path& source);

}  // namespace sqlite_backup::deliver
