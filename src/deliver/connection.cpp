#include "deliver/connection.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <string_view>
#include <thread>
#include <utility>

#include "error_internal.hpp"
#include "io/file.hpp"
#include "log_internal.hpp"
#include "sqlite/backup.hpp"
#include "sqlite/connect.hpp"

namespace sqlite_backup::deliver {
namespace {

using detail::log_debug;
using detail::quoted;
using detail::throw_error;

// Hands `memory` to `target` (SQLite owns it from here on, also when this fails).
void deserialize_into(sqlite3* target, io::SqliteMemory memory,
                      const std::filesystem::path& source) {
  const int rc = memory.hand_to(target);
  if (rc != SQLITE_OK) {
    sql::throw_result(rc, target, "cannot load into memory the snapshot of", source);
  }
  // A deserialized database in heap memory may grow to 1 GiB only, by SQLite's default,
  // where a plain ":memory:" one (the reference's) grows without a limit: lift it to just
  // under what SQLite's allocator gives one block (io::kLargestHeapBlock). Not above: SQLite
  // doubles a growing image, capped at this limit, so a higher one would make the doubled
  // request fail once the image passes 1 GiB.
  sqlite3_int64 limit = kLargestMemoryGrowth;
  sqlite3_file_control(target, "main", SQLITE_FCNTL_SIZE_LIMIT, &limit);
}

// SQLite's backup API refuses (SQLITE_READONLY) to change the page size of an in-memory
// database that already has pages, which a caller's connection may well have: a result code
// that alone would send the caller looking for a read-only file.
void throw_if_page_sizes_differ(int rc, sqlite3* to, std::uint64_t source_page_size,
                                const std::filesystem::path& source) {
  if ((rc & 0xff) != SQLITE_READONLY) return;
  // In memory: ":memory:" (no file name), or a database deserialized there (SQLite names it
  // "x", on its "memdb" VFS), as an earlier snapshot into the same connection is.
  const char* const file = sqlite3_db_filename(to, "main");
  sqlite3_vfs* vfs = nullptr;
  const bool in_memory =
      file == nullptr || *file == '\0' ||
      (sqlite3_file_control(to, "main", SQLITE_FCNTL_VFS_POINTER, &vfs) == SQLITE_OK &&
       vfs != nullptr && std::string_view(vfs->zName) == "memdb");
  if (!in_memory) return;
  const std::int64_t page_size = sql::query_int_or_zero(to, "PRAGMA main.page_size");
  if (page_size <= 0 || static_cast<std::uint64_t>(page_size) == source_page_size) return;
  throw_error(ErrorCause{.sqlite_result = rc}, ErrorKind::sqlite, source,
              "cannot back up {} into the connection's in-memory database: its pages "
              "are {} bytes and the source's {}, and SQLite's backup API cannot change the page "
              "size of an in-memory database that has any (a new connection can take it)",
              quoted(source), page_size, source_page_size);
}

}  // namespace

bool wants_backup_api(const BackupOptions& backup) noexcept {
  return backup.pages != -1 || static_cast<bool>(backup.progress) || backup.name != "main";
}

void backup_api_copy(sql::Database& from, sqlite3* to, const Settings& settings,
                     const std::filesystem::path& destination) {
  const BackupOptions& backup = settings.backup;
  // The file a failed step names: SQLite's backup API reports the source's failures and the
  // destination's alike, and only a failure to write is the destination's.
  const auto writing = [&](int rc) { return !destination.empty() && sql::is_write_failure(rc); };
  const auto failed_file = [&](int rc) -> const std::filesystem::path& {
    return writing(rc) ? destination : from.path();
  };
  sql::Backup handle(to, from, backup.name);
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
      } else if (!backup.wait_while_busy && now - busy_since > busy_limit) {
        handle.finish();
        throw_error(ErrorCause{.sqlite_result = rc}, ErrorKind::sqlite, from.path(),
                    "cannot back up {}: the database stayed locked by another connection for {} ms",
                    quoted(from.path()), busy_limit.count());
      }
      std::this_thread::sleep_for(backup.sleep);
      continue;
    }
    handle.finish();
    throw_if_page_sizes_differ(rc, to, page_size, from.path());
    sql::throw_result(rc, to, writing(rc) ? "cannot write" : "cannot back up", failed_file(rc));
  }
  const int rc = handle.finish();
  if (rc != SQLITE_OK) {
    sql::throw_result(rc, to, writing(rc) ? "cannot finish writing" : "cannot finish the backup of",
                      failed_file(rc));
  }
}

void copy_into(sql::Database& from, sqlite3* target, const Settings& settings) {
  const sql::CancellationHandler cancellation(target, settings.cancel);
  backup_api_copy(from, target, settings);
  sql::verify(target, settings.verify, from.path());
}

void load_image_into(sqlite3* target, io::SqliteMemory database, const Settings& settings,
                     const std::filesystem::path& source) {
  deserialize_into(target, std::move(database), source);
  const sql::CancellationHandler cancellation(target, settings.cancel);
  // Reading the schema checks the header and page 1, as opening a staged copy does.
  sql::Statement schema(target, "SELECT count(*) FROM sqlite_schema", "cannot read the snapshot of",
                        source);
  schema.step();
  sql::verify(target, settings.verify, source);
}

bool load_into(sqlite3* target, const std::filesystem::path& staged, const Settings& settings,
               const std::filesystem::path& source) {
  const io::UniqueFd fd = io::open_source_file(staged);
  if (!fd) io::throw_errno(ENOENT, "cannot read the snapshot of", source);
  io::SqliteMemory memory;
  const std::uint64_t size = io::stat_fd(fd.get(), source).size;
  if (!memory.reserve_image(std::max<std::uint64_t>(size, 1), source)) {
    log_debug("no memory file with room for the {} bytes of the snapshot of {}", size,
              quoted(source));
    return false;
  }
  io::read_file_into(fd.get(), source, memory, {});
  deserialize_into(target, std::move(memory), source);
  const sql::CancellationHandler cancellation(target, settings.cancel);
  sql::verify(target, settings.verify, source);
  return true;
}

}  // namespace sqlite_backup::deliver
