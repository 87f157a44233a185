// sqlite_backup: transaction-consistent snapshots of a live SQLite database
// that another program owns, without writing to the source (and, unless it must, without
// locking it: see SourceLock).
//
// The one call most programs need:
//
//   sqlite_backup::sqlite_backup("places.sqlite", "backup/places.sqlite");
//   auto mem = sqlite_backup::sqlite_backup("places.sqlite");   // in memory
//   sqlite3* db = mem->get();
//
// Everything here is thread-compatible: distinct calls may run concurrently
// on distinct destinations; the logging settings are process-wide and
// thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <sqlite_backup/log.hpp>
#include <stdexcept>
#include <string>
#include <vector>

struct sqlite3;  // from <sqlite3.h>; callers that use the handle include it themselves

namespace sqlite_backup {

// What went wrong, coarse enough for a caller (or the CLI's exit code) to act on.
enum class ErrorKind {
  invalid_source,   // not a database, truncated, a folder, a FIFO, ...
  unstable_source,  // the files kept changing for copy_retry attempts (strict mode)
  io,               // reading the source or writing the destination failed (ENOSPC, EACCES, ...)
  destination,      // the destination is refused (exists, no parent folder, ...)
  sqlite,           // SQLite refused an operation on the snapshot
  verification_failed,  // --verify: integrity_check/quick_check of the result failed
  cancelled,            // Options::cancel was set (the CLI sets it on SIGHUP/INT/QUIT/TERM)
};

// What the OS or SQLite reported behind an error, for callers that act on the exact cause (a
// full disk, a busy database) rather than on ErrorKind alone. 0: not reported by that layer.
struct ErrorCause {
  int system_errno = 0;   // errno: ENOSPC, EACCES, EIO, ... (also behind SQLite's I/O errors)
  int sqlite_result = 0;  // SQLite's extended result code: SQLITE_NOTADB, SQLITE_FULL, ...
};

// Thrown for every failure other than a missing source (std::filesystem::filesystem_error)
// and a source equal to the destination (std::invalid_argument). what() is one line
// naming the operation, the path and the reason.
class SqliteBackupError : public std::runtime_error {
 public:
  SqliteBackupError(ErrorKind kind, const std::string& message, std::filesystem::path path = {},
                    ErrorCause cause = {});
  [[nodiscard]] ErrorKind kind() const noexcept { return kind_; }
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  [[nodiscard]] const ErrorCause& cause() const noexcept { return cause_; }

 private:
  ErrorKind kind_;
  std::filesystem::path path_;
  ErrorCause cause_;
};

// Owns one sqlite3 connection (the in-memory copy); closes it on destruction.
// Move-only. get() lends the handle; release() hands ownership to the caller,
// who must then sqlite3_close() it.
class Connection {
 public:
  Connection() noexcept = default;
  explicit Connection(sqlite3* db) noexcept : db_(db) {}
  Connection(Connection&& other) noexcept : db_(other.release()) {}
  Connection& operator=(Connection&& other) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  [[nodiscard]] sqlite3* get() const noexcept { return db_; }
  [[nodiscard]] sqlite3* release() noexcept;
  explicit operator bool() const noexcept { return db_ != nullptr; }

 private:
  sqlite3* db_ = nullptr;
};

// The reference's `sqlite_connect_kwargs`: how the source (or its private copy) is opened.
struct ConnectOptions {
  int open_flags = 0;                            // extra SQLITE_OPEN_* flags, OR'd in
  std::string vfs;                               // empty: SQLite's default VFS
  std::chrono::milliseconds busy_timeout{5000};  // as Python's timeout=5.0
  std::string uri_parameters;                    // extra "key=value&..." appended to the file: URI
};

// Progress of a copy through SQLite's backup API, as Python's Connection.backup reports it:
// (result of the last sqlite3_backup_step(): SQLITE_OK, SQLITE_DONE, SQLITE_BUSY, ...;
// remaining pages; total pages).
using BackupProgress = std::function<void(int status, int remaining, int total)>;

// The reference's `sqlite_backup_kwargs`: passed to sqlite3_backup_* when the backup API runs.
// It runs with copy_use_tempdir = false, and otherwise only when one of these differs from
// its default (the snapshot is then copied through it once more, as the reference does);
// with the defaults the recovered snapshot is renamed into place or loaded in one read.
struct BackupOptions {
  int pages = -1;                        // pages per sqlite3_backup_step(); -1: all at once
  BackupProgress progress;               // called after each step
  std::string name = "main";             // schema of the source to copy
  std::chrono::milliseconds sleep{250};  // pause after a step that found the source busy
  // How long the source may stay busy (locked by another connection) before the copy gives
  // up with SqliteBackupError: Options::sqlite_connect_kwargs.busy_timeout when false; no
  // limit when true, as Python's Connection.backup retries (cancel still stops it).
  bool wait_while_busy = false;
};

// Copies one file; returns false when the source changed while it was being copied.
using CopyFunction =
    std::function<bool(const std::filesystem::path& src, const std::filesystem::path& dst)>;

enum class Verify { none, quick, full };

// Whether the snapshot may cooperate with SQLite's locking as a reader would (writing nothing):
// a shared lock that keeps the owner's commits (rollback journal) or checkpoints (WAL) out
// for the length of one copy. The owner's SQLite waits for it in its busy handler, as for any
// reader; an owner without a busy handler gets SQLITE_BUSY instead. Validation stays the
// proof of every snapshot either way.
enum class SourceLock {
  never,        // never lock: an owner that commits faster than a copy takes can outrun us
  when_needed,  // lock-free first; from the 2nd attempt on, lock for each attempt (default)
  always,       // lock for every attempt
};

// Byte-level progress of the snapshot copy (the CLI draws its progress bar from this).
// Reported after each chunk; the last report of an attempt whose copy completed has
// bytes_done == bytes_total (files may have grown while they were copied, or a journal been
// copied earlier, at its commit).
struct CopyProgress {
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;  // sum of the source files' sizes when the attempt began
  int attempt = 1;
};

// What a successful backup did; filled in when Options::report is set.
struct Report {
  std::filesystem::path source;
  std::filesystem::path destination;  // empty for memory destinations
  std::uint64_t bytes = 0;            // size of the resulting database
  std::uint64_t pages = 0;
  int page_size = 0;
  int attempts = 0;       // whole-set copy attempts (1 = first try was clean)
  bool validated = true;  // false only when copy_retry_strict = false gave up
  Verify verified = Verify::none;
  std::chrono::nanoseconds duration{0};
};

struct Options {
  bool wal_checkpoint = true;  // leave no -wal/-shm beside the destination
  bool copy_use_tempdir =
      true;              // snapshot by copying (no locks); false: backup API on the live file
  int copy_retry = 100;  // whole-set copy attempts before giving up (>= 1)
  // true: give up with SqliteBackupError(unstable_source). false: use the last copy, with a
  // warning, once SQLite opens it, reads its schema and passes quick_check (or the check of
  // .verify); a damaged last copy is not used (unstable_source). Every destination.
  bool copy_retry_strict = true;
  ConnectOptions sqlite_connect_kwargs{};
  BackupOptions sqlite_backup_kwargs{};
  // Copies one file for the snapshot (the reference's copy_function); called for each file of
  // the set on every attempt, and its false spoils the attempt; either way each attempt is
  // validated as a whole set. Empty: the library's own copy through the open source
  // descriptor (reflink, copy_file_range, ...), which also follows a commit during the copy
  // (its journal copied in its commit phase), on a retry rewrites only the blocks of the
  // database that differ, and reads a live-WAL database straight into memory for memory
  // destinations.
  CopyFunction copy_function{};

  // Beyond the reference.
  Verify verify = Verify::none;  // integrity check of the result before it is committed
  SourceLock source_lock = SourceLock::when_needed;  // see SourceLock
  // Called after each chunk; like copy_function, from a thread the library starts while the
  // calling thread waits (the source is read there: see sqlite_backup()).
  std::function<void(const CopyProgress&)> on_progress{};
  // When it turns true the backup stops, cleanly; honoured until the result is committed (a
  // flag set during the final fsync and rename is seen too late: the backup completes).
  const std::atomic<bool>* cancel = nullptr;
  Report* report = nullptr;  // filled in on success
  // Replace an existing destination file (atomically, by rename). The CLI sets false.
  bool overwrite = true;
  // fsync the result and its folder before returning, so that it survives a crash. false
  // keeps the temporary name and rename (never a partial destination) but lets the kernel
  // write the data out later: for copies that are compressed or uploaded straight away, or
  // kept on a scratch disk, where that wait buys nothing.
  bool durable = true;
  // Read the source on a thread with a descriptor table of its own (see sqlite_backup()), so
  // that this process's own SQLite connections keep their locks on it. false reads it on the
  // calling thread, which saves starting that thread and copying the descriptor table (about
  // 0.1 ms): only for a process that has no SQLite connection to the source open, as the CLI.
  bool private_descriptor_table = true;
};

// Snapshots `source` (a database file, plus its -wal/-journal if present) and
// - with a destination: writes it there atomically (temporary name beside it, fsync,
//   rename, fsync of the folder; the fsyncs only when options.durable) with the source's
//   read and write permission bits, in journal_mode=DELETE, and returns std::nullopt;
// - without one: returns an open in-memory database holding the snapshot (in a memory file
//   mapped for the connection, unmapped when it closes; it can grow 4 GiB past its size;
//   see sqlite_backup_to_connection()).
// The source is never written, and (copy_use_tempdir, the default) locked only as
// options.source_lock allows, as a reader would; it is read
// on a thread with a descriptor table of its own, so that the calling process keeps its own
// SQLite locks on the source (closing any descriptor of a file drops them all otherwise;
// see options.private_descriptor_table).
// Errors: std::filesystem::filesystem_error (no_such_file_or_directory) for a missing
// source; std::invalid_argument when source and destination are the same file (also
// through a symlink or a hard link), a path holds a NUL byte (no file is named so: the
// system would read it cut short), or an option is out of range; SqliteBackupError
// for everything else. On any error nothing is left at the destination and no
// temporary file remains.
std::optional<Connection> sqlite_backup(
    const std::filesystem::path& source,
    std::optional<std::filesystem::path> destination = std::nullopt, const Options& options = {});

// Snapshots `source` into `target`, an open connection the caller owns (for instance the
// handle of a Python sqlite3.Connection): its main database is replaced by the snapshot,
// held in memory (sqlite3_deserialize; through the backup API when sqlite_backup_kwargs ask
// for it or copy_use_tempdir is false). The memory is a memory file (memfd_create) mapped
// into the process, or heap memory where none can be had (a snapshot past 1.5 GiB, or one
// growing past it while it is read, then goes through the backup API: heap memory would leave
// it little room to grow); the mapping is
// unmapped when
// `target` closes, by the destructor of a virtual-table module this registers on it
// ("sqlite_backup_snapshot_memory": do not register a module of that name on `target` or
// drop its modules), or when the next snapshot into `target` replaces it. The target must be idle
// (no open transaction, statement or sqlite3_backup; a running statement is refused with
// SqliteBackupError, the database kept; an unfinished backup is not detected, and SQLite 3.40
// frees the database under it). Staged in the temporary directory; errors as sqlite_backup(), plus
// std::invalid_argument for a null target. Thread safety: `target` must not be used by
// another thread during the call.
void sqlite_backup_to_connection(const std::filesystem::path& source, sqlite3* target,
                                 const Options& options = {});

// Snapshots `source` and writes the finished single-file database to the open file
// descriptor `fd` (a pipe, a socket, a file), e.g. for a compressor. Staged in the
// temporary directory; errors as sqlite_backup(), plus std::invalid_argument when fd is open
// on the source or one of its side files, and SqliteBackupError(io) when fd is not open (both
// before anything is read). Does not close fd.
void sqlite_backup_to_fd(const std::filesystem::path& source, int fd, const Options& options = {});

// ---- The reference's `core` helpers -------------------------------------------------

// Copies src to dst (created or truncated; fast paths: reflink, copy_file_range, sendfile)
// and reports whether src stayed the same file with the same size and modification time
// throughout. Errors, as sqlite_backup()'s: std::filesystem::filesystem_error
// (no_such_file_or_directory) when src does not exist; SqliteBackupError for everything
// else, of kind invalid_source when src is not a regular file (a folder, a FIFO) and of kind
// io for I/O errors (src unreadable, dst not creatable, a failed read or write), naming the
// path; std::invalid_argument, before anything is written, when dst is src (by name, link
// or bind mount) or a path holds a NUL byte. When `cancel` becomes true during the copy, dst is
// removed and SqliteBackupError(cancelled) is thrown. Thread safety: as sqlite_backup().
bool atomic_copy(const std::filesystem::path& src, const std::filesystem::path& dst,
                 const std::atomic<bool>* cancel = nullptr);

// The files that make up the database at `source`: the database itself, then its
// "-wal" and "-journal" when they exist (never "-shm": it is rebuilt from the WAL).
// std::invalid_argument when `source` holds a NUL byte.
std::vector<std::filesystem::path> glob_database_files(const std::filesystem::path& source);

// Copies the database set of `source_files.front()` (the database and its -wal and -journal
// as they are now, as glob_database_files lists them; the rest of `source_files` is not
// read) into the folder `temporary_dest`, retrying the whole set up to `retry` times until
// a copy is validated as one consistent snapshot (see src/validate/). Returns whether it
// was; on false the last (unvalidated) copy is left in place. Throws on I/O errors, and
// std::invalid_argument, before anything is written, when a file would be copied onto
// itself (temporary_dest is the database's own folder) or a path holds a NUL byte. When `cancel`
// becomes true, the copy stops, removes what it wrote, and throws SqliteBackupError(cancelled).
bool copy_all_files(const std::vector<std::filesystem::path>& source_files,
                    const std::filesystem::path& temporary_dest,
                    const CopyFunction& copy_function = {}, int retry = 100,
                    const std::atomic<bool>* cancel = nullptr);

// Opens `database` read-only with immutable=1: SQLite then takes no locks and ignores
// other writers. Only for files nobody is writing (a private copy): never use it on a
// live database. Throws SqliteBackupError when it cannot be opened, std::invalid_argument
// when `database` holds a NUL byte (SQLite's URI would name the file cut short there).
Connection sqlite_connect_immutable(const std::filesystem::path& database);

}  // namespace sqlite_backup
