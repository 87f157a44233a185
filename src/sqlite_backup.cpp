// The public entry points: argument checks, then the pipeline
//   discover -> snapshot (copy + validate) -> finalize (recover, verify, commit).
#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <sqlite_backup/sqlite_backup.hpp>
#include <system_error>

#include "discover/database_files.hpp"
#include "error_internal.hpp"
#include "finalize/finalize.hpp"
#include "io/copy.hpp"
#include "io/file.hpp"
#include "io/staging.hpp"
#include "log_internal.hpp"
#include "snapshot/copy_set.hpp"
#include "sqlite/uri.hpp"
#include "validate/set_state.hpp"

namespace sqlite_backup {
namespace {

namespace fs = std::filesystem;
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
  std::error_code error;
  const auto source_stat = io::stat_path(source);
  const auto destination_stat = io::stat_path(destination);
  const std::string canonical_source = fs::weakly_canonical(source, error).native();
  const std::string canonical_destination = fs::weakly_canonical(destination, error).native();
  if ((source_stat && destination_stat && source_stat->same_file(*destination_stat)) ||
      canonical_source == canonical_destination) {
    throw std::invalid_argument("sqlite_backup: 'source' and 'destination' can't be the same (" +
                                quoted(source) + " and " + quoted(destination) + ")");
  }
  for (const char* suffix : {"-wal", "-journal", "-shm"}) {
    if (canonical_destination == canonical_source + suffix) {
      throw std::invalid_argument("sqlite_backup: 'destination' " + quoted(destination) +
                                  " is a side file of the source; refusing to write it");
    }
  }
  if (destination_stat) {
    if (S_ISDIR(destination_stat->mode)) {
      throw_error(ErrorKind::destination, destination, "refusing to write {}: it is a folder",
                  quoted(destination));
    }
    if (!overwrite) {
      throw_error(ErrorKind::destination, destination,
                  "refusing to write {}: it already exists (not overwriting)", quoted(destination));
    }
  }
  const fs::path parent = destination.has_parent_path() ? destination.parent_path() : fs::path(".");
  if (!fs::is_directory(parent, error)) {
    throw_error(ErrorKind::destination, destination,
                "cannot write {}: its folder {} does not exist", quoted(destination),
                quoted(parent));
  }
}

fs::path temporary_folder() {
  std::error_code error;
  fs::path folder = fs::temp_directory_path(error);
  return error ? fs::path("/tmp") : folder;
}

// SQLite keeps the -wal and -journal beside the file a symlink points to, not beside the
// link; so do we.
fs::path resolve_source(const fs::path& source) {
  std::error_code error;
  fs::path resolved = fs::canonical(source, error);
  return error ? source : resolved;
}

// Copies the source into `staging` (validated unless the caller accepts otherwise) and rolls
// the copy back through a transaction that committed while it was copied. Returns the staged
// database path; finalize::recover_in_place() then lets SQLite recover it there.
fs::path snapshot_into(const fs::path& source, const io::StagingDir& staging,
                       const Options& options, Report& report,
                       const fs::path& destination_for_errors) {
  const discover::DatabaseFiles files(resolve_source(source));
  fs::path staged =
      staging.path() / (source.filename().empty() ? fs::path("database") : source.filename());
  snapshot::Settings settings;
  settings.attempts = options.copy_retry;
  settings.copy_function = options.copy_function;
  settings.cancel = options.cancel;
  settings.on_progress = options.on_progress;
  // Writeback started early only helps a copy that will be fsynced.
  settings.start_writeback = options.durable && !destination_for_errors.empty();
  settings.destination_for_errors = destination_for_errors;
  const snapshot::Outcome outcome = snapshot::copy_consistent_set(files, staged, settings);
  for (const snapshot::RollbackStep& step : outcome.journals_to_roll_back) {
    finalize::roll_back(staged, step.journal, step.expected_change_counter, options, source);
  }
  report.attempts = outcome.attempts;
  report.validated = outcome.validated;
  if (!outcome.validated) {
    if (options.copy_retry_strict) {
      throw_error(
          ErrorKind::unstable_source, source,
          "cannot snapshot {}: failed to copy all files without any of them changing {} times "
          "(last: {})",
          quoted(source), options.copy_retry, outcome.last_reason);
    }
    log_warning(
        "{} kept changing for {} attempts ({}); using the last copy, which may be inconsistent",
        quoted(source), options.copy_retry, outcome.last_reason);
  }
  return staged;
}

void fill_report(Report& report, const fs::path& source, const fs::path& destination,
                 const finalize::DatabaseFacts& facts, const Options& options,
                 std::chrono::steady_clock::time_point started) {
  report.source = source;
  report.destination = destination;
  report.page_size = facts.page_size;
  report.pages = facts.pages;
  report.bytes = facts.pages * static_cast<std::uint64_t>(facts.page_size);
  report.verified = options.verify;
  report.duration = std::chrono::steady_clock::now() - started;
  if (options.report != nullptr) *options.report = report;
}

finalize::DatabaseFacts facts_of(sqlite3* db) {
  const auto pragma = [db](const char* sql) -> std::int64_t {
    sqlite3_stmt* statement = nullptr;
    std::int64_t value = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &statement, nullptr) == SQLITE_OK &&
        sqlite3_step(statement) == SQLITE_ROW) {
      value = sqlite3_column_int64(statement, 0);
    }
    sqlite3_finalize(statement);
    return value;
  };
  finalize::DatabaseFacts facts;
  facts.page_size = static_cast<int>(pragma("PRAGMA page_size"));
  facts.pages = static_cast<std::uint64_t>(pragma("PRAGMA page_count"));
  return facts;
}

fs::path folder_of(const fs::path& destination) {
  return destination.parent_path().empty() ? fs::path(".") : destination.parent_path();
}

// The last stage for file destinations: SQLite recovers the staged copy, which then appears
// at the destination atomically with the source's permission bits.
void finish_into(const fs::path& staged, const fs::path& source, const fs::path& destination,
                 const Options& options, Report& report,
                 std::chrono::steady_clock::time_point started) {
  const finalize::DatabaseFacts facts =
      finalize::recover_in_place(staged, options, source, destination);
  detail::throw_if_cancelled(options.cancel, source);
  const auto source_stat = io::stat_path(source);
  io::commit_file(staged, destination, source_stat ? (source_stat->mode & 0666) : 0600,
                  options.overwrite, options.durable);
  fill_report(report, source, destination, facts, options, started);
  log_info("backed up {} to {} ({} pages, {} attempt(s))", quoted(source), quoted(destination),
           facts.pages, report.attempts);
}

std::optional<Connection> backup_live(const fs::path& source,
                                      const std::optional<fs::path>& destination,
                                      const Options& options,
                                      std::chrono::steady_clock::time_point started) {
  Report report;
  report.attempts = 1;
  sql::Database from =
      finalize::open_for_reading(source, options.sqlite_connect_kwargs, true, source);
  if (!destination) {
    Connection memory = finalize::copy_into_memory(from, options);
    fill_report(report, source, {}, facts_of(memory.get()), options, started);
    return memory;
  }
  const io::StagingDir staging(folder_of(*destination), destination->filename().native());
  fs::path staged = staging.path() / destination->filename();
  {
    sql::Database to(sql::file_uri(staged),
                     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, "",
                     *destination);
    finalize::backup_api_copy(from, to, options);
    to.close();
  }
  from.close();
  finish_into(staged, source, *destination, options, report, started);
  return std::nullopt;
}

}  // namespace

std::optional<Connection> sqlite_backup(const fs::path& source, std::optional<fs::path> destination,
                                        const Options& options) {
  const auto started = std::chrono::steady_clock::now();
  check_source_exists(source);
  check_options(options);
  if (destination) check_destination(source, *destination, options.overwrite);

  if (!options.copy_use_tempdir) {
    // info, not warning: the caller chose this (the CLI prints its own warning).
    log_info(
        "copy_use_tempdir is off: reading the live database {} directly; this takes locks "
        "and may fail while the owner writes",
        quoted(source));
    return backup_live(source, destination, options, started);
  }

  Report report;
  if (destination) {
    // Staged beside the destination: same filesystem, so the finished file is renamed into
    // place with no second copy.
    const io::StagingDir staging(folder_of(*destination), destination->filename().native());
    const fs::path staged = snapshot_into(source, staging, options, report, *destination);
    finish_into(staged, source, *destination, options, report, started);
    return std::nullopt;
  }

  const io::StagingDir staging(temporary_folder(), source.filename().native());
  const fs::path staged = snapshot_into(source, staging, options, report, {});
  Options recover_options = options;
  recover_options.verify = Verify::none;  // verified once, in memory
  finalize::recover_in_place(staged, recover_options, source);
  Connection memory;
  if (finalize::wants_backup_api(options.sqlite_backup_kwargs)) {
    sql::Database copy =
        finalize::open_for_reading(staged, options.sqlite_connect_kwargs, true, source);
    memory = finalize::copy_into_memory(copy, options);
    copy.close();
  } else {
    memory = finalize::load_into_memory(staged, options, source);
  }
  const finalize::DatabaseFacts facts = facts_of(memory.get());
  fill_report(report, source, {}, facts, options, started);
  log_info("backed up {} into memory ({} pages, {} attempt(s))", quoted(source), facts.pages,
           report.attempts);
  return memory;
}

void sqlite_backup_to_fd(const fs::path& source, int fd, const Options& options) {
  const auto started = std::chrono::steady_clock::now();
  check_source_exists(source);
  check_options(options);
  const io::StagingDir staging(temporary_folder(), source.filename().native());
  Report report;
  fs::path staged;
  finalize::DatabaseFacts facts;
  if (options.copy_use_tempdir) {
    staged = snapshot_into(source, staging, options, report, {});
    facts = finalize::recover_in_place(staged, options, source);
  } else {
    staged = staging.path() / "snapshot";
    Options live = options;
    live.overwrite = true;
    live.report = &report;
    backup_live(source, staged, live, started);
    facts.pages = report.pages;
    facts.page_size = report.page_size;
  }
  const io::UniqueFd in = io::open_source_file(staged);
  const fs::path output = fmt::format("(file descriptor {})", fd);
  io::copy_file_contents(in.get(), staged, fd, output,
                         [&](std::uint64_t) { return !detail::cancelled(options.cancel); });
  detail::throw_if_cancelled(options.cancel, source);
  fill_report(report, source, {}, facts, options, started);
}

bool atomic_copy(const fs::path& src, const fs::path& dst) {
  const io::UniqueFd in = io::open_source_file(src);
  if (!in) {
    throw fs::filesystem_error("atomic_copy: cannot open source", src,
                               std::make_error_code(std::errc::no_such_file_or_directory));
  }
  const io::FileStat before = io::stat_fd(in.get(), src);
  io::UniqueFd out(::open(dst.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!out) io::throw_errno(errno, "cannot create", dst);
  io::copy_file_contents(in.get(), src, out.get(), dst);
  out.close(dst);
  const auto after = io::stat_path(src);
  return after && before.same_contents_hint(*after);
}

bool copy_all_files(const std::vector<fs::path>& source_files, const fs::path& temporary_dest,
                    const CopyFunction& copy_function, int retry) {
  if (source_files.empty()) throw std::invalid_argument("copy_all_files: no files given");
  if (retry < 1) throw std::invalid_argument("copy_all_files: retry must be at least 1");
  const discover::DatabaseFiles files(source_files.front());
  snapshot::Settings settings;
  settings.attempts = retry;
  settings.copy_function = copy_function;
  settings.follow_commits = false;  // the caller gets the files themselves, to open as they are
  return snapshot::copy_consistent_set(files, temporary_dest / source_files.front().filename(),
                                       settings)
      .validated;
}

Connection sqlite_connect_immutable(const fs::path& database) {
  sql::Database db(sql::file_uri(database, "mode=ro&immutable=1"),
                   SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, "", database);
  db.query_int("SELECT count(*) FROM sqlite_schema", "cannot read");
  return Connection(db.release());
}

}  // namespace sqlite_backup
