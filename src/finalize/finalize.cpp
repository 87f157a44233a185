#include "finalize/finalize.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <span>
#include <string_view>
#include <thread>
#include <utility>

#include "error_internal.hpp"
#include "finalize/apply_wal.hpp"
#include "io/file.hpp"
#include "log_internal.hpp"
#include "sqlite/backup.hpp"
#include "sqlite/uri.hpp"
#include "validate/set_state.hpp"

namespace sqlite_backup::finalize {
namespace {

using detail::log_debug;
using detail::quoted;
using detail::throw_error;

void run_verification(sqlite3* db, Verify verify, const std::filesystem::path& source) {
  if (verify == Verify::none) return;
  const char* pragma =
      verify == Verify::quick ? "PRAGMA quick_check(10)" : "PRAGMA integrity_check(10)";
  const char* check_name = verify == Verify::quick ? "quick_check" : "integrity_check";
  std::string problems;
  try {
    sql::Statement check(db, pragma, "cannot verify the snapshot of", source);
    while (check.step()) {
      const std::string line = check.column_text(0);
      if (line == "ok") return;
      if (!problems.empty()) problems += "; ";
      problems += line;
    }
  } catch (const SqliteBackupError& error) {
    // Damage the check runs into (SQLite gives up with SQLITE_CORRUPT on a page it cannot
    // parse) is what the check is there to find, just as the damage it lists: both are a
    // failed verification. A copy SQLite could not open or recover at all failed earlier,
    // as an invalid source.
    if (error.kind() != ErrorKind::invalid_source) throw;
    problems = error.what();
  }
  throw_error(ErrorKind::verification_failed, source,
              "verification ({}) of the snapshot of {} failed: {}", check_name, quoted(source),
              problems);
}

// Replaying a large WAL or checking a large database takes a while: let SQLite look at the
// cancel flag every few thousand instructions (it then fails with SQLITE_INTERRUPT, which
// sql::classify() turns into ErrorKind::cancelled). For our own connections, which are closed
// before the flag goes.
void allow_cancellation(sqlite3* db, const Settings& settings) {
  if (settings.cancel == nullptr) return;
  sqlite3_progress_handler(
      db, 10000,
      [](void* flag) -> int { return static_cast<const std::atomic<bool>*>(flag)->load() ? 1 : 0; },
      // SQLite's C API takes void*; the handler above only reads through it.
      // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast)
      const_cast<std::atomic<bool>*>(settings.cancel));
}

// The same for a connection that may be the caller's and outlive the flag: the handler is
// removed again when the guard goes.
class CancellationHandler {
 public:
  CancellationHandler(sqlite3* db, const Settings& settings) : db_(db) {
    if (settings.cancel == nullptr) return;
    allow_cancellation(db_, settings);
    installed_ = true;
  }
  CancellationHandler(const CancellationHandler&) = delete;
  CancellationHandler& operator=(const CancellationHandler&) = delete;
  CancellationHandler(CancellationHandler&&) = delete;
  CancellationHandler& operator=(CancellationHandler&&) = delete;
  ~CancellationHandler() {
    if (installed_) sqlite3_progress_handler(db_, 0, nullptr, nullptr);
  }

 private:
  sqlite3* db_;
  bool installed_ = false;
};

}  // namespace

sql::Database open_for_reading(const std::filesystem::path& database, const ConnectOptions& connect,
                               bool read_only, const std::filesystem::path& source,
                               const std::filesystem::path& open_path_for_errors) {
  std::string query = read_only ? "mode=ro" : "mode=rw";
  if (!connect.uri_parameters.empty()) query += "&" + connect.uri_parameters;
  const int flags = (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_URI |
                    connect.open_flags;
  sql::Database db(sql::openable_file(database, query, connect.vfs), flags, source,
                   open_path_for_errors);
  db.set_busy_timeout(static_cast<int>(connect.busy_timeout.count()));
  return db;
}

void roll_back(const std::filesystem::path& staged, const std::filesystem::path& journal,
               std::uint32_t expected_change_counter, const Settings& settings,
               const std::filesystem::path& source,
               const std::filesystem::path& destination_for_errors) {
  const std::filesystem::path hot_journal = staged.string() + "-journal";
  if (::rename(journal.c_str(), hot_journal.c_str()) != 0) {
    io::throw_errno(errno, "cannot prepare the rollback of the snapshot of", source);
  }
  {
    sql::Database db =
        open_for_reading(staged, settings.connect, false, source,
                         destination_for_errors.empty() ? staged : destination_for_errors);
    allow_cancellation(db.get(), settings);
    // Private until commit: the rollback need not wait for the disk.
    db.exec("PRAGMA synchronous=OFF", "cannot configure the snapshot of");
    db.query_int("SELECT count(*) FROM sqlite_schema", "cannot roll back the snapshot of");
    db.close();
  }
  const std::uint32_t counter =
      validate::change_counter(validate::capture_member(staged, validate::kDatabaseHeaderSize));
  if (io::stat_path(hot_journal) || counter != expected_change_counter) {
    throw_error(ErrorKind::sqlite, source,
                "cannot roll back the snapshot of {}: SQLite did not play back the journal of the "
                "transaction that committed during the copy (change counter {}, expected {})",
                quoted(source), counter, expected_change_counter);
  }
  log_debug("rolled the snapshot of {} back to change counter {}", quoted(source), counter);
}

DatabaseFacts recover_in_place(const std::filesystem::path& staged, const Settings& settings,
                               const std::filesystem::path& source,
                               const std::filesystem::path& destination_for_errors) {
  // SQLite would rebuild the WAL's index (reading every frame in small reads) and then
  // checkpoint it (reading each page again); applying the committed frames ourselves reads
  // the WAL twice in large windows and writes each page once. SQLite keeps the job where it
  // reads the files in a way of its own (see sqlite_reads_plain_files), and where a hot
  // journal was staged beside the WAL: SQLite rolls that back first, then reads the WAL.
  const std::filesystem::path staged_wal = staged.string() + "-wal";
  if (sqlite_reads_plain_files(settings.connect) && io::stat_path(staged_wal) &&
      !io::stat_path(staged.string() + "-journal")) {
    apply_wal(staged, staged_wal, settings.cancel, source,
              destination_for_errors.empty() ? staged : destination_for_errors);
  }
  // A staged copy that cannot even be opened is a problem of where it is staged (the
  // destination's folder, or the temporary one), not of the source: the error names that.
  sql::Database db =
      open_for_reading(staged, settings.connect, false, source,
                       destination_for_errors.empty() ? staged : destination_for_errors);
  allow_cancellation(db.get(), settings);
  // The copy is private until commit_file() fsyncs it once; SQLite's own syncs during the
  // replay would only make the disk wait several times for the same bytes.
  db.exec("PRAGMA synchronous=OFF", "cannot configure the snapshot of");
  // The first statement makes SQLite look at the copy: it replays the WAL (rebuilding the
  // index the missing -shm held) or rolls back a hot journal. A file that is not a
  // database, or is cut short, fails here.
  const std::string mode =
      db.query_text("PRAGMA journal_mode=DELETE", "cannot recover the snapshot of");
  if (mode != "delete") {
    throw_error(ErrorKind::sqlite, source,
                "cannot switch the snapshot of {} to journal_mode=DELETE (still {})",
                quoted(source), mode);
  }
  // Reading the schema checks the header and page 1 (a truncated file whose header counts
  // more pages than it has is reported as malformed here).
  db.query_int("SELECT count(*) FROM sqlite_schema", "cannot read the snapshot of");
  if (settings.wal_checkpoint) {
    // A no-op in DELETE mode; kept because the reference guarantees it, and so that builds
    // with SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE leave nothing behind either.
    db.query_text("PRAGMA wal_checkpoint(TRUNCATE)", "cannot checkpoint the snapshot of");
  }
  detail::throw_if_cancelled(settings.cancel, source);
  run_verification(db.get(), settings.verify, source);
  DatabaseFacts facts;
  facts.page_size =
      static_cast<int>(db.query_int("PRAGMA page_size", "cannot read the snapshot of"));
  facts.pages =
      static_cast<std::uint64_t>(db.query_int("PRAGMA page_count", "cannot read the snapshot of"));
  db.close();
  log_debug("recovered the snapshot of {}: {} pages of {} bytes", quoted(source), facts.pages,
            facts.page_size);
  return facts;
}

void backup_api_copy(sql::Database& from, sqlite3* to, const Settings& settings,
                     const std::filesystem::path& to_for_errors) {
  const BackupOptions& backup = settings.backup;
  sql::Backup handle(to, from, backup.name, to_for_errors);
  const auto busy_limit = settings.connect.busy_timeout;
  auto busy_since = std::chrono::steady_clock::time_point{};
  bool busy = false;
  int step = 0;
  // on_progress speaks in bytes; the backup API in pages.
  const auto page_size =
      static_cast<std::uint64_t>(from.query_int("PRAGMA page_size", "cannot read"));
  for (;;) {
    detail::throw_if_cancelled(settings.cancel, from.path());
    const int rc = sqlite3_backup_step(handle.get(), backup.pages);
    ++step;
    const int remaining = sqlite3_backup_remaining(handle.get());
    const int total = sqlite3_backup_pagecount(handle.get());
    log_debug("backup step {}: {} of {} pages remaining", step, remaining, total);
    if (backup.progress) backup.progress(rc, remaining, total);
    if (settings.on_progress) {
      settings.on_progress({static_cast<std::uint64_t>(total - remaining) * page_size,
                            static_cast<std::uint64_t>(total) * page_size, 1});
    }
    if (rc == SQLITE_DONE) break;
    if (rc == SQLITE_OK) {
      busy = false;
      continue;
    }
    if (sql::is_retryable(rc)) {
      const auto now = std::chrono::steady_clock::now();
      if (!busy) {
        busy = true;
        busy_since = now;
      } else if (now - busy_since > busy_limit) {
        handle.finish();
        throw_error(ErrorKind::sqlite, from.path(),
                    "cannot back up {}: the database stayed locked by another connection for {} ms",
                    quoted(from.path()), busy_limit.count());
      }
      std::this_thread::sleep_for(backup.sleep);
      continue;
    }
    handle.finish();
    sql::throw_result(rc, to, "cannot back up", from.path());
  }
  const int rc = handle.finish();
  if (rc != SQLITE_OK) sql::throw_result(rc, to, "cannot finish the backup of", from.path());
}

void copy_into(sql::Database& from, sqlite3* target, const Settings& settings,
               const std::filesystem::path& source) {
  const CancellationHandler cancellation(target, settings);
  backup_api_copy(from, target, settings, source);
  run_verification(target, settings.verify, source);
}

// Whether SQLite reads the staged files as the plain files of the documented format: the
// caller named no VFS and no URI parameters, and the process's default VFS is SQLite's
// built-in one (a host application may have made its own the default: page encryption or
// checksums change the bytes on disk).
bool sqlite_reads_plain_files(const ConnectOptions& connect) {
  if (!connect.vfs.empty() || !connect.uri_parameters.empty()) return false;
  const sqlite3_vfs* vfs = sqlite3_vfs_find(nullptr);
  return vfs != nullptr && vfs->zName != nullptr && std::string_view(vfs->zName) == "unix";
}

bool wants_backup_api(const BackupOptions& backup) noexcept {
  return backup.pages != -1 || static_cast<bool>(backup.progress) || backup.name != "main";
}

namespace {

// Hands `memory` to `target` (SQLite owns it from here on, also when this fails).
void deserialize_into(sqlite3* target, io::SqliteMemory memory,
                      const std::filesystem::path& source) {
  const auto size = static_cast<sqlite3_int64>(memory.size());
  const auto capacity = static_cast<sqlite3_int64>(memory.capacity());
  const int rc = sqlite3_deserialize(
      target, "main", static_cast<unsigned char*>(static_cast<void*>(memory.release())), size,
      capacity, SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE);
  if (rc != SQLITE_OK) {
    sql::throw_result(rc, target, "cannot load into memory the snapshot of", source);
  }
}

}  // namespace

void load_image_into(sqlite3* target, io::SqliteMemory database, const Settings& settings,
                     const std::filesystem::path& source) {
  deserialize_into(target, std::move(database), source);
  const CancellationHandler cancellation(target, settings);
  // Reading the schema checks the header and page 1, as opening a staged copy does.
  sql::Statement schema(target, "SELECT count(*) FROM sqlite_schema", "cannot read the snapshot of",
                        source);
  schema.step();
  run_verification(target, settings.verify, source);
}

void load_into(sqlite3* target, const std::filesystem::path& staged, const Settings& settings,
               const std::filesystem::path& source) {
  const io::UniqueFd fd = io::open_source_file(staged);
  if (!fd) io::throw_errno(ENOENT, "cannot read the snapshot of", source);
  io::SqliteMemory memory;
  io::read_file_into(fd.get(), staged, memory, {});
  deserialize_into(target, std::move(memory), source);
  const CancellationHandler cancellation(target, settings);
  run_verification(target, settings.verify, source);
}

}  // namespace sqlite_backup::finalize
