// Stage 2 of the pipeline: copying the set of files, optimistically and without locks,
// until validate::judge() accepts a copy as one consistent state.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <sqlite_backup/sqlite_backup.hpp>
#include <vector>

#include "discover/database_files.hpp"
#include "io/copy.hpp"

namespace sqlite_backup::snapshot {

// The size from which a durable database copy is written past the page cache. Measured
// with bench/run, the WAL's pages laid over the direct writes: at 1 GiB + 104 MiB WAL
// 0.79x and 0.85x cp + sync (531 and 582 ms, 169-194 ms of CPU; through the page cache
// 1.03-2.6x, as its new pages may have to come back from the VM's host first); at 200 MiB +
// 20 MiB WAL 0.84x and 0.95x (128 and 135 ms, about 40 ms of CPU), where the page cache
// path took 0.74x, 0.82x and 0.89x in three runs. So not below 512 MiB: what the page cache
// costs grows with the size, what the direct writes' waits cost does not shrink with it.
inline constexpr std::uint64_t kDirectWritesFrom = std::uint64_t{512} << 20;

struct Settings {
  int attempts = 100;          // whole-set attempts (copy_retry)
  CopyFunction copy_function;  // empty: our descriptor copy
  const std::atomic<bool>* cancel = nullptr;
  std::function<void(const CopyProgress&)> on_progress;
  bool start_writeback = false;  // the database copy will be fsynced: start writing it out early
  // Follow a commit during the copy and hand back its journal to roll back through (see
  // Outcome); off where the caller wants the set of files as it was (copy_all_files).
  bool follow_commits = true;
  // When an attempt takes a reader's lock on the source (see io::ReaderLock).
  SourceLock source_lock = SourceLock::when_needed;
  // A live WAL (with no journal beside it) is applied to the database copy as it is read
  // (recover::apply_live_wal) instead of being staged: set only where SQLite will read the
  // copy as plain files (sql::sqlite_reads_plain_files). A caller's copy function always
  // stages.
  bool apply_live_wal = false;
  // See write_out_of(); the tests lower it to reach direct writes with small databases.
  std::uint64_t direct_writes_from = kDirectWritesFrom;
};

struct RollbackStep {
  std::filesystem::path journal;
  // Page 1's counter once rolled back; none for a commit that left it alone (page 1 is then
  // not in its journal, and shows whatever our copy read).
  std::optional<std::uint32_t> expected_change_counter;
};

struct Outcome {
  int attempts = 0;
  bool validated = false;   // false: every attempt saw a change; the last copy is staged anyway
  std::string last_reason;  // why the last rejected attempt was rejected
  std::uint64_t bytes = 0;  // bytes copied by the accepted (or last) attempt
  // The journal of a transaction that committed during the accepted copy (at most one): the
  // staged database must be rolled back through it before it is opened for anything else
  // (recover::roll_back), after which page 1 must show `expected_change_counter`.
  std::vector<RollbackStep> journals_to_roll_back;
  // Another process held SQLite's EXCLUSIVE lock on the database at the first look of every
  // attempt: over two attempts or more, an owner in locking_mode=EXCLUSIVE (any owner holds
  // it for a moment in each commit), which no reader's lock can hold off. Says why a backup
  // that gave up did, and what the user can do.
  bool exclusive_lock_at_every_attempt = false;
  // ... and whether it journals could not be told at any attempt, its open files being
  // unreadable to us (validate::SetState::unreadable_lock_holder): its pid, as the kernel gave
  // it. Such an owner is never backed up while it holds the lock, and the user must know why.
  std::optional<pid_t> unreadable_lock_holder;
  // ... or it was seen at every attempt to keep no journal open (journal_mode=OFF or MEMORY):
  // its pid. Such an owner is backed up only once it lets go of the lock.
  std::optional<pid_t> journal_less_lock_holder;
};

// Copies the database at `source` and its -wal/-journal into `staged` (a database path in a
// private folder: side files go beside it under the matching names). Never writes to or
// locks the source. Throws SqliteBackupError for I/O errors, a source that is not a regular
// file or that vanished, and cancellation; errors writing the copies name the staged files
// (the caller names them as its destination).
Outcome copy_consistent_set(const discover::DatabaseFiles& source,
                            const std::filesystem::path& staged, const Settings& settings);

// How the copy of a member of the set is written. Only the database copy is kept (a -wal or
// -journal copy is applied and deleted before the fsync), so only it is written out early;
// writing the others out would only take the disk from it. A durable database copy of
// settings.direct_writes_from or more goes to the disk as it is made, past the page cache
// (io::WriteOut::direct), when nothing will read it back: with a live WAL applied
// (`first_look` taken), the verdict needs no content comparison (which would read the copy
// again, from the disk now), and only an attempt that fails refreshes the copy from the
// disk. Thread-safe (a pure function).
io::WriteOut write_out_of(const Settings& settings, bool is_database, bool first_look,
                          std::uint64_t database_size);

// Whether a durable database copy over which a live WAL will be applied may be a reflink
// clone (btrfs, XFS). A clone costs nothing to make, but every page the WAL then writes into
// it is copied on write, and the fsync waits for each to be written and remapped, one extent
// per scattered page. Measured on the benchmark's XFS loop, 1 GiB + 104 MiB WAL (26,000
// scattered pages), five runs each: 1.10-1.27 s cloned, 0.47-0.78 s copied whole (`cp
// --reflink=never` + sync: 0.72-3.5 s); with a 40 MiB WAL (10,300 frames, 3.9% of the
// pages) 0.48-0.53 s cloned, 0.42-0.73 s copied whole; with a 1.1 MiB WAL the clone takes
// 18 ms. About 40 us a page against 0.5-0.7 s a GiB puts the break-even near 5% of the
// pages, so a WAL of
// more frames than one per kClonePagesPerWalFrame of the database's pages (frames: an
// upper bound of the pages they write) is copied, not cloned. SQLite's default autocheckpoint
// (1,000 pages) keeps a WAL well below that on any database of 80 MiB or more. Copies that
// are not fsynced (--no-sync, memory) keep the clone: without the fsync the copy on write is
// cheap (0.37x `cp` at 1 GiB + 104 MiB). Thread-safe (a pure function).
inline constexpr std::uint64_t kClonePagesPerWalFrame = 20;
io::Clone clone_of_database(const Settings& settings, bool wal_applied,
                            std::uint64_t database_bytes, std::uint64_t wal_bytes,
                            std::uint32_t page_size);

}  // namespace sqlite_backup::snapshot
