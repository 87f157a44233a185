// SQLite's own locks on the source: asking who holds one, and taking one as a reader would,
// writing nothing. The one place that knows SQLite's lock bytes.
//
// SQLite's unix VFS locks with fcntl() record locks on fixed bytes. A reader of a rollback-
// journal database holds a read lock on the 510 SHARED bytes past 1 GiB; a writer needs a
// write lock on all of them (EXCLUSIVE) before it writes the database file, so while any
// reader holds SHARED no writer changes the file: it waits in its busy handler, as it would
// for any reader. In WAL mode a checkpoint writes frames back into the database only while it
// holds an exclusive lock on byte 123 of the -shm (read-lock 0), which a reader of the
// database file alone holds shared; without that write-back the WAL cannot restart either.
//
// We take these locks as open-file-description locks (F_OFD_SETLK): they conflict with
// SQLite's POSIX locks exactly as another process's would, and closing our descriptor drops
// only ours, never a lock the calling process holds itself.
#pragma once

#include <filesystem>
#include <optional>

#include "io/file.hpp"

namespace sqlite_backup::io {

// Whether someone holds SQLite's EXCLUSIVE lock on the database file at `path` (a write
// lock on the 510 shared-lock bytes just past 1 GiB, where the unix VFS places its POSIX
// locks). Asks the kernel with F_OFD_GETLK, which only tests and takes no lock. false when
// the file cannot be opened or the question not asked (other VFSes lock elsewhere).
bool sqlite_exclusive_lock_held(const std::filesystem::path& path) noexcept;

// The process that holds SQLite's EXCLUSIVE lock on `path` (as above): nullopt when no one
// does; 0 or -1 when the kernel does not say who (a process in another PID namespace, an
// open-file-description lock).
std::optional<pid_t> sqlite_exclusive_lock_holder(const std::filesystem::path& path) noexcept;

// Whether process `pid` has `file` open, by its descriptors in /proc. nullopt when they cannot
// be read: another user's process or a non-dumpable one without the privilege to look, a pid
// the kernel did not give (0 or -1: another PID namespace), a process that has just exited.
std::optional<bool> process_has_open(pid_t pid, const FileStat& file) noexcept;

class ReaderLock {
 public:
  // SQLite's SHARED lock on the rollback-mode database `database`, taken as SQLite takes it:
  // a read lock on the PENDING byte first (a writer waiting for EXCLUSIVE holds it, and new
  // readers must not starve it), then the SHARED bytes, then PENDING released. nullopt when a
  // writer holds or awaits EXCLUSIVE, or the kernel has no OFD locks. Never blocks.
  static std::optional<ReaderLock> try_shared(const std::filesystem::path& database);

  // A shared lock on read-lock 0 of the WAL index `shm` (the database's -shm), which keeps
  // checkpoints from writing into the database file and so the WAL from restarting. nullopt
  // when a checkpoint holds it now, the -shm is missing, or the kernel has no OFD locks.
  static std::optional<ReaderLock> try_wal_read_mark_zero(const std::filesystem::path& shm);

  ReaderLock(ReaderLock&&) noexcept = default;
  ReaderLock& operator=(ReaderLock&&) noexcept = default;
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;
  ~ReaderLock() = default;  // closing the descriptor releases the OFD lock

 private:
  explicit ReaderLock(UniqueFd fd) noexcept : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace sqlite_backup::io
