// Stage 4 of the pipeline: turning a validated copy into the finished database, and handing
// it to a connection (memory destinations: one read and sqlite3_deserialize, or the backup
// API when its options are asked for; the live mode without a copy).
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <sqlite_backup/sqlite_backup.hpp>
#include <vector>

#include "io/sqlite_memory.hpp"
#include "sqlite/handle.hpp"

namespace sqlite_backup::finalize {

// What this stage needs of the caller's Options, and nothing more: the entry points build it
// (sqlite_backup.cpp, finalize_settings()) and set each field for the step at hand.
struct Settings {
  ConnectOptions connect{};      // how SQLite opens the copy (the reference's connect kwargs)
  BackupOptions backup{};        // pages per step, progress, schema, pause (backup-API copies)
  Verify verify = Verify::none;  // the integrity check of the result
  bool wal_checkpoint = true;    // the reference's wal_checkpoint(TRUNCATE) on the result
  const std::atomic<bool>* cancel = nullptr;
  std::function<void(const CopyProgress&)> on_progress{};  // bytes of backup-API copies
};

struct DatabaseFacts {
  std::uint64_t pages = 0;
  int page_size = 0;
};

// Applies the staged copy's WAL (apply_wal(); SQLite replays it where that declines), then
// opens the copy with SQLite, which rolls back a hot journal (inside the private folder:
// the source is not involved), switches it to
// journal_mode=DELETE so that it is one self-contained file, runs the reference's
// wal_checkpoint(TRUNCATE) when asked, and the integrity check of settings.verify. Afterwards
// the folder holds the database file only. Errors name `source` (what the user knows), not
// the staged path; failed writes name `destination_for_errors` (where a full disk is), or
// the staged path when there is none (memory destinations).
DatabaseFacts recover_in_place(const std::filesystem::path& staged, const Settings& settings,
                               const std::filesystem::path& source,
                               const std::filesystem::path& destination_for_errors = {});

// Rolls the staged copy back through `journal` (a transaction that committed while it was
// copied): the journal is moved beside the copy as its -journal, and SQLite, opening the
// copy, finds it hot and plays it back (checksums, original size), then deletes it. SQLite
// also deletes, silently, a journal it will not play back, so success is checked on the
// result: page 1 must then show `expected_change_counter`, the transaction's original.
// Errors name `source`.
void roll_back(const std::filesystem::path& staged, const std::filesystem::path& journal,
               std::uint32_t expected_change_counter, const Settings& settings,
               const std::filesystem::path& source,
               const std::filesystem::path& destination_for_errors = {});

// Opens a database for reading as the caller's connect options say (URI-escaped path, of
// any length: see sql::openable_file). Errors name `source`, but a failure to open names
// `open_path_for_errors` when given.
sql::Database open_for_reading(const std::filesystem::path& database, const ConnectOptions& connect,
                               bool read_only, const std::filesystem::path& source,
                               const std::filesystem::path& open_path_for_errors = {});

// Copies `from` into the connection `to` with SQLite's online backup API, as BackupOptions
// say (pages per step, progress, schema name, pause when the source is busy). A source that
// stays busy longer than settings.connect.busy_timeout ends in SqliteBackupError. Errors about the
// target name `to_for_errors` (or the source's path when empty).
void backup_api_copy(sql::Database& from, sqlite3* to, const Settings& settings,
                     const std::filesystem::path& to_for_errors = {});

// Replaces the main database of `target` (a connection the caller owns) with a copy of `from`
// through the backup API, then runs settings.verify on it. Errors name `source`.
void copy_into(sql::Database& from, sqlite3* target, const Settings& settings,
               const std::filesystem::path& source);

// Whether the caller asked for anything only the backup API gives (steps of some pages, a
// progress callback, another schema); otherwise a memory destination is loaded in one read.
bool wants_backup_api(const BackupOptions& backup) noexcept;

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

// Whether SQLite reads database files as the plain files of the documented format: the
// caller named no VFS and no URI parameters, and the process's default VFS is SQLite's
// built-in one (a host application may have made its own the default: page encryption or
// checksums change the bytes on disk). Only then may a WAL be applied by us.
bool sqlite_reads_plain_files(const ConnectOptions& connect);

}  // namespace sqlite_backup::finalize
