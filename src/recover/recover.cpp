#include "recover/recover.hpp"

#include <array>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "error_internal.hpp"
#include "io/big_endian.hpp"
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

// The journal's first record (page number and the page's original), which playback must have
// put into the copy: empty when the journal has none to read.
struct FirstRecord {
  std::uint64_t offset = 0;  // of the page in the database
  std::vector<std::byte> page;
};

FirstRecord first_record_of(const std::filesystem::path& journal) {
  FirstRecord record;
  const io::UniqueFd fd = io::open_source_file(journal);
  if (!fd) return record;
  std::array<std::byte, validate::kJournalHeaderSize> header{};
  if (io::read_at(fd.get(), header, 0, journal) < header.size()) return record;
  const std::uint32_t sector = io::load_be32(header.data() + 20);
  const std::uint32_t page_size = io::load_be32(header.data() + 24);
  if (sector < 32 || page_size < 512 || page_size > 65536) return record;
  std::array<std::byte, 4> number{};
  if (io::read_at(fd.get(), number, sector, journal) < number.size()) return record;
  const std::uint32_t page_number = io::load_be32(number.data());
  if (page_number == 0) return record;
  record.page.resize(page_size);
  if (io::read_at(fd.get(), record.page, std::uint64_t{sector} + 4, journal) < page_size) {
    record.page.clear();
    return record;
  }
  record.offset = std::uint64_t{page_number - 1} * page_size;
  return record;
}

}  // namespace

void roll_back(const std::filesystem::path& staged, const std::filesystem::path& journal,
               std::optional<std::uint32_t> expected_change_counter, const Settings& settings,
               const std::filesystem::path& source) {
  const FirstRecord first = first_record_of(journal);
  const std::filesystem::path hot_journal = staged.string() + "-journal";
  if (::rename(journal.c_str(), hot_journal.c_str()) != 0) {
    io::throw_errno(errno, "cannot prepare the rollback of the snapshot of", source);
  }
  {
    sql::Database db = sql::open_for_reading(staged, settings.connect, false, source);
    sql::allow_cancellation(db.get(), settings.cancel);
    // Private until commit: the rollback need not wait for the disk.
    db.exec("PRAGMA synchronous=OFF", "cannot configure the snapshot of");
    db.query_int("SELECT count(*) FROM sqlite_schema", "cannot roll back the snapshot of");
    db.close();
  }
  const std::uint32_t counter =
      validate::change_counter(validate::capture_member(staged, validate::kDatabaseHeaderSize));
  // Page 1 shows whether SQLite played a journal that holds it back; a journal of a commit
  // that left the counter alone does not hold it, and its first record shows it instead.
  bool played = !io::stat_path(hot_journal) &&
                (!expected_change_counter || counter == *expected_change_counter);
  if (played && !first.page.empty()) {
    const io::UniqueFd copy = io::open_source_file(staged);
    std::vector<std::byte> now(first.page.size());
    played = copy && io::read_at(copy.get(), now, first.offset, staged) == now.size() &&
             now == first.page;
  }
  if (!played) {
    throw_error(ErrorKind::sqlite, source,
                "cannot roll back the snapshot of {}: SQLite did not play back the journal of the "
                "transaction that committed during the copy (change counter {}, expected {})",
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
  if (sql::sqlite_reads_plain_files(settings.connect) && io::stat_path(staged_wal) &&
      !io::stat_path(staged.string() + "-journal")) {
    apply_wal(staged, staged_wal, settings.cancel, source);
  }
  sql::Database db = sql::open_for_reading(staged, settings.connect, false, source);
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
