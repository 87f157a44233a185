#include "recover/recover.hpp"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "error_internal.hpp"
#include "io/file.hpp"
#include "log_internal.hpp"
#include "recover/apply_wal.hpp"
#include "sqlite/connect.hpp"
#include "validate/set_state.hpp"

namespace sqlite_backup::recover {

using detail::log_debug;
using detail::quoted;
using detail::throw_error;

namespace {

// The caller's connection options with psow=1 first (the first of a URI's parameters wins):
// SQLite plays a hot journal back only if it is at least one of the reader's sectors long, and
// a reader without powersafe overwrite (psow=0 among the caller's parameters) takes 4096-byte
// sectors where the owner wrote 512-byte ones, and drops a shorter journal without a word
// (helper-33, helper-35).
ConnectOptions with_powersafe_overwrite(ConnectOptions connect) {
  connect.uri_parameters =
      connect.uri_parameters.empty() ? "psow=1" : "psow=1&" + connect.uri_parameters;
  return connect;
}

}  // namespace

void roll_back(const std::filesystem::path& staged, const std::filesystem::path& journal,
               std::optional<std::uint32_t> expected_change_counter, const Settings& settings,
               const std::filesystem::path& source) {
  // Read after SQLite deleted it: what it should have played back, page by page.
  const validate::JournalPlayback playback = validate::journal_playback(journal);
  const io::UniqueFd journal_fd = io::open_source_file(journal);
  const std::filesystem::path hot_journal = staged.string() + "-journal";
  if (!journal_fd || ::rename(journal.c_str(), hot_journal.c_str()) != 0) {
    io::throw_errno(journal_fd ? errno : ENOENT, "cannot prepare the rollback of the snapshot of",
                    source);
  }
  {
    sql::Database db =
        sql::open_for_reading(staged, with_powersafe_overwrite(settings.connect), false, source);
    sql::allow_cancellation(db.get(), settings.cancel);
    // Private until commit: the rollback need not wait for the disk.
    db.exec("PRAGMA synchronous=OFF", "cannot configure the snapshot of");
    db.query_int("SELECT count(*) FROM sqlite_schema", "cannot roll back the snapshot of");
    db.close();
  }
  const std::uint32_t counter =
      validate::change_counter(validate::capture_member(staged, validate::kDatabaseHeaderSize));
  // SQLite deletes a journal it will not play back as it deletes one it played, so every page
  // the journal holds must now be in the copy as the journal has it (a page the copy read
  // before the commit wrote it proves nothing alone); page 1's counter is checked too where
  // the journal holds page 1.
  bool played = !io::stat_path(hot_journal) &&
                (!expected_change_counter || counter == *expected_change_counter);
  // Playback also cuts the copy to the database's size when the transaction began.
  if (played && playback.page_size != 0) {
    const auto copied = io::stat_path(staged);
    played = copied && copied->size == std::uint64_t{playback.database_pages} * playback.page_size;
  }
  if (played && !playback.pages.empty()) {
    const io::UniqueFd copy = io::open_source_file(staged);
    std::vector<std::byte> original(playback.page_size);
    std::vector<std::byte> now(playback.page_size);
    // In the journal's order: one pass through it, not a seek a page.
    std::vector<std::pair<std::uint64_t, std::uint32_t>> in_journal_order;
    in_journal_order.reserve(playback.pages.size());
    for (const auto& [page, at] : playback.pages) in_journal_order.emplace_back(at, page);
    std::sort(in_journal_order.begin(), in_journal_order.end());
    played = static_cast<bool>(copy);
    for (auto record = in_journal_order.begin(); played && record != in_journal_order.end();
         ++record) {
      const auto [at, page] = *record;
      played = io::read_at(journal_fd.get(), original, at, journal) == original.size() &&
               io::read_at(copy.get(), now, std::uint64_t{page - 1} * playback.page_size, staged) ==
                   now.size() &&
               now == original;
    }
  }
  if (!played) {
    throw_error(ErrorKind::sqlite, source,
                "cannot roll back the snapshot of {}: SQLite did not play back the journal of a "
                "transaction caught during the copy (change counter {}, expected {})",
                quoted(source), counter,
                expected_change_counter ? std::to_string(*expected_change_counter)
                                        : std::string("unmoved"));
  }
  log_debug("rolled the snapshot of {} back to change counter {}", quoted(source), counter);
}

DatabaseFacts recover_in_place(const std::filesystem::path& staged, const Settings& settings,
                               const std::filesystem::path& source) {
  // SQLite would rebuild the WAL's index (reading every frame in small reads) and then
  // checkpoint it (reading each page again); applying the committed frames ourselves reads
  // the WAL twice in large windows and writes each page once. SQLite keeps the job where it
  // reads the files in a way of its own (see sqlite_reads_plain_files), and where a hot
  // journal was staged beside the WAL: SQLite rolls that back first, then reads the WAL.
  const std::filesystem::path staged_wal = staged.string() + "-wal";
  const std::filesystem::path staged_journal = staged.string() + "-journal";
  if (settings.prove_rollback && !io::stat_path(staged_wal) &&
      validate::journal_is_hot(
          validate::capture_member(staged_journal, validate::kJournalHeaderSize))) {
    // A transaction in progress throughout the copy: its journal is rolled back and checked
    // page by page as a commit's is (roll_back()), since SQLite drops a journal it will not
    // play back without a word (helper-33). (Beside a WAL, SQLite rolls it back first and then
    // reads the WAL, whose pages no journal check could tell from a failed playback.)
    const std::filesystem::path held = staged.string() + "-journal.hot";
    if (::rename(staged_journal.c_str(), held.c_str()) != 0) {
      io::throw_errno(errno, "cannot prepare the rollback of the snapshot of", source);
    }
    roll_back(staged, held, std::nullopt, settings, source);
  }
  if (sql::sqlite_reads_plain_files(settings.connect) && io::stat_path(staged_wal) &&
      !io::stat_path(staged.string() + "-journal")) {
    apply_wal(staged, staged_wal, settings.cancel, source);
  }
  // (psow=1 for a hot journal SQLite still rolls back itself: beside a WAL, or in a copy kept
  // unvalidated.)
  sql::Database db =
      sql::open_for_reading(staged, with_powersafe_overwrite(settings.connect), false, source);
  sql::allow_cancellation(db.get(), settings.cancel);
  // The copy is private until it is delivered, with one fsync; SQLite's own syncs during the
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
  sql::verify(db.get(), settings.verify, source);
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

}  // namespace sqlite_backup::recover
