// Connections as the caller's options make them: opened as ConnectOptions say, interruptible
// through Options::cancel, checked as Verify says. Shared by the stages that open databases
// (recover/, deliver/) and by the live mode.
#pragma once

#include <atomic>
#include <filesystem>
#include <sqlite_backup/sqlite_backup.hpp>

#include "sqlite/handle.hpp"

namespace sqlite_backup::sql {

// Opens `database` (read-only or read-write) as the caller's connect options say: their flags,
// VFS, busy timeout and URI parameters, the path URI-escaped and of any length (see
// openable_file). A failure to open names `database`; later errors name `source`.
Database open_for_reading(const std::filesystem::path& database, const ConnectOptions& connect,
                          bool read_only, const std::filesystem::path& source);

// Whether SQLite reads database files as the plain files of the documented format: the caller
// named no VFS and no URI parameters, and the process's default VFS is SQLite's built-in one
// (a host application may have made its own the default: page encryption or checksums change
// the bytes on disk). Only then may a WAL be applied by us, or a file read without SQLite.
bool sqlite_reads_plain_files(const ConnectOptions& connect);

// Runs PRAGMA quick_check or integrity_check on `db` (nothing for Verify::none). Damage it
// lists or runs into throws SqliteBackupError(verification_failed) naming `source`.
void verify(sqlite3* db, Verify verify, const std::filesystem::path& source);

// Lets SQLite look at `cancel` every few thousand instructions (it then fails with
// SQLITE_INTERRUPT, which classify() makes ErrorKind::cancelled): replaying a large WAL or
// checking a large database takes a while. For our own connections, closed before the flag
// goes. Nothing when `cancel` is null.
void allow_cancellation(sqlite3* db, const std::atomic<bool>* cancel);

// allow_cancellation() for a connection that may be the caller's and outlive the flag: the
// handler is removed again when the guard goes.
class CancellationHandler {
 public:
  CancellationHandler(sqlite3* db, const std::atomic<bool>* cancel);
  CancellationHandler(const CancellationHandler&) = delete;
  CancellationHandler& operator=(const CancellationHandler&) = delete;
  CancellationHandler(CancellationHandler&&) = delete;
  CancellationHandler& operator=(CancellationHandler&&) = delete;
  ~CancellationHandler();

 private:
  sqlite3* db_;
  bool installed_ = false;
};

}  // namespace sqlite_backup::sql
