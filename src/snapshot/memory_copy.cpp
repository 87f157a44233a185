#include "snapshot/memory_copy.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <string_view>

#include "error_internal.hpp"
#include "io/copy.hpp"
#include "io/file.hpp"
#include "log_internal.hpp"
#include "recover/apply_wal.hpp"
#include "recover/memory_image.hpp"
#include "validate/set_state.hpp"

namespace sqlite_backup::snapshot {

using detail::log_debug;
using detail::quoted;

namespace {

std::optional<MemoryCopy> copy_into_memory(const discover::DatabaseFiles& source,
                                           const Settings& settings) {
  if (settings.copy_function) return std::nullopt;
  detail::throw_if_cancelled(settings.cancel, source.database);
  const validate::SetState before = validate::capture(source);
  if (!validate::has_live_wal(before) || before.journal.exists) return std::nullopt;

  const std::uint64_t total = before.database.stat.size + before.wal.stat.size;
  const auto observer = [&settings, total](std::uint64_t done) {
    if (detail::cancelled(settings.cancel)) return false;
    if (settings.on_progress) settings.on_progress({done, total, 1});
    return true;
  };
  MemoryCopy copy;
  // Room for the database as large as the WAL can make it (each frame adds at most a page),
  // reserved up front: growing the buffer later would copy it (measured: a second 200 MiB at
  // the peak). Memory reserved but never touched costs nothing.
  if (!copy.database.reserve_image(total + 1, source.database)) {
    log_debug("no memory file with room for {} bytes of {}; copying through files instead", total,
              quoted(source.database));
    return std::nullopt;
  }
  // The database first, then the WAL: judge() relies on this order.
  const io::UniqueFd database = io::open_source_file(source.database);
  if (!database || !io::stat_fd(database.get(), source.database).same_file(before.database.stat)) {
    return std::nullopt;
  }
  // The WAL's frames are scanned (their checksums are most of the application's work) by the
  // second thread before it joins the read: the application after the read then goes on from
  // the look's last commit, provided it finds the same generation of the WAL (frames
  // committed in one generation are never rewritten), and the order stays database, then WAL.
  std::optional<recover::WalPages> first_look;
  const std::uint64_t database_bytes = io::read_file_into(
      database.get(), source.database, copy.database, observer, [&source, &settings, &first_look] {
        const io::UniqueFd wal = io::open_source_file(source.wal);
        if (wal) {
          first_look =
              recover::committed_pages_of_live_wal(wal.get(), settings.cancel, source.database);
        }
      });
  detail::throw_if_cancelled(settings.cancel, source.database);

  const io::UniqueFd wal = io::open_source_file(source.wal);
  if (!wal) return std::nullopt;
  // Reading the WAL is applying it: its committed frames go straight to their pages.
  recover::MemoryImage image(copy.database, source.database);
  const recover::WalApplication applied = recover::apply_live_wal(
      image, wal.get(), settings.cancel, source.database, first_look ? &*first_look : nullptr);
  if (!applied.applied) {
    log_debug("not applying the WAL of {} in memory ({}); copying through files instead",
              quoted(source.database), applied.why_not);
    return std::nullopt;
  }

  validate::DuringCopy during;
  during.staged_database_bytes = database_bytes;
  validate::CopiedSet copied;
  copied.wal = validate::wal_as_read(applied.wal_header);
  const validate::Verdict verdict =
      validate::judge(before, validate::capture(source), copied, during);
  if (!verdict.consistent || verdict.need != validate::Need::nothing_more) {
    log_debug("the copy of {} into memory is not one state ({}); copying through files instead",
              quoted(source.database), verdict.reason);
    return std::nullopt;
  }
  // (The memory file's descriptor is this thread's: see io::SqliteMemory::close_memory_file.)
  copy.database.close_memory_file();
  copy.bytes = database_bytes + applied.wal_bytes;
  if (settings.on_progress) settings.on_progress({copy.bytes, copy.bytes, 1});
  log_debug(
      "read {} straight into memory ({} bytes) and applied its WAL there ({} committed frames, "
      "{} pages): one consistent state",
      quoted(source.database), database_bytes, applied.committed_frames, applied.pages_written);
  return copy;
}

}  // namespace

std::optional<MemoryCopy> copy_live_wal_set_into_memory(const discover::DatabaseFiles& source,
                                                        const Settings& settings) {
  try {
    return copy_into_memory(source, settings);
  } catch (const io::ImageOutgrewHeapMemory& outgrown) {
    // (Through files the copy is not held in memory until it is whole, and SQLite's backup
    // API then copies it into a database that grows without that bound.)
    const std::string_view why = outgrown.what();
    log_debug("{}; copying through files instead", why);
    return std::nullopt;
  }
}

}  // namespace sqlite_backup::snapshot
