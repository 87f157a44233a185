// The public entry points: argument checks, then the one pipeline (run_pipeline())
//   discover -> snapshot -> validate -> recover -> deliver (a file, memory or a descriptor).
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <sqlite_backup/sqlite_backup.hpp>
#include <system_error>
#include <variant>
#include <vector>

#include "deliver/connection.hpp"
#include "deliver/descriptor.hpp"
#include "deliver/file.hpp"
#include "discover/database_files.hpp"
#include "error_internal.hpp"
#include "io/copy.hpp"
#include "io/file.hpp"
#include "io/private_descriptors.hpp"
#include "io/sqlite_magic.hpp"
#include "io/staging.hpp"
#include "log_internal.hpp"
#include "recover/recover.hpp"
#include "snapshot/copy_set.hpp"
#include "snapshot/memory_copy.hpp"
#include "sqlite/connect.hpp"
#include "sqlite/handle.hpp"
#include "sqlite/uri.hpp"
#include "validate/set_state.hpp"

namespace sqlite_backup {
namespace {

namespace fs = std::filesystem;
using detail::log_debug;
using detail::log_info;
using detail::log_warning;
using detail::quoted;
using detail::throw_error;

void check_options(const Options& options) {
  if (options.copy_retry < 1) {
    throw std::invalid_argument("sqlite_backup: copy_retry must be at least 1 (got " +
                                std::to_string(options.copy_retry) + ")");
  }
  if (options.sqlite_backup_kwargs.pages == 0) {
    throw std::invalid_argument(
        "sqlite_backup: sqlite_backup_kwargs.pages must not be 0 (-1 means all)");
  }
}

void check_source_exists(const fs::path& source) {
  detail::refuse_a_nul_in(source, "sqlite_backup", "source");
  std::error_code error;
  const fs::file_status status = fs::status(source, error);
  if (status.type() == fs::file_type::not_found) {
    throw fs::filesystem_error("sqlite_backup: source database does not exist", source,
                               std::make_error_code(std::errc::no_such_file_or_directory));
  }
}

// Refuses destinations that are the source (by name, symlink or hard link) or one of its
// side files, and those that cannot be written as asked.
void check_destination(const fs::path& source, const fs::path& destination, bool overwrite) {
  if (destination.empty()) {
    // Names no file: refused now rather than after a whole backup fails at the rename.
    throw_error(ErrorKind::destination, destination,
                "refusing to write '': the destination is an empty path");
  }
  std::error_code error;
  const auto source_stat = io::stat_path(source);
  const auto destination_stat = io::stat_path(destination);
  // (Absolute first: weakly_canonical leaves a bare name that does not exist relative.)
  const std::string canonical_source =
      fs::weakly_canonical(fs::absolute(source, error), error).native();
  const std::string canonical_destination =
      fs::weakly_canonical(fs::absolute(destination, error), error).native();
  if ((source_stat && destination_stat && source_stat->same_file(*destination_stat)) ||
      canonical_source == canonical_destination) {
    throw std::invalid_argument("sqlite_backup: 'source' and 'destination' can't be the same (" +
                                quoted(source) + " and " + quoted(destination) + ")");
  }
  // The folders by identity too: a bind mount shows one folder under two names that no
  // canonical path brings together. (A folder that cannot be looked at is not the same: what
  // is wrong with it is reported where it is used.)
  const auto folder_of_file = [&error](const fs::path& file) -> std::optional<io::FileStat> {
    struct stat st {};
    if (::stat(fs::absolute(file, error).parent_path().c_str(), &st) != 0) return std::nullopt;
    return io::to_file_stat(st);
  };
  const auto source_folder = folder_of_file(source);
  const auto destination_folder = folder_of_file(destination);
  const bool same_folder =
      source_folder && destination_folder && source_folder->same_file(*destination_folder);
  const std::string source_name = source.filename().native();
  const std::string destination_name = destination.filename().native();
  for (const char* suffix : {"-wal", "-journal", "-shm"}) {
    if (canonical_destination == canonical_source + suffix ||
        (same_folder && destination_name == source_name + suffix)) {
      throw std::invalid_argument("sqlite_backup: 'destination' " + quoted(destination) +
                                  " is a side file of the source; refusing to write it");
    }
    // The other way round, the source would be taken for a side file of the new database
    // (and removed as a stale one before the rename: see io::commit_file).
    if (canonical_source == canonical_destination + suffix ||
        (same_folder && source_name == destination_name + suffix)) {
      throw std::invalid_argument("sqlite_backup: 'source' " + quoted(source) +
                                  " is named as a side file of 'destination' " +
                                  quoted(destination) + "; refusing to write it");
    }
  }
  if (destination_stat) {
    if (S_ISDIR(destination_stat->mode)) {
      throw_error(ErrorKind::destination, destination, "refusing to write {}: it is a folder",
                  quoted(destination));
    }
    if (!S_ISREG(destination_stat->mode)) {
      // A FIFO, a device (/dev/null as root), a socket: renaming over it would replace it.
      throw_error(ErrorKind::destination, destination,
                  "refusing to write {}: it is not a regular file", quoted(destination));
    }
    if (!overwrite) {
      throw_error(ErrorKind::destination, destination,
                  "refusing to write {}: it already exists (not overwriting)", quoted(destination));
    }
    // Only a database is replaced: a file of anything else named by mistake is kept (SQLite's
    // backup into it would fail the same way, "file is not a database", and that result is the
    // error's cause for callers who match on it).
    const auto head = io::head_of_regular_file(destination);
    if (destination_stat->size > 0 && (!head || *head != io::kDatabaseMagic)) {
      throw_error(ErrorCause{.sqlite_result = SQLITE_NOTADB}, ErrorKind::destination, destination,
                  "refusing to overwrite {}: it is not a SQLite database", quoted(destination));
    }
    // A write-protected file is not replaced, though the folder would allow the rename: SQLite
    // (the reference's backup into it) refuses to write it too, and so does `rm` without -f.
    if (::access(destination.c_str(), W_OK) != 0) {
      const int denied = errno;
      if (denied == EACCES || denied == EROFS) {
        throw_error(ErrorCause{.system_errno = denied}, ErrorKind::io, destination,
                    "refusing to overwrite {}: it is write-protected ({})", quoted(destination),
                    std::strerror(denied));
      }
    }
  }
  const fs::path parent = destination.has_parent_path() ? destination.parent_path() : fs::path(".");
  if (!fs::is_directory(parent, error)) {
    throw_error(ErrorKind::destination, destination,
                "cannot write {}: its folder {} does not exist", quoted(destination),
                quoted(parent));
  }
}

// A staging folder for a snapshot that has no destination folder, made in the first of
// $TMPDIR, $TEMP, $TMP, /tmp, /var/tmp, /usr/tmp and the working folder where one can be
// made, as Python's tempfile chooses (the reference staged there). Folders this process may
// not write (by its effective ids) are passed over unasked; the others are tried, since a
// permission check cannot tell (root may "write" /proc). Absolute, so that a caller changing
// its working folder during the backup does not lose the staged files.
// Throws SqliteBackupError (io) naming every folder tried, with the first one's reason.
io::StagingDir staging_in_temporary_folder(const std::string& name_hint, const fs::path& source) {
  std::vector<fs::path> candidates;
  for (const char* variable : {"TMPDIR", "TEMP", "TMP"}) {
    if (const char* value = std::getenv(variable); value != nullptr && *value != '\0') {
      candidates.emplace_back(value);
    }
  }
  for (const char* folder : {"/tmp", "/var/tmp", "/usr/tmp", "."}) candidates.emplace_back(folder);
  std::optional<SqliteBackupError> first_failure;
  std::string tried;
  std::vector<fs::path> seen;
  for (const fs::path& candidate : candidates) {
    std::error_code error;
    fs::path folder = fs::absolute(candidate, error);
    if (error) folder = candidate;
    if (std::find(seen.begin(), seen.end(), folder) != seen.end()) continue;
    seen.push_back(folder);
    if (!fs::is_directory(folder, error)) continue;
    int allowed = ::faccessat(AT_FDCWD, folder.c_str(), W_OK | X_OK, AT_EACCESS);
    // (glibc asks faccessat2, which some seccomp policies refuse with EPERM: the real ids then.)
    if (allowed != 0 && (errno == EPERM || errno == ENOSYS)) {
      allowed = ::access(folder.c_str(), W_OK | X_OK);
    }
    if (allowed != 0) continue;
    try {
      return {folder, name_hint, source};
    } catch (const SqliteBackupError& failure) {
      if (failure.kind() != ErrorKind::io) throw;
      // (A std::string: a lone const char* would be taken for log_debug's `file` argument.)
      log_debug("{}; trying the next temporary folder", std::string(failure.what()));
      tried += (tried.empty() ? "" : ", ") + quoted(folder);
      if (!first_failure) first_failure = failure;
    }
  }
  if (first_failure) {
    throw SqliteBackupError(ErrorKind::io,
                            fmt::format("{} (tried {})", first_failure->what(), tried),
                            first_failure->path(), first_failure->cause());
  }
  // None of them is a folder this process may write: the first one's own error says why.
  std::error_code error;
  fs::path first = fs::absolute(candidates.front(), error);
  return {error ? candidates.front() : first, name_hint, source};
}

// SQLite keeps the -wal and -journal beside the file a symlink points to, not beside the
// link; so do we.
fs::path resolve_source(const fs::path& source) {
  std::error_code error;
  fs::path resolved = fs::canonical(source, error);
  return error ? source : resolved;
}

// The name a file is staged under in `staging`: `name`, unless that is empty or the name of
// the staging folder's own lock file (see io::StagingDir), which it must not replace.
fs::path staged_name(const io::StagingDir& staging, const fs::path& name) {
  const bool usable = !name.empty() && name != io::StagingDir::kOwnerLockName;
  return staging.path() / (usable ? name : fs::path("database"));
}

fs::path folder_of(const fs::path& destination) {
  return destination.parent_path().empty() ? fs::path(".") : destination.parent_path();
}

// Where the pipeline ends: a file (atomically, beside which the copy is staged), a connection
// (memory), or a descriptor (a stream).
struct ToFile {
  fs::path destination;
};
struct ToConnection {
  sqlite3* target;
};
struct ToDescriptor {
  int fd;
};
using Delivery = std::variant<ToFile, ToConnection, ToDescriptor>;

// Each stage's settings, from the caller's Options: the stages never see Options itself.
snapshot::Settings snapshot_settings(const Options& options, const Delivery& delivery) {
  snapshot::Settings settings;
  settings.attempts = options.copy_retry;
  settings.copy_function = options.copy_function;
  settings.cancel = options.cancel;
  settings.on_progress = options.on_progress;
  settings.source_lock = options.source_lock;
  // Writeback started early only helps a copy that will be fsynced.
  settings.start_writeback = options.durable && std::holds_alternative<ToFile>(delivery);
  settings.apply_live_wal =
      !options.copy_function && sql::sqlite_reads_plain_files(options.sqlite_connect_kwargs);
  return settings;
}

recover::Settings recover_settings(const Options& options, const Delivery& delivery) {
  recover::Settings settings;
  settings.connect = options.sqlite_connect_kwargs;
  // A memory destination is checked once, in memory, after delivery.
  settings.verify = std::holds_alternative<ToConnection>(delivery) ? Verify::none : options.verify;
  settings.wal_checkpoint = options.wal_checkpoint;
  settings.cancel = options.cancel;
  return settings;
}

deliver::Settings deliver_settings(const Options& options) {
  deliver::Settings settings;
  settings.connect = options.sqlite_connect_kwargs;
  settings.backup = options.sqlite_backup_kwargs;
  settings.verify = options.verify;
  settings.cancel = options.cancel;
  settings.on_progress = options.on_progress;
  return settings;
}

// Runs `work`, which reads the source, on a thread with a descriptor table of its own unless
// the caller said it holds no SQLite connection to the source (see
// Options::private_descriptor_table).
void reading_the_source(const Options& options, const std::function<void()>& work) {
  if (options.private_descriptor_table) {
    io::with_private_descriptor_table(work);
  } else {
    work();
  }
}

// What the final error adds when the owner held SQLite's EXCLUSIVE lock at every attempt
// (locking_mode=EXCLUSIVE): what the user can do about it.
std::string exclusive_owner_advice(const snapshot::Outcome& outcome) {
  if (!outcome.exclusive_lock_at_every_attempt || outcome.attempts < 2) return {};
  if (const auto pid = outcome.unreadable_lock_holder) {
    // Idle or not, such an owner cannot be told from one that keeps no journal and is halfway
    // through a commit: only its open files tell, and we may not read them.
    return fmt::format(
        "; its owner ({}) held SQLite's EXCLUSIVE lock throughout (locking_mode=EXCLUSIVE), "
        "and whether it keeps a journal cannot be told without reading its open files, which "
        "this user may not: run the backup as that program's user or as root{}",
        *pid > 0 ? fmt::format("process {}", *pid) : "a process in another PID namespace",
        *pid > 0 ? "" : ", in its PID namespace");
  }
  if (const auto pid = outcome.journal_less_lock_holder) {
    return fmt::format(
        "; its owner (process {}) held SQLite's EXCLUSIVE lock throughout "
        "(locking_mode=EXCLUSIVE) and keeps no journal (journal_mode=OFF or MEMORY), so its "
        "database file may be half written at any moment: back it up while that program is "
        "closed",
        *pid);
  }
  return "; its owner held SQLite's EXCLUSIVE lock throughout (locking_mode=EXCLUSIVE), which "
         "no reader's lock can hold off: back it up while that program is idle or closed";
}

// Discover, snapshot and validate: copies the source into `staged` (validated unless the
// caller accepts otherwise) and rolls the copy back through a transaction that committed
// while it was read. The source is read on a thread with a descriptor table of its own, so
// that closing its files never drops the calling process's own SQLite locks on them.
// A copy kept unvalidated (copy_retry_strict off) is not warned about here: the reason is
// handed back, for recover_checked() to warn once the copy proved readable (a damaged one
// fails instead, with one message, not a warning and an error).
std::string snapshot_into(const fs::path& source, const fs::path& staged, const Options& options,
                          const Delivery& delivery, Report& report) {
  const discover::DatabaseFiles files(resolve_source(source));
  const snapshot::Settings settings = snapshot_settings(options, delivery);
  snapshot::Outcome outcome;
  reading_the_source(options,
                     [&] { outcome = snapshot::copy_consistent_set(files, staged, settings); });
  for (const snapshot::RollbackStep& step : outcome.journals_to_roll_back) {
    recover::roll_back(staged, step.journal, step.expected_change_counter,
                       recover_settings(options, delivery), source);
  }
  report.attempts = outcome.attempts;
  report.validated = outcome.validated;
  if (!outcome.validated && options.copy_retry_strict) {
    // (The reference's words first: callers match on them.)
    throw_error(
        ErrorKind::unstable_source, source,
        "cannot snapshot {}: failed to copy all files without any of them changing {} times "
        "(last: {}){}",
        quoted(source), options.copy_retry, outcome.last_reason, exclusive_owner_advice(outcome));
  }
  return outcome.validated ? std::string() : outcome.last_reason;
}

// Recover: recover::recover_in_place() for a copy snapshot_into() may have left unvalidated
// (copy_retry_strict off): that copy may be torn, so it is checked (quick_check at least,
// besides the schema read every copy gets) before anything is delivered, and a damaged one
// is not delivered: the source kept changing (ErrorKind::unstable_source), not a bad source.
recover::DatabaseFacts recover_checked(const fs::path& staged, const fs::path& source,
                                       const recover::Settings& settings, const Options& options,
                                       const Report& report,
                                       const std::string& unvalidated_reason) {
  if (report.validated) return recover::recover_in_place(staged, settings, source);
  recover::Settings checked = settings;
  if (checked.verify == Verify::none) checked.verify = Verify::quick;
  checked.prove_rollback = false;
  try {
    recover::DatabaseFacts facts = recover::recover_in_place(staged, checked, source);
    log_warning(
        "{} kept changing for {} attempts ({}); using the last copy, which opens and passes "
        "{} but may not be one committed state",
        quoted(source), options.copy_retry, unvalidated_reason,
        checked.verify == Verify::quick ? "quick_check" : "integrity_check");
    return facts;
  } catch (const SqliteBackupError& error) {
    const bool damaged =
        error.kind() == ErrorKind::invalid_source ||
        (error.kind() == ErrorKind::verification_failed && settings.verify == Verify::none);
    if (!damaged) throw;
    throw_error(ErrorKind::unstable_source, source,
                "cannot snapshot {}: it kept changing for {} attempts, and the last copy, kept "
                "because copy_retry_strict is off, is damaged, so nothing was written ({})",
                quoted(source), options.copy_retry, error.what());
  }
}

// The memory destination of a source with a live WAL, all in memory: the database is read
// straight into memory SQLite will own and its WAL applied there as it is read (nothing
// staged, each byte of the result written once). Returns false, having delivered nothing,
// when the staged path must take the source (see snapshot::copy_live_wal_set_into_memory).
bool snapshot_straight_into(sqlite3* target, const fs::path& source, const Options& options,
                            Report& report) {
  // (SourceLock::always: the general path locks every attempt. A VFS of the caller's: only
  // SQLite may read its files.)
  if (options.copy_function || deliver::wants_backup_api(options.sqlite_backup_kwargs) ||
      options.source_lock == SourceLock::always ||
      !sql::sqlite_reads_plain_files(options.sqlite_connect_kwargs)) {
    return false;
  }
  const discover::DatabaseFiles files(resolve_source(source));
  const snapshot::Settings settings = snapshot_settings(options, ToConnection{target});
  std::optional<snapshot::MemoryCopy> copy;
  reading_the_source(options,
                     [&] { copy = snapshot::copy_live_wal_set_into_memory(files, settings); });
  if (!copy) return false;
  report.attempts = 1;
  report.validated = true;
  deliver::load_image_into(target, std::move(copy->database), deliver_settings(options), source);
  return true;
}

// The stages up to a recovered copy in `staging`: snapshot, validate and recover, or, with
// copy_use_tempdir off, SQLite's backup API reading the live source, then recovery. Returns
// the staged database.
fs::path staged_snapshot(const fs::path& source, const io::StagingDir& staging,
                         const Options& options, const Delivery& delivery, Report& report,
                         recover::DatabaseFacts& facts) {
  const recover::Settings recovering = recover_settings(options, delivery);
  if (!options.copy_use_tempdir) {
    report.attempts = 1;
    fs::path staged = staging.path() / "snapshot";
    sql::Database from = sql::open_for_reading(source, options.sqlite_connect_kwargs, true, source);
    deliver::copy_file_through_backup_api(from, staged, deliver_settings(options));
    from.close();
    facts = recover::recover_in_place(staged, recovering, source);
    return staged;
  }
  fs::path staged = staged_name(staging, source.filename());
  const std::string unvalidated_reason = snapshot_into(source, staged, options, delivery, report);
  facts = recover_checked(staged, source, recovering, options, report, unvalidated_reason);
  if (std::holds_alternative<ToFile>(delivery) &&
      deliver::wants_backup_api(options.sqlite_backup_kwargs)) {
    deliver::rewrite_through_backup_api(staged, source, deliver_settings(options));
  }
  return staged;
}

recover::DatabaseFacts facts_of(sqlite3* db) {
  recover::DatabaseFacts facts;
  facts.page_size = static_cast<int>(sql::query_int_or_zero(db, "PRAGMA page_size"));
  facts.pages = static_cast<std::uint64_t>(sql::query_int_or_zero(db, "PRAGMA page_count"));
  return facts;
}

void fill_report(Report& report, const fs::path& source, const fs::path& destination,
                 const recover::DatabaseFacts& facts, const Options& options,
                 std::chrono::steady_clock::time_point started) {
  report.source = source;
  report.destination = destination;
  report.page_size = facts.page_size;
  report.pages = facts.pages;
  report.bytes = facts.pages * static_cast<std::uint64_t>(facts.page_size);
  report.verified = options.verify;
  // An unvalidated copy was checked with quick_check at least before it was delivered.
  if (!report.validated && options.verify == Verify::none) report.verified = Verify::quick;
  report.duration = std::chrono::steady_clock::now() - started;
  if (options.report != nullptr) *options.report = report;
}

// The one orchestration of every entry point: discover, snapshot, validate, recover, deliver.
void run_pipeline(const fs::path& source, const Delivery& delivery, const Options& options) {
  const auto started = std::chrono::steady_clock::now();
  Report report;
  recover::DatabaseFacts facts;
  if (const auto* memory = std::get_if<ToConnection>(&delivery)) {
    if (!options.copy_use_tempdir) {
      report.attempts = 1;
      sql::Database from =
          sql::open_for_reading(source, options.sqlite_connect_kwargs, true, source);
      deliver::copy_into(from, memory->target, deliver_settings(options));
      from.close();
    } else if (!snapshot_straight_into(memory->target, source, options, report)) {
      const io::StagingDir staging =
          staging_in_temporary_folder(source.filename().native(), source);
      const fs::path staged = staged_snapshot(source, staging, options, delivery, report, facts);
      if (deliver::wants_backup_api(options.sqlite_backup_kwargs) ||
          !deliver::load_into(memory->target, staged, deliver_settings(options), source)) {
        sql::Database copy =
            sql::open_for_reading(staged, options.sqlite_connect_kwargs, true, source);
        deliver::copy_into(copy, memory->target, deliver_settings(options));
        copy.close();
      }
    }
    facts = facts_of(memory->target);
    fill_report(report, source, {}, facts, options, started);
    log_info("backed up {} into memory ({} pages, {} attempt(s))", quoted(source), facts.pages,
             report.attempts);
    return;
  }
  if (const auto* file = std::get_if<ToFile>(&delivery)) {
    // Staged beside the destination: same filesystem, so the finished file is renamed into
    // place with no second copy. Errors about the staged files name the destination.
    const io::StagingDir staging(folder_of(file->destination),
                                 file->destination.filename().native(), source);
    const fs::path staged = detail::naming_private_files_as(staging.path(), file->destination, [&] {
      return staged_snapshot(source, staging, options, delivery, report, facts);
    });
    deliver::to_file(staged, source, {file->destination, options.overwrite, options.durable},
                     options.cancel);
    fill_report(report, source, file->destination, facts, options, started);
    log_info("backed up {} to {} ({} pages, {} attempt(s))", quoted(source),
             quoted(file->destination), facts.pages, report.attempts);
    return;
  }
  const int fd = std::get<ToDescriptor>(delivery).fd;
  const io::StagingDir staging = staging_in_temporary_folder(source.filename().native(), source);
  const fs::path staged = staged_snapshot(source, staging, options, delivery, report, facts);
  deliver::to_descriptor(staged, fd, source, options.cancel);
  fill_report(report, source, {}, facts, options, started);
  log_info("backed up {} to file descriptor {} ({} pages, {} attempt(s))", quoted(source), fd,
           facts.pages, report.attempts);
}

// Refuses to copy `src` onto itself: opening the target to truncate it would empty the source.
void check_not_copied_onto_itself(const io::FileStat& src_stat, const fs::path& src,
                                  const fs::path& dst, const char* operation) {
  struct stat st {};
  if (::stat(dst.c_str(), &st) == 0 && io::to_file_stat(st).same_file(src_stat)) {
    throw std::invalid_argument(std::string(operation) + ": " + quoted(src) + " and " +
                                quoted(dst) + " are the same file");
  }
}

// atomic_copy's work: copies src to dst and tells whether src stayed the same throughout.
bool copy_and_compare(const fs::path& src, const fs::path& dst, const std::atomic<bool>* cancel) {
  const io::UniqueFd in = io::open_source_file(src);
  if (!in) {
    throw fs::filesystem_error("atomic_copy: cannot open source", src,
                               std::make_error_code(std::errc::no_such_file_or_directory));
  }
  const io::FileStat before = io::stat_fd(in.get(), src);
  check_not_copied_onto_itself(before, src, dst, "atomic_copy");
  detail::throw_if_cancelled(cancel, src);  // (before dst is touched)
  io::UniqueFd out(::open(dst.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!out) io::throw_errno(errno, "cannot create", dst);
  io::copy_file_contents(in.get(), src, out.get(), dst,
                         [cancel](std::uint64_t) { return !detail::cancelled(cancel); });
  if (detail::cancelled(cancel)) {
    // Half a copy is worse than none: it would pass for the file.
    out = io::UniqueFd();
    ::unlink(dst.c_str());
    throw_error(ErrorKind::cancelled, src, "copy of {} to {} cancelled; nothing was kept",
                quoted(src), quoted(dst));
  }
  out.close(dst);
  const auto after = io::stat_path(src);
  return after && before.same_contents_hint(*after);
}

// A destination that is a symbolic link names its target, as for cp and for SQLite's own
// open: the snapshot replaces the target, and the link stays. The kernel resolves it (an
// O_PATH open), so that its rules apply (fs.protected_symlinks: a link another user planted in
// a sticky folder is not followed). A dangling link is refused, as cp refuses it: whoever made
// it, not the caller, chose where the new file would go.
fs::path through_symlinks(const fs::path& destination) {
  std::error_code error;
  if (!fs::is_symlink(destination, error)) return destination;
  const io::UniqueFd target(::open(destination.c_str(), O_PATH | O_CLOEXEC));
  if (!target) {
    if (errno == ENOENT) {
      throw_error(ErrorKind::destination, destination,
                  "refusing to write through the dangling symbolic link {}", quoted(destination));
    }
    io::throw_errno(errno, "cannot follow the symbolic link", destination);
  }
  fs::path resolved = fs::read_symlink("/proc/self/fd/" + std::to_string(target.get()), error);
  if (error) io::throw_errno(error.value(), "cannot follow the symbolic link", destination);
  return resolved;
}

}  // namespace

std::optional<Connection> sqlite_backup(const fs::path& source, std::optional<fs::path> destination,
                                        const Options& options) {
  check_source_exists(source);
  check_options(options);
  if (destination) {
    detail::refuse_a_nul_in(*destination, "sqlite_backup", "destination");
    destination = through_symlinks(*destination);
    check_destination(source, *destination, options.overwrite);
  }
  if (!options.copy_use_tempdir) {
    // info, not warning: the caller chose this (the CLI prints its own warning).
    log_info(
        "copy_use_tempdir is off: reading the live database {} directly; this takes locks "
        "and may fail while the owner writes",
        quoted(source));
  }
  if (destination) {
    run_pipeline(source, ToFile{*destination}, options);
    return std::nullopt;
  }
  sql::Database memory(":memory:", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, "", source);
  run_pipeline(source, ToConnection{memory.get()}, options);
  return Connection(memory.release());
}

void sqlite_backup_to_connection(const fs::path& source, sqlite3* target, const Options& options) {
  if (target == nullptr) {
    throw std::invalid_argument("sqlite_backup_to_connection: the target connection is null");
  }
  check_source_exists(source);
  check_options(options);
  run_pipeline(source, ToConnection{target}, options);
}

// Refuses a descriptor that is not open, and one open on the source or one of its side files
// (`- >> source.db` in a shell): the snapshot would be written into what it is taken from.
void check_descriptor(const fs::path& source, int fd) {
  const fs::path named = fmt::format("/dev/fd/{}", fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) io::throw_errno(errno, "cannot write the snapshot to", named);
  const io::FileStat written = io::to_file_stat(st);
  const discover::DatabaseFiles files(resolve_source(source));
  for (const fs::path& file :
       {files.database, files.wal, files.journal, fs::path(files.database.native() + "-shm")}) {
    const auto existing = io::stat_path(file);
    if (existing && existing->same_file(written)) {
      throw std::invalid_argument("sqlite_backup: 'destination' " + named.native() + " is " +
                                  quoted(file) + ", a file of the source; refusing to write it");
    }
  }
}

void sqlite_backup_to_fd(const fs::path& source, int fd, const Options& options) {
  check_source_exists(source);
  check_options(options);
  check_descriptor(source, fd);
  run_pipeline(source, ToDescriptor{fd}, options);
}

bool atomic_copy(const fs::path& src, const fs::path& dst, const std::atomic<bool>* cancel) {
  detail::refuse_a_nul_in(src, "atomic_copy", "src");
  detail::refuse_a_nul_in(dst, "atomic_copy", "dst");
  bool unchanged = false;
  io::with_private_descriptor_table([&] { unchanged = copy_and_compare(src, dst, cancel); });
  return unchanged;
}

bool copy_all_files(const std::vector<fs::path>& source_files, const fs::path& temporary_dest,
                    const CopyFunction& copy_function, int retry, const std::atomic<bool>* cancel) {
  if (source_files.empty()) throw std::invalid_argument("copy_all_files: no files given");
  if (retry < 1) throw std::invalid_argument("copy_all_files: retry must be at least 1");
  for (const fs::path& file : source_files) {
    detail::refuse_a_nul_in(file, "copy_all_files", "source_files");
  }
  detail::refuse_a_nul_in(temporary_dest, "copy_all_files", "temporary_dest");
  const discover::DatabaseFiles files(source_files.front());
  for (const fs::path& file : {files.database, files.wal, files.journal}) {
    if (const auto existing = io::stat_path(file)) {
      check_not_copied_onto_itself(*existing, file, temporary_dest / file.filename(),
                                   "copy_all_files");
    }
  }
  snapshot::Settings settings;
  settings.attempts = retry;
  settings.copy_function = copy_function;
  settings.cancel = cancel;
  settings.follow_commits = false;  // the caller gets the files themselves, to open as they are
  detail::throw_if_cancelled(cancel, source_files.front());  // (before anything is touched)
  const fs::path staged = temporary_dest / source_files.front().filename();
  bool validated = false;
  try {
    io::with_private_descriptor_table(
        [&] { validated = snapshot::copy_consistent_set(files, staged, settings).validated; });
  } catch (const SqliteBackupError& error) {
    if (error.kind() == ErrorKind::cancelled) {
      // Stopped half-way: what was written is no copy of anything. (Another failure leaves
      // the files as the reference's copy loop left them.)
      const discover::DatabaseFiles written(staged);
      for (const fs::path& file : {written.database, written.wal, written.journal}) {
        ::unlink(file.c_str());
      }
    }
    throw;
  }
  return validated;
}

Connection sqlite_connect_immutable(const fs::path& database) {
  detail::refuse_a_nul_in(database, "sqlite_connect_immutable", "database");
  sql::Database db(sql::file_uri(database, "mode=ro&immutable=1"),
                   SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, "", database);
  db.query_int("SELECT count(*) FROM sqlite_schema", "cannot read");
  return Connection(db.release());
}

}  // namespace sqlite_backup
