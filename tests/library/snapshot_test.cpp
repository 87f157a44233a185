// A snapshot must be one transaction-consistent state of the whole set of files. These
// tests make the source change at the worst moment, deterministically: the copy function
// (called per file, database first) lets another writer commit or checkpoint right after
// the database file was copied and before the -wal is. The reference checks each file on
// its own and would accept such a torn set; we must notice and copy again.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <sqlite_backup/sqlite_backup.hpp>
#include <string>
#include <thread>
#include <vector>

#include "debug_log.hpp"
#include "library_fixture.hpp"

namespace {

using namespace sqlite_backup::testing;

class SnapshotTest : public SourceFolderTest {};

// A second writer on the source (as another process of the owner's application would be).
// Busy timeout: the owner holds no lock while idle, but be patient anyway.
void write_as_another_writer(const fs::path& database, const std::string& sql) {
  exec_sql(database, "PRAGMA busy_timeout=10000;" + sql);
}

const std::string kInsert500 =
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)"
    " INSERT INTO t(v) SELECT 'late ' || i FROM n;";

// Runs `between` once, right after the first copy of the database file (before its -wal
// is copied), and otherwise copies like the default.
class InterferingCopy {
 public:
  InterferingCopy(fs::path database, std::function<void()> between)
      : database_(std::move(database)), between_(std::move(between)) {}

  sb::CopyFunction function() {
    return [this](const fs::path& from, const fs::path& to) {
      const bool quiet = sb::atomic_copy(from, to);
      if (!fired_ && from.filename() == database_.filename()) {
        fired_ = true;
        between_();
      }
      return quiet;
    };
  }
  [[nodiscard]] bool fired() const { return fired_; }

 private:
  fs::path database_;
  std::function<void()> between_;
  bool fired_ = false;
};

TEST_F(SnapshotTest, CheckpointAndTruncateBetweenDatabaseAndWalCopiesIsCaught) {
  OwnerProcess owner(kOwnerExe, source_, "wal-hold", 1000);
  ASSERT_TRUE(owner.ready()) << owner.output();
  // The copy of the database now holds no rows; after the checkpoint the WAL is empty:
  // together they would make a snapshot without the 1500 rows.
  InterferingCopy copy(source_, [&] {
    write_as_another_writer(source_, kInsert500 + "PRAGMA wal_checkpoint(TRUNCATE);");
  });
  sb::Report report;
  sb::sqlite_backup(source_, out_dir_ / "copy.sqlite",
                    {.copy_function = copy.function(), .report = &report});
  ASSERT_TRUE(copy.fired());
  ASSERT_EQ(fs::file_size(source_dir_ / "live.sqlite-wal"), 0U)
      << "the checkpoint did not truncate the WAL";
  EXPECT_EQ(count_rows(out_dir_ / "copy.sqlite"), 1500);
  EXPECT_GE(report.attempts, 2) << "the torn first attempt was accepted";
  EXPECT_TRUE(report.validated);
}

TEST_F(SnapshotTest, WalRestartedWithNewFramesBetweenCopiesIsCaught) {
  OwnerProcess owner(kOwnerExe, source_, "wal-hold", 1000);
  ASSERT_TRUE(owner.ready()) << owner.output();
  // RESTART checkpoints everything into the database, then the next commit starts a new
  // WAL generation from its beginning: the copied database (no rows) plus the new WAL (only
  // the late rows, with new salts) would be a state that never existed.
  InterferingCopy copy(source_, [&] {
    write_as_another_writer(source_, "PRAGMA wal_checkpoint(RESTART);" + kInsert500);
  });
  sb::Report report;
  auto memory = sb::sqlite_backup(source_, std::nullopt,
                                  {.copy_function = copy.function(), .report = &report});
  ASSERT_TRUE(copy.fired());
  ASSERT_TRUE(memory.has_value());
  EXPECT_EQ(count_rows(memory->get()), 1500);
  EXPECT_EQ(query_int(memory->get(), "SELECT count(*) FROM t WHERE v LIKE 'late %'"), 500);
  EXPECT_GE(report.attempts, 2) << "the torn first attempt was accepted";
}

TEST_F(SnapshotTest, CommitsAppendedToTheWalDuringTheCopyNeedNoRetry) {
  OwnerProcess owner(kOwnerExe, source_, "wal-hold", 1000);
  ASSERT_TRUE(owner.ready()) << owner.output();
  // Appending frames to the same WAL generation is harmless: the copy is the state at the
  // last commit in our WAL copy, which includes the late rows.
  InterferingCopy copy(source_, [&] { write_as_another_writer(source_, kInsert500); });
  sb::Report report;
  sb::sqlite_backup(source_, out_dir_ / "copy.sqlite",
                    {.copy_function = copy.function(), .report = &report});
  ASSERT_TRUE(copy.fired());
  EXPECT_EQ(count_rows(out_dir_ / "copy.sqlite"), 1500);
  EXPECT_EQ(query_text(out_dir_ / "copy.sqlite", "PRAGMA integrity_check"), "ok");
}

TEST_F(SnapshotTest, RollbackCommitDuringTheCopyIsCaught) {
  create_database(source_, 300);
  // The database is the whole set here: a commit right after our copy of it changes the
  // change counter. Nothing tells the library that its copy was taken before the commit
  // rather than torn by it, so it must copy again (and then gets the newer state).
  InterferingCopy copy(source_, [&] { write_as_another_writer(source_, kInsert500); });
  sb::Report report;
  sb::sqlite_backup(source_, out_dir_ / "copy.sqlite",
                    {.copy_function = copy.function(), .report = &report});
  ASSERT_TRUE(copy.fired());
  EXPECT_EQ(count_rows(out_dir_ / "copy.sqlite"), 800) << "attempts: " << report.attempts;
  EXPECT_GE(report.attempts, 2);
  EXPECT_EQ(query_text(out_dir_ / "copy.sqlite", "PRAGMA integrity_check"), "ok");
}

// A commit in the middle of copying the database file itself: with a file this size the
// default copy may tear it; whatever the timing, the snapshot must be a committed state.
TEST_F(SnapshotTest, RollbackCommitInTheMiddleOfTheDatabaseCopyIsCaught) {
  exec_sql(source_,
           "PRAGMA journal_mode=DELETE; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
           "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000)"
           " INSERT INTO t(v) SELECT 'row ' || i || hex(randomblob(200)) FROM n;");
  // Copies the first half, lets a writer rewrite every row, then copies the rest: a torn
  // file by construction. atomic_copy would report it; this copy function hides it, so the
  // library's own validation must catch it.
  bool fired = false;
  auto tearing_copy = [&](const fs::path& from, const fs::path& to) {
    if (fired || from.filename() != source_.filename()) return sb::atomic_copy(from, to);
    fired = true;
    const std::string first = read_file(from);
    write_as_another_writer(from, "UPDATE t SET v = 'rewritten';");
    const std::string second = read_file(from);
    EXPECT_EQ(first.size(), second.size());
    write_file(to, first.substr(0, first.size() / 2) + second.substr(first.size() / 2));
    return true;
  };
  sb::Report report;
  sb::sqlite_backup(source_, out_dir_ / "copy.sqlite",
                    {.copy_function = tearing_copy, .report = &report});
  ASSERT_TRUE(fired);
  EXPECT_EQ(query_text(out_dir_ / "copy.sqlite", "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(query_int(out_dir_ / "copy.sqlite", "SELECT count(*) FROM t WHERE v = 'rewritten'"),
            4000);
  EXPECT_GE(report.attempts, 2);
}

// A rejected attempt leaves its copy of the database behind, and the next attempt brings it
// up to date (rewriting only what differs) instead of copying the whole file again. The
// commit here lands after the first copy is complete, so that copy is rejected (the change
// counter moved) and the retry must pick up exactly the committed state.
TEST_F(SnapshotTest, RetryRefreshesTheEarlierCopyToTheNewState) {
  create_database(source_, 300);
  DebugLog log;
  bool committed = false;
  sb::Report report;
  sb::sqlite_backup(source_, out_dir_ / "copy.sqlite",
                    {.on_progress =
                         [&](const sb::CopyProgress& progress) {
                           if (progress.attempt == 1 && !committed &&
                               progress.bytes_done >= fs::file_size(source_)) {
                             committed = true;
                             write_as_another_writer(source_, kInsert500);
                           }
                         },
                     .report = &report});
  ASSERT_TRUE(committed);
  EXPECT_EQ(report.attempts, 2);
  EXPECT_NE(log.text().find("refreshed the copy of"), std::string::npos) << log.text();
  EXPECT_EQ(count_rows(out_dir_ / "copy.sqlite"), 800);
  EXPECT_EQ(query_text(out_dir_ / "copy.sqlite", "PRAGMA integrity_check"), "ok");
}

// The refresh reads the source to its end as it is then: a database that shrank between
// attempts (VACUUM after a large delete) must leave a copy of its new length, not the old
// tail behind the new pages.
TEST_F(SnapshotTest, RetryAfterTheSourceShrankCutsTheCopyToTheNewLength) {
  exec_sql(source_,
           "PRAGMA journal_mode=DELETE; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
           "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)"
           " INSERT INTO t(v) SELECT hex(randomblob(300)) FROM n;");
  const auto size_before = fs::file_size(source_);
  bool shrank = false;
  sb::Report report;
  sb::sqlite_backup(
      source_, out_dir_ / "copy.sqlite",
      {.on_progress =
           [&](const sb::CopyProgress& progress) {
             if (progress.attempt == 1 && !shrank && progress.bytes_done >= size_before) {
               shrank = true;
               write_as_another_writer(source_, "DELETE FROM t WHERE id > 100; VACUUM;");
             }
           },
       .report = &report});
  ASSERT_TRUE(shrank);
  ASSERT_LT(fs::file_size(source_), size_before / 4);
  EXPECT_EQ(report.attempts, 2);
  EXPECT_EQ(fs::file_size(out_dir_ / "copy.sqlite"), fs::file_size(source_));
  EXPECT_EQ(count_rows(out_dir_ / "copy.sqlite"), 100);
  EXPECT_EQ(query_text(out_dir_ / "copy.sqlite", "PRAGMA integrity_check"), "ok");
}

// A transaction that begins during the copy but has not written the database yet (its
// journal exists, without the magic SQLite writes only when it syncs the journal before
// touching the database) changes nothing we copied: the copy is accepted at once, and the
// uncommitted row is not in it. (Rejecting it made every attempt fail while a writer was
// between commits, which with busy writers is nearly always.)
TEST_F(SnapshotTest, TransactionThatBeganButHasNotWrittenTheDatabaseDoesNotSpoilTheCopy) {
  create_database(source_, 300);
  std::optional<OwnerProcess> writer;
  sb::Report report;
  sb::sqlite_backup(source_, out_dir_ / "copy.sqlite",
                    {.copy_retry = 1,
                     .on_progress =
                         [&](const sb::CopyProgress& progress) {
                           if (!writer && progress.bytes_done >= fs::file_size(source_)) {
                             writer.emplace(kOwnerExe, source_, "open-transaction", 0);
                           }
                         },
                     .report = &report});
  ASSERT_TRUE(writer && writer->ready()) << (writer ? writer->output() : "not started");
  ASSERT_TRUE(fs::exists(source_dir_ / "live.sqlite-journal"));
  EXPECT_EQ(report.attempts, 1);
  EXPECT_EQ(count_rows(out_dir_ / "copy.sqlite"), 300);
  EXPECT_EQ(
      query_int(out_dir_ / "copy.sqlite", "SELECT count(*) FROM t WHERE v LIKE '%uncommitted%'"),
      0);
  EXPECT_FALSE(fs::exists(out_dir_ / "copy.sqlite-journal"));
}

// A crashed or foreign writer's leftover: a -journal with the journal magic followed by noise,
// and nothing writing to either file. SQLite reads the database as it is (the header's page
// and sector sizes are not ones it accepts, so it plays nothing back); the backup must give
// that state, at the first attempt, and not take the noise for a transaction's header (it
// gave up with exit 4: "the database shrank ... (45056 bytes copied, 949149614216398096 when
// the transaction began)").
TEST_F(SnapshotTest, LeftoverJournalOfMagicAndNoiseIsNotTakenForATransaction) {
  create_database(source_, 300);
  std::mt19937 noise(12);  // fixed seed: the same noise every run
  std::string journal("\xd9\xd5\x05\xf9\x20\xa1\x63\xd7", 8);
  for (int i = 0; i < 8192; ++i) journal += static_cast<char>(noise() & 0xffU);
  const auto be32 = [&](std::size_t at) {
    std::uint32_t value = 0;
    for (std::size_t i = 0; i < 4; ++i)
      value = (value << 8) | static_cast<unsigned char>(journal[at + i]);
    return value;
  };
  const auto power_of_two = [](std::uint32_t v) { return v != 0 && (v & (v - 1)) == 0; };
  ASSERT_FALSE(power_of_two(be32(24)) && be32(24) >= 512 && be32(24) <= 65536)
      << "the noise happens to hold a valid page size: pick another seed";
  const fs::path source_journal = source_dir_ / "live.sqlite-journal";
  write_file(source_journal, journal);

  // What SQLite reads from the same two files (a copy of them: SQLite, opening them for
  // writing as an owner would, deletes the journal).
  const fs::path sqlite_view = make_folder(dir_ / "sqlite-view");
  fs::copy_file(source_, sqlite_view / "live.sqlite");
  fs::copy_file(source_journal, sqlite_view / "live.sqlite-journal");
  exec_sql(sqlite_view / "live.sqlite", "SELECT count(*) FROM sqlite_schema");
  const auto rows_sqlite_reads = count_rows(sqlite_view / "live.sqlite");
  ASSERT_EQ(rows_sqlite_reads, 300);

  sb::Report report;
  sb::sqlite_backup(source_, out_dir_ / "copy.sqlite", {.copy_retry = 3, .report = &report});
  EXPECT_EQ(report.attempts, 1);
  EXPECT_EQ(count_rows(out_dir_ / "copy.sqlite"), rows_sqlite_reads);
  EXPECT_EQ(query_text(out_dir_ / "copy.sqlite", "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(list_names(out_dir_), std::vector<std::string>{"copy.sqlite"});
  EXPECT_EQ(read_file(source_journal), journal) << "the source's journal is left alone";
}

// The pause-in-commit owners (tests/support/sqlite_owner) stop inside their commits and go
// on, one ready file at a time, when told to. A backup taken while stepping one of them:
// `before_copy` lists the ready files to step through before the backup starts; the k-th
// progress report of the copy (one per chunk) steps through `at_chunk[k]`. The owner thus
// commits at chosen moments of the copy, deterministically.
struct SteppedBackup {
  sb::Report report;
  bool every_step_came = false;
  int chunks = 0;  // progress reports seen
  sb::CopyProgress last_progress;
};

SteppedBackup back_up_stepping(OwnerProcess& owner, const fs::path& source,
                               const fs::path& destination,
                               const std::vector<std::string>& before_copy,
                               const std::vector<std::vector<std::string>>& at_chunk,
                               int copy_retry = 100) {
  SteppedBackup result;
  bool steps_ok = owner.ready();
  for (const auto& step : before_copy) steps_ok = steps_ok && owner.resume_until(step);
  sb::sqlite_backup(source, destination,
                    {.copy_retry = copy_retry,
                     .on_progress =
                         [&](const sb::CopyProgress& progress) {
                           result.last_progress = progress;
                           const auto chunk = static_cast<std::size_t>(result.chunks++);
                           if (chunk >= at_chunk.size()) return;
                           for (const auto& step : at_chunk[chunk]) {
                             steps_ok = steps_ok && owner.resume_until(step);
                           }
                         },
                     .report = &result.report});
  result.every_step_came = steps_ok && static_cast<std::size_t>(result.chunks) >= at_chunk.size();
  return result;
}

// back_up_stepping() on an owner of its own in `mode` (with `rows` rows), stopped afterwards,
// its lock with it, so that the source can be read; its output in `owner_output`.
SteppedBackup back_up_stepping_owner(const fs::path& source, const fs::path& destination,
                                     const char* mode, int rows,
                                     const std::vector<std::vector<std::string>>& at_chunk,
                                     std::string& owner_output) {
  OwnerProcess owner(kOwnerExe, source, mode, rows);
  SteppedBackup backup = back_up_stepping(owner, source, destination, {}, at_chunk);
  owner_output = owner.output();
  return backup;
}

// Why a test that lets an owner advance between the copy's chunks cannot run.
constexpr const char* kCopiedInOneStep =
    "the database was copied in one step (a reflink clone?): no moment between chunks to let "
    "the owner advance";

// The steps for an owner that pauses in two commits (pause-in-two-commits and its kin): the
// first has written page 1 before the copy; at the first chunk it finishes and the second
// runs up to the write of its page 1; at the second chunk the second finishes.
SteppedBackup back_up_across_two_commits(OwnerProcess& owner, const fs::path& source,
                                         const fs::path& destination) {
  return back_up_stepping(owner, source, destination, {".2"}, {{".3", ".4"}, {".5"}});
}

// Which committed states a pause-in-commit owner's database can be in, from the rows the
// paused transaction ('rewritten', every 8th row) and the exclusive variant's second one
// ('row' made 'ROW') changed: all of a transaction or none of it, in order.
void expect_a_committed_state(const fs::path& copy, bool second_transaction_possible) {
  const auto rewritten =
      query_int(copy, "SELECT count(*) FROM t WHERE v LIKE 'rewritten%'").value_or(-1);
  const auto second = query_int(copy, "SELECT count(*) FROM t WHERE v GLOB 'ROW *'").value_or(-1);
  const bool committed = (rewritten == 0 && second == 0) || (rewritten == 1500 && second == 0) ||
                         (second_transaction_possible && rewritten == 1500 && second == 1500);
  EXPECT_TRUE(committed) << "torn snapshot: " << rewritten << " rows of the first transaction, "
                         << second << " of the second";
  EXPECT_EQ(count_rows(copy), 12000);
  EXPECT_EQ(query_text(copy, "PRAGMA integrity_check"), "ok");
}

// The owner stops inside a commit on a PERSIST journal: its journal is hot and complete, page
// 1 already carries the new change counter. The backup starts there, and the owner finishes
// its commit (zeroing the journal's header, as PERSIST does) while the database is being
// copied. Copied after the database, the journal would no longer be the transaction's, and
// the attempt would have to be thrown away; copied first, in the commit phase, it is complete
// and rolls our copy back to the state before the transaction.
TEST_F(SnapshotTest, TransactionCaughtInItsCommitIsRolledBackWithItsJournalCopiedFirst) {
  OwnerProcess owner(kOwnerExe, source_, "pause-in-commit", 12000);
  const SteppedBackup backup =
      back_up_stepping(owner, source_, out_dir_ / "copy.sqlite", {".2"}, {{".3"}}, 1);
  ASSERT_TRUE(backup.every_step_came) << owner.output();
  EXPECT_EQ(backup.report.attempts, 1);
  expect_a_committed_state(out_dir_ / "copy.sqlite", false);
  EXPECT_EQ(query_int(out_dir_ / "copy.sqlite", "SELECT count(*) FROM t WHERE v LIKE 'rewritten%'"),
            0);
}

// Same owner, caught earlier: its journal is hot but the commit has not written the database
// yet. During our copy the commit writes page 1 (the backup must notice between two chunks
// and copy the journal then, while it is complete), and then finishes and zeroes the
// journal's header before our copy ends.
TEST_F(SnapshotTest, TransactionReachingItsCommitDuringTheCopyHasItsJournalCopiedThen) {
  OwnerProcess owner(kOwnerExe, source_, "pause-in-commit", 12000);
  const SteppedBackup backup =
      back_up_stepping(owner, source_, out_dir_ / "copy.sqlite", {}, {{".2"}, {".3"}}, 1);
  if (backup.chunks < 2) {
    GTEST_SKIP() << kCopiedInOneStep;
  }
  ASSERT_TRUE(backup.every_step_came) << owner.output();
  EXPECT_EQ(backup.report.attempts, 1);
  expect_a_committed_state(out_dir_ / "copy.sqlite", false);
  EXPECT_EQ(query_int(out_dir_ / "copy.sqlite", "SELECT count(*) FROM t WHERE v LIKE 'rewritten%'"),
            0);
  // The journal counted at the first look was copied with its commit, not after the
  // database: progress still ends complete.
  EXPECT_EQ(backup.last_progress.bytes_done, backup.last_progress.bytes_total);
}

// In locking_mode=EXCLUSIVE, SQLite counts a commit in the change counter only when it
// dirties page 1 anyway (or is the first under the lock). The owner pauses in that first
// commit; during our copy it finishes it and commits a second transaction, uncounted. One
// commit's journal would then look like the whole story (counter one past the journal's
// original, nothing hot) while the copy holds part of the second transaction. The exclusive
// lock the owner keeps between transactions gives it away.
TEST_F(SnapshotTest, UncountedCommitsOfAnExclusiveLockingOwnerAreNotTakenForAChain) {
  OwnerProcess owner(kOwnerExe, source_, "pause-in-commit-exclusive", 12000);
  const SteppedBackup backup =
      back_up_stepping(owner, source_, out_dir_ / "copy.sqlite", {".2"}, {{".3"}});
  ASSERT_TRUE(backup.every_step_came) << owner.output();
  expect_a_committed_state(out_dir_ / "copy.sqlite", true);
  EXPECT_GE(backup.report.attempts, 2);
}

// An owner with no journal on disk (journal_mode=OFF or MEMORY) pauses in its commit after
// writing page 1 and one page of rows. Nothing shows the commit in progress but the EXCLUSIVE
// lock it holds: the change counter is the same at both looks (page 1 was written before the
// first), no journal is hot, and every page reads the same twice (the owner is paused). Taken
// as quiet, the copy held a few of the commit's rows and not the others.
TEST_F(SnapshotTest, CommitInProgressWithNoJournalOnDiskIsNotTakenForQuiet) {
  OwnerProcess owner(kOwnerExe, source_, "pause-in-unjournaled-commit", 12000);
  ASSERT_TRUE(owner.ready() && owner.resume_until(".2")) << owner.output();
  const fs::path copy = out_dir_ / "copy.sqlite";
  try {
    sb::sqlite_backup(source_, copy, {.copy_retry = 2});
    expect_a_committed_state(copy, false);
    ADD_FAILURE() << "a snapshot was taken while a commit was half written";
  } catch (const sb::SqliteBackupError& error) {
    EXPECT_EQ(error.kind(), sb::ErrorKind::unstable_source) << error.what();
    EXPECT_NE(std::string(error.what()).find("EXCLUSIVE lock"), std::string::npos) << error.what();
  }
  EXPECT_FALSE(fs::exists(copy));
  // Once the commit is done and its lock gone, the backup finishes.
  ASSERT_TRUE(owner.resume_until(".3")) << owner.output();
  sb::sqlite_backup(source_, copy);
  expect_a_committed_state(copy, false);
  EXPECT_EQ(query_int(copy, "SELECT count(*) FROM t WHERE v LIKE 'rewritten%'"), 1500);
}

// The same paused commit with no journal on disk, but beside a stale -journal that is not hot
// (an empty one, as a journal_mode=TRUNCATE connection leaves behind; an owner in OFF or
// MEMORY mode never removes it). The file's existence says nothing about how the owner that
// holds the lock writes; only that owner having the journal open does (helper-25 found this).
TEST_F(SnapshotTest, CommitInProgressBesideAStaleJournalIsNotTakenForQuiet) {
  exec_sql(source_,
           "PRAGMA journal_mode=TRUNCATE; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);");
  ASSERT_TRUE(fs::exists(source_.string() + "-journal"));
  OwnerProcess owner(kOwnerExe, source_, "pause-in-unjournaled-commit", 12000);
  ASSERT_TRUE(owner.ready() && owner.resume_until(".2")) << owner.output();
  ASSERT_TRUE(fs::exists(source_.string() + "-journal"));
  const fs::path copy = out_dir_ / "copy.sqlite";
  try {
    sb::sqlite_backup(source_, copy, {.copy_retry = 2});
    expect_a_committed_state(copy, false);
    ADD_FAILURE() << "a snapshot was taken while a commit was half written";
  } catch (const sb::SqliteBackupError& error) {
    EXPECT_EQ(error.kind(), sb::ErrorKind::unstable_source) << error.what();
  }
  ASSERT_TRUE(owner.resume_until(".3")) << owner.output();
  sb::sqlite_backup(source_, copy);
  EXPECT_EQ(query_int(copy, "SELECT count(*) FROM t WHERE v LIKE 'rewritten%'"), 1500);
}

// What a copy of a pause-in-exclusive-late* owner may hold: its first commit ('rewritten'
// rows) and its second, uncounted one ('ROW' rows), each whole or not at all, in order.
void expect_whole_commits_of_an_exclusive_session(const fs::path& copy, const fs::path& source) {
  const char* const first_rows = "SELECT count(*) FROM t WHERE v LIKE 'rewritten%'";
  const char* const second_rows = "SELECT count(*) FROM t WHERE v GLOB 'ROW *'";
  const auto all_first = query_int(source, first_rows);
  const auto all_second = query_int(source, second_rows);
  ASSERT_TRUE(all_first > 0 && all_second > 0);
  const auto first = query_int(copy, first_rows);
  const auto second = query_int(copy, second_rows);
  EXPECT_TRUE((first == 0 && second == 0) || (first == all_first && second == 0) ||
              (first == all_first && second == all_second))
      << "torn snapshot: " << first.value_or(-1) << " rows of the first commit, "
      << second.value_or(-1) << " of the second";
  EXPECT_EQ(query_text(copy, "PRAGMA integrity_check"), "ok");
}

// An owner idle at the first look enters locking_mode=EXCLUSIVE during the copy: its first
// commit under the lock is counted (and seen committing), its second is not. With the lock
// held only at the last look, the single commit seen looked like the whole story, and the
// copy held most of the second (helper-25 found this).
TEST_F(SnapshotTest, AnOwnerEnteringExclusiveLockingModeDuringTheCopyIsNotTakenForCounted) {
  SteppedBackup backup;
  {
    OwnerProcess owner(kOwnerExe, source_, "pause-in-exclusive-late", 12000);
    backup = back_up_stepping(owner, source_, out_dir_ / "copy.sqlite", {}, {{".2", ".3"}, {".4"}});
    ASSERT_TRUE(backup.every_step_came) << owner.output();
  }  // (the owner gone, its lock with it: the source can be read)
  if (backup.chunks < 2) {
    GTEST_SKIP() << kCopiedInOneStep;
  }
  expect_whole_commits_of_an_exclusive_session(out_dir_ / "copy.sqlite", source_);
}

// As above, but the owner lets go of the lock (locking_mode=NORMAL, then a read) right after
// its uncounted second commit, before the backup looks again: no look shows the lock, and the
// change counter says one commit. Rolled back through the one commit seen, the copy kept the
// second commit's later pages (helper-26 found this). The kernel's record of writes shows a
// second burst of database writes after the first commit ended its journal.
TEST_F(SnapshotTest, AnUncountedCommitWhoseLockIsGoneByTheNextLookIsNotMissed) {
  std::string output;
  const SteppedBackup backup =
      back_up_stepping_owner(source_, out_dir_ / "copy.sqlite", "pause-in-exclusive-late-release",
                             12000, {{".2", ".3"}, {".4"}}, output);
  ASSERT_TRUE(backup.every_step_came) << output;
  if (backup.chunks < 2) {
    GTEST_SKIP() << kCopiedInOneStep;
  }
  expect_whole_commits_of_an_exclusive_session(out_dir_ / "copy.sqlite", source_);
  // The first attempt saw the commits; a later one copied the settled database.
  EXPECT_GE(backup.report.attempts, 2);
}

// As above, but the counted commit has written and synced every page before the backup's
// first look (paused at the database's sync, journal hot): it writes nothing while the
// record runs, and when its burst was counted for it anyway, the uncounted commit's burst
// was taken for it (helper-27 found this). Only bursts after journal activity are counted.
TEST_F(SnapshotTest, AnUncountedCommitAfterACommitDoneWritingAtTheFirstLookIsNotMissed) {
  std::string output;
  const SteppedBackup backup =
      back_up_stepping_owner(source_, out_dir_ / "copy.sqlite", "pause-in-exclusive-synced-release",
                             12000, {{".2"}}, output);
  ASSERT_TRUE(backup.every_step_came) << output;
  if (backup.chunks < 2) {
    GTEST_SKIP() << kCopiedInOneStep;
  }
  expect_whole_commits_of_an_exclusive_session(out_dir_ / "copy.sqlite", source_);
  EXPECT_GE(backup.report.attempts, 2) << "the first attempt saw both commits";
}

// The record of writes counts a write when the kernel queues its IN_MODIFY, which is after
// the data reached the page cache (vfs_write(): fsnotify_modify() once write_iter returned;
// the writer may sleep in between, in balance_dirty_pages_ratelimited(), or be preempted).
// Owner, exclusive locking mode: T1 (counted, seen committing), U (uncounted), a rollback
// (so the next commit counts again), T2 (counted), captured from its page 1 while that
// write's event is held back (a shim writes the page through a shared map, pauses, then
// writes it again). U's burst took T2's place: one burst for the one commit after T1, and
// the copy held U's rows without T1's (helper-28 found this). The last commit seen must now
// be either over by the last look (all its events queued) or, still in its commit, be counted
// a burst whether the record shows its writes yet or not.
TEST_F(SnapshotTest, TheLastCommitSeenIsCountedABurstThoughItsEventComesLate) {
  OwnerProcess owner(kOwnerExe, source_, "pause-in-exclusive-late-event", 24000);
  try {
    const SteppedBackup backup = back_up_stepping(owner, source_, out_dir_ / "copy.sqlite", {},
                                                  {{".2", ".3"}, {".4", ".5"}}, 1);
    ASSERT_TRUE(backup.every_step_came) << owner.output();
    if (backup.chunks < 3) GTEST_SKIP() << kCopiedInOneStep;
    const fs::path copy = out_dir_ / "copy.sqlite";
    const auto t1 = query_int(copy, "SELECT count(*) FROM t WHERE v LIKE 'rewritten%'");
    const auto u = query_int(copy, "SELECT count(*) FROM t WHERE v GLOB 'ROW *'");
    ADD_FAILURE() << "accepted: T1 rows " << t1.value_or(-1) << ", U rows " << u.value_or(-1);
  } catch (const sb::SqliteBackupError& error) {
    EXPECT_EQ(error.kind(), sb::ErrorKind::unstable_source) << error.what();
    EXPECT_NE(std::string(error.what()).find("bursts"), std::string::npos) << error.what();
  }
  EXPECT_TRUE(fs::is_empty(out_dir_));
}

// The same owner with T2's page 1 written by a plain pwrite(), and T2 let finish before the
// last look: the one attempt is refused for U's burst.
TEST_F(SnapshotTest, AnUncountedCommitBetweenTwoCountedOnesIsCountedAsABurst) {
  OwnerProcess owner(kOwnerExe, source_, "pause-in-exclusive-late-event-control", 24000);
  try {
    const SteppedBackup backup = back_up_stepping(owner, source_, out_dir_ / "copy.sqlite", {},
                                                  {{".2", ".3"}, {".4", ".5"}, {".6"}}, 1);
    if (backup.chunks < 4) GTEST_SKIP() << kCopiedInOneStep;
    ADD_FAILURE() << "accepted";
  } catch (const sb::SqliteBackupError& error) {
    EXPECT_EQ(error.kind(), sb::ErrorKind::unstable_source) << error.what();
    EXPECT_NE(std::string(error.what()).find("bursts"), std::string::npos) << error.what();
  }
  EXPECT_TRUE(fs::is_empty(out_dir_));
}

// Owner in locking_mode=EXCLUSIVE, idle at the first look (the record of writes runs from
// before it). Between two chunks: U, uncounted, rewrites the first and the last 200 rows
// ('ROW') and ends, seen by no look; a rollback (SQLite counts the next commit again); T,
// counted, syncs its journal and makes page 1 visible while its IN_MODIFY is held back (the
// late-event shim). The next look catches T in its commit: a chain of one counted commit.
// Its burst was counted in flight only for chains of two or more or an uncounted last commit,
// so the record showed U's burst alone, one for one commit: rolled back through T, the copy
// kept U's last rows (read after U) and not its first (helper-32 found this).
TEST_F(SnapshotTest, ALoneCountedCommitWhoseEventComesLateDoesNotHideAnUncountedOne) {
  OwnerProcess owner(kOwnerExe, source_, "pause-in-uncounted-then-late-counted", 24000);
  try {
    const SteppedBackup backup =
        back_up_stepping(owner, source_, out_dir_ / "copy.sqlite", {}, {{".2", ".3"}}, 1);
    ASSERT_TRUE(backup.every_step_came) << owner.output();
    if (backup.chunks < 3) GTEST_SKIP() << kCopiedInOneStep;
    const fs::path copy = out_dir_ / "copy.sqlite";
    const auto u = query_int(copy, "SELECT count(*) FROM t WHERE v GLOB 'ROW *'");
    const auto t = query_int(copy, "SELECT count(*) FROM t WHERE v LIKE 'rewritten%'");
    EXPECT_TRUE(u == 0 || u == 400) << "torn snapshot: " << u.value_or(-1)
                                    << " of U's 400 rows (T rows " << t.value_or(-1) << ")";
    EXPECT_EQ(query_text(copy, "PRAGMA integrity_check"), "ok");
  } catch (const sb::SqliteBackupError& error) {
    EXPECT_EQ(error.kind(), sb::ErrorKind::unstable_source) << error.what();
  }
}

// What a copy of a pause-in-uncounted-commits* owner may hold: its commits T1 ('rewritten'),
// the unpaused one of the -missed variant ('mid') and T2 ('ROW'), each whole or not at all,
// in order.
void expect_whole_uncounted_commits(const fs::path& copy, const fs::path& source) {
  const std::array<const char*, 3> in_order = {"SELECT count(*) FROM t WHERE v LIKE 'rewritten%'",
                                               "SELECT count(*) FROM t WHERE v LIKE 'mid %'",
                                               "SELECT count(*) FROM t WHERE v GLOB 'ROW *'"};
  bool later_may_show = true;
  for (const char* rows : in_order) {
    const auto all = query_int(source, rows);
    const auto seen = query_int(copy, rows);
    EXPECT_TRUE(seen == 0 || (seen == all && later_may_show))
        << "torn snapshot: " << seen.value_or(-1) << " of " << all.value_or(-1) << " rows (" << rows
        << ")";
    later_may_show = later_may_show && seen == all;
  }
  EXPECT_EQ(query_text(copy, "PRAGMA integrity_check"), "ok");
}

// An owner in locking_mode=EXCLUSIVE leaves the change counter where it is after its first
// commit under the lock. Two such commits run during our copy, each seen between two chunks
// with its journal synced (hot, record count written) before it writes the database; the
// copy then holds pages of both. Each journal, copied at that look, is whole: the copy is
// rolled back through both and accepted at once, the kernel's record of writes showing one
// burst for each.
TEST_F(SnapshotTest, UncountedCommitsSeenSyncedAreRolledBackThroughTheirJournals) {
  std::string output;
  const SteppedBackup backup =
      back_up_stepping_owner(source_, out_dir_ / "copy.sqlite", "pause-in-uncounted-commits", 24000,
                             {{".2"}, {".3"}, {".4"}}, output);
  ASSERT_TRUE(backup.every_step_came) << output;
  if (backup.chunks < 4) {
    GTEST_SKIP() << kCopiedInOneStep;
  }
  const fs::path copy = out_dir_ / "copy.sqlite";
  expect_whole_uncounted_commits(copy, source_);
  EXPECT_EQ(backup.report.attempts, 1);
  EXPECT_EQ(query_int(copy, "SELECT count(*) FROM t WHERE v LIKE 'rewritten%' OR v GLOB 'ROW *'"),
            0)
      << "not the state before the first commit seen";
}

// Under locking_mode=EXCLUSIVE, the owner switches to journal_mode=OFF for one commit (U marks
// the first and last 8 rows) and back, then commits T1, seen synced. U wrote the database with
// no journal activity before T1's: its burst came before any, and was not counted, though no
// journal was hot at the first look (helper-31 found this).
TEST_F(SnapshotTest, AnUnjournaledCommitBeforeTheFirstUncountedOneIsCounted) {
  std::string output;
  const SteppedBackup backup = back_up_stepping_owner(source_, out_dir_ / "copy.sqlite",
                                                      "pause-in-unjournaled-then-uncounted", 24000,
                                                      {{".2"}, {".3"}}, output);
  ASSERT_TRUE(backup.every_step_came) << output;
  if (backup.chunks < 3) {
    GTEST_SKIP() << kCopiedInOneStep;
  }
  const auto unjournaled =
      query_int(out_dir_ / "copy.sqlite", "SELECT count(*) FROM t WHERE v GLOB 'UNJ*'");
  EXPECT_TRUE(unjournaled == 0 || unjournaled == 16)
      << "torn snapshot: " << unjournaled.value_or(-1) << " of 16 rows of the unjournaled commit";
  EXPECT_GE(backup.report.attempts, 2);
}

// T1 is seen synced and commits; then the owner switches to journal_mode=OFF and rewrites the
// last 40 rows, its first page visible before the kernel queues its IN_MODIFY (a shim writes
// it through a shared map and pauses). At the last look the journal is not hot and the record
// shows T1 alone; only the lock held with the journal closed gives the writer away
// (helper-31 found this).
TEST_F(SnapshotTest, AnUnjournaledCommitAfterTheLastUncountedOneIsNotMissed) {
  OwnerProcess owner(kOwnerExe, source_, "pause-in-uncounted-then-unjournaled", 24000);
  // One attempt: the owner stays in the unjournaled commit, so a later one would only find
  // the lock held with the journal closed again.
  try {
    const SteppedBackup backup =
        back_up_stepping(owner, source_, out_dir_ / "copy.sqlite", {}, {{".2"}, {".3"}}, 1);
    ASSERT_TRUE(backup.every_step_came) << owner.output();
    if (backup.chunks < 3) {
      GTEST_SKIP() << kCopiedInOneStep;
    }
    const auto unjournaled =
        query_int(out_dir_ / "copy.sqlite", "SELECT count(*) FROM t WHERE v GLOB 'UNJ*'");
    ADD_FAILURE() << "a snapshot was taken while an unjournaled commit was writing: "
                  << unjournaled.value_or(-1) << " of its 40 rows";
  } catch (const sb::SqliteBackupError& error) {
    EXPECT_EQ(error.kind(), sb::ErrorKind::unstable_source) << error.what();
    EXPECT_NE(std::string(error.what()).find("without the -journal open"), std::string::npos)
        << error.what();
  }
  EXPECT_FALSE(fs::exists(out_dir_ / "copy.sqlite"));
}

// The record of writes is kept from attempt to attempt. The first attempt starts it on one
// owner's database; another file is then renamed over it, with another owner, and the first
// attempt is refused. The second attempt's record was on the old file: blind to the new one's
// writes, it let an unseen commit between two seen ones through (helper-31 found this).
TEST_F(SnapshotTest, TheRecordOfWritesFollowsADatabaseReplacedBetweenAttempts) {
  std::optional<OwnerProcess> first(std::in_place, kOwnerExe, source_, "pause-in-uncounted-commits",
                                    24000);
  ASSERT_TRUE(first->ready()) << first->output();
  std::optional<OwnerProcess> second;
  bool steps_ok = true;
  int second_attempt_chunks = 0;
  bool replaced = false;
  sb::Report report;
  sb::sqlite_backup(source_, out_dir_ / "copy.sqlite",
                    {.on_progress =
                         [&](const sb::CopyProgress& progress) {
                           if (progress.attempt == 1 && !replaced) {
                             replaced = true;
                             first->stop();
                             const fs::path fresh = source_dir_ / "fresh.sqlite";
                             exec_sql(fresh, "PRAGMA user_version=1;");
                             fs::remove(source_.string() + "-journal");
                             fs::rename(fresh, source_);
                             second.emplace(kOwnerExe, source_, "pause-in-uncounted-commits-missed",
                                            24000);
                             steps_ok = steps_ok && second->ready();
                             return;
                           }
                           if (progress.attempt < 2 || !second) return;
                           const int chunk = second_attempt_chunks++;
                           if (chunk == 0) steps_ok = steps_ok && second->resume_until(".2");
                           if (chunk == 1) steps_ok = steps_ok && second->resume_until(".3");
                           if (chunk == 2) steps_ok = steps_ok && second->resume_until(".4");
                         },
                     .report = &report});
  ASSERT_TRUE(steps_ok && second) << (second ? second->output() : "");
  second.reset();
  if (second_attempt_chunks < 4) {
    GTEST_SKIP() << kCopiedInOneStep;
  }
  expect_whole_uncounted_commits(out_dir_ / "copy.sqlite", source_);
}

// The same, with a third uncounted commit between the two, begun and ended between two looks:
// no header shows it. Rolled back through the two journals seen, the copy kept its pages.
// The record of writes shows three bursts for two commits.
TEST_F(SnapshotTest, AnUncountedCommitBetweenTwoSeenSyncedIsNotMissed) {
  std::string output;
  const SteppedBackup backup =
      back_up_stepping_owner(source_, out_dir_ / "copy.sqlite", "pause-in-uncounted-commits-missed",
                             24000, {{".2"}, {".3"}, {".4"}}, output);
  ASSERT_TRUE(backup.every_step_came) << output;
  if (backup.chunks < 4) {
    GTEST_SKIP() << kCopiedInOneStep;
  }
  expect_whole_uncounted_commits(out_dir_ / "copy.sqlite", source_);
  EXPECT_GE(backup.report.attempts, 2) << "the first attempt saw three commits";
}

// Under locking_mode=EXCLUSIVE, a counted commit (T1 appends rows, so writes page 1) and an
// uncounted one after it (T2 rewrites rows in place), each caught in turn. Our copy read page 1
// before T1 wrote it, so T2's journal, which does not hold page 1, leaves it at T1's original
// counter, not at the counter T2 found: the rollback through T2 is checked by its first
// record, not by the counter (a backup failed "SQLite did not play back the journal").
TEST_F(SnapshotTest, ACountedCommitThenAnUncountedOneAreRolledBackAtOnce) {
  std::string output;
  const SteppedBackup backup =
      back_up_stepping_owner(source_, out_dir_ / "copy.sqlite", "pause-in-counted-then-uncounted",
                             24000, {{".2"}, {".3"}, {".4"}, {".5"}}, output);
  ASSERT_TRUE(backup.every_step_came) << output;
  if (backup.chunks < 5) {
    GTEST_SKIP() << kCopiedInOneStep;
  }
  const fs::path copy = out_dir_ / "copy.sqlite";
  EXPECT_EQ(backup.report.attempts, 1);
  EXPECT_EQ(query_int(copy, "SELECT count(*) FROM t"), 24000) << "T1's rows are in the copy";
  EXPECT_EQ(query_int(copy, "SELECT count(*) FROM t WHERE v GLOB 'ROW *'"), 0)
      << "T2's rows are in the copy";
  EXPECT_EQ(query_text(copy, "PRAGMA integrity_check"), "ok");
}

// The same owner, T1 seen twice: with its journal synced before its first write to the
// database (FILE.2), when its journal is copied, though T1 is not in its commit yet; then with
// page 1 written (FILE.3). That copy is taken as T1's whole journal once its marks (segment
// headers, the end of its records, the size) are read again and found as copied: a commit
// phase lasts a fraction of a millisecond, often less than reading the journal again took.
TEST_F(SnapshotTest, ACountedCommitsJournalCopiedAtItsSyncIsTakenAtItsCommit) {
  std::string output;
  std::string log;
  SteppedBackup backup;
  {
    DebugLog debug;
    backup =
        back_up_stepping_owner(source_, out_dir_ / "copy.sqlite", "pause-in-counted-then-uncounted",
                               24000, {{".2"}, {".3"}, {".4"}, {".5"}}, output);
    log = debug.text();
  }
  ASSERT_TRUE(backup.every_step_came) << output;
  if (backup.chunks < 5) {
    GTEST_SKIP() << kCopiedInOneStep;
  }
  const fs::path copy = out_dir_ / "copy.sqlite";
  EXPECT_EQ(backup.report.attempts, 1);
  std::size_t taken = 0;
  for (std::size_t at = log.find("copied when it was synced"); at != std::string::npos;
       at = log.find("copied when it was synced", at + 1)) {
    ++taken;
  }
  EXPECT_EQ(taken, 1U) << "T1's journal, copied at its sync, taken at its commit:\n" << log;
  EXPECT_EQ(query_int(copy, "SELECT count(*) FROM t"), 24000) << "T1's rows are in the copy";
  EXPECT_EQ(query_int(copy, "SELECT count(*) FROM t WHERE v GLOB 'ROW *'"), 0)
      << "T2's rows are in the copy";
  EXPECT_EQ(query_text(copy, "PRAGMA integrity_check"), "ok");
}

// SQLite plays a hot journal back only if it is at least one of the reader's sectors long
// (readJournalHdr() measures it with the reader's own sector size), and deletes it without a
// word otherwise. An owner with powersafe overwrite (the default) writes 512-byte headers; a
// copy opened with psow=0 (sqlite_connect_kwargs) has 4096-byte sectors. A commit of rows 1
// and N (pages of 1024 bytes, a journal under 4096 bytes) is caught after the copy passed
// row 1's page and before row N's. Its journal was dropped, and the checks of the rollback
// (page 1's counter, then the first record's page) held of pages the copy had read before the
// commit wrote them: the copy kept row N's new version and row 1's old one (helper-33 found
// this). The rollback now opens the copy with psow=1 first, and checks every page played back.
// Returns the backup's outcome: whether the copy was taken, and rows 1 and N's first words.
struct SmallCommitBackup {
  bool taken = false;
  std::string first_row;
  std::string last_row;
};

SmallCommitBackup back_up_across_a_small_commit(const fs::path& source, const fs::path& copy,
                                                const char* mode,
                                                const std::vector<std::string>& at_first_chunk,
                                                const std::vector<std::string>& at_second_chunk) {
  constexpr int kRows = 24000;
  OwnerProcess owner(kOwnerExe, source, mode, kRows);
  bool steps_ok = owner.ready();
  int chunks = 0;
  SmallCommitBackup outcome;
  sb::ConnectOptions without_powersafe_overwrite;
  without_powersafe_overwrite.uri_parameters = "psow=0";
  try {
    sb::sqlite_backup(source, copy,
                      {.copy_retry = 1,
                       .sqlite_connect_kwargs = without_powersafe_overwrite,
                       .on_progress = [&](const sb::CopyProgress&) {
                         const auto& steps = chunks == 0   ? at_first_chunk
                                             : chunks == 1 ? at_second_chunk
                                                           : std::vector<std::string>{};
                         ++chunks;
                         for (const auto& step : steps)
                           steps_ok = steps_ok && owner.resume_until(step);
                       }});
    outcome.taken = true;
  } catch (const sb::SqliteBackupError& error) {
    EXPECT_EQ(error.kind(), sb::ErrorKind::unstable_source) << error.what();
  }
  EXPECT_TRUE(steps_ok && chunks >= 3) << owner.output();
  if (outcome.taken) {
    const auto first_words = [&copy](int id) {
      return query_text(copy, "SELECT substr(v, 1, 3) FROM t WHERE id = " + std::to_string(id))
          .value_or("?");
    };
    outcome.first_row = first_words(1);
    outcome.last_row = first_words(kRows);
  }
  return outcome;
}

TEST_F(SnapshotTest, ASmallUncountedCommitsJournalIsPlayedBackWhateverTheCallersSectors) {
  const SmallCommitBackup backup = back_up_across_a_small_commit(
      source_, out_dir_ / "copy.sqlite", "pause-in-small-uncounted", {".2"}, {".3"});
  ASSERT_TRUE(backup.taken);
  EXPECT_EQ(backup.first_row, "row");
  EXPECT_EQ(backup.last_row, "row") << "torn snapshot: row 1 '" << backup.first_row << "'";
}

TEST_F(SnapshotTest, ASmallCountedCommitsJournalIsPlayedBackWhateverTheCallersSectors) {
  const SmallCommitBackup backup = back_up_across_a_small_commit(
      source_, out_dir_ / "copy.sqlite", "pause-in-small-counted", {".2", ".3"}, {".4"});
  ASSERT_TRUE(backup.taken);
  EXPECT_EQ(backup.first_row, "row");
  EXPECT_EQ(backup.last_row, "row") << "torn snapshot: row 1 '" << backup.first_row << "'";
}

// Under locking_mode=EXCLUSIVE, T1 frees the overflow pages of half the blobs and T2 fills
// them with new blobs (neither journals those pages). Each journals page 1 (its freelist
// count): they are counted commits, both caught in their commits, and a page free between
// them stops the rollback through both, whose restored rows would point at T2's blobs. The next
// attempt catches the copy up instead: it reads again the pages both journaled and every page
// listed in the freelist trunks they journaled, which holds the pages T2 filled. Those the first
// copy read before T2 wrote them, in its first chunks, would otherwise keep the old blobs' bytes.
TEST_F(SnapshotTest, CommitsThatFreeAndReusePagesAreCaughtUpNotRolledBackAtOnce) {
  DebugLog log;
  std::string output;
  const SteppedBackup backup =
      back_up_stepping_owner(source_, out_dir_ / "copy.sqlite", "pause-in-uncounted-free-and-reuse",
                             1000, {{".2", ".3"}, {".4", ".5"}, {".6"}}, output);
  ASSERT_TRUE(backup.every_step_came) << output;
  if (backup.chunks < 4) {
    GTEST_SKIP() << kCopiedInOneStep;
  }
  const fs::path copy = out_dir_ / "copy.sqlite";
  EXPECT_EQ(query_text(copy, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(query_int(copy,
                      "SELECT count(*) FROM b WHERE h IS NOT hex(substr(payload, 1, 8)) || "
                      "hex(substr(payload, 19993, 8))"),
            0)
      << "rows whose blob is another's";
  EXPECT_EQ(query_int(copy, "SELECT count(*) FROM b"), 1000) << "T2's rows, after T1's";
  EXPECT_EQ(backup.report.attempts, 2) << log.text();
  EXPECT_NE(log.text().find("caught the copy of"), std::string::npos) << log.text();
}

// An owner begins a transaction during the first attempt and holds it open after spilling
// pages into the database; its journal, synced for the spill, holds page 1's original. From
// the second attempt on, the kernel's record of writes runs from the first look, and a look
// that finds a journal synced copies it as a commit: taken for a counted commit before it
// had written page 1, this one, which never commits, made every attempt wait for a counter
// that never moved (helper-37). It is the transaction in progress at both looks, and the
// copy is rolled back through its journal copied after the database.
TEST_F(SnapshotTest, ATransactionHeldOpenAfterASpillIsRolledBackOnARetry) {
  create_database(source_, 10);
  std::optional<OwnerProcess> owner;
  DebugLog log;
  sb::Report report;
  EXPECT_NO_THROW(sb::sqlite_backup(source_, out_dir_ / "copy.sqlite",
                                    {.copy_retry = 6,
                                     .source_lock = sb::SourceLock::never,
                                     .on_progress =
                                         [&](const sb::CopyProgress& progress) {
                                           if (progress.attempt == 1 && !owner)
                                             owner.emplace(kOwnerExe, source_, "hot-journal", 300);
                                         },
                                     .report = &report}))
      << log.text();
  ASSERT_TRUE(owner && owner->ready()) << (owner ? owner->output() : "");
  EXPECT_LE(report.attempts, 2) << log.text();
  EXPECT_EQ(query_int(out_dir_ / "copy.sqlite", "SELECT count(*) FROM t WHERE v LIKE 'rewritten%'"),
            0);
  EXPECT_EQ(query_text(out_dir_ / "copy.sqlite", "PRAGMA integrity_check"), "ok");
}

// An owner idle in locking_mode=EXCLUSIVE commits once, uncounted, wholly between two looks
// of the copy: no look sees its journal, and the change counter does not move. The record of
// writes, begun before the first look, holds its writes: without it (or ignoring it) the copy
// would pass for a quiet one, its first rows read before the commit and its last after.
TEST_F(SnapshotTest, AnUncountedCommitNoLookSawIsInTheRecordOfWrites) {
  std::string output;
  const SteppedBackup backup = back_up_stepping_owner(
      source_, out_dir_ / "copy.sqlite", "pause-in-uncounted-unseen", 24000, {{}, {".2"}}, output);
  ASSERT_TRUE(backup.every_step_came) << output;
  if (backup.chunks < 3) {
    GTEST_SKIP() << kCopiedInOneStep;
  }
  const fs::path copy = out_dir_ / "copy.sqlite";
  EXPECT_EQ(query_text(copy, "PRAGMA integrity_check"), "ok");
  const auto rows = query_int(copy, "SELECT count(*) FROM t WHERE v GLOB 'ROW *'");
  EXPECT_TRUE(rows == 0 || rows == 400) << "torn snapshot: " << rows.value_or(-1) << " of 400";
  EXPECT_GE(backup.report.attempts, 2);
}

// As above, but T2 inserts twice the blobs T1 freed, so the file grows, and T2 writes past
// page 1 only after the copy has read the file to its end (T2 is caught in its commit, its
// page 1 written, before the last chunk). The pages past the file's size when T1 began are read
// again whatever the journals say: T2 appended them unjournaled, and the first copy never saw them.
TEST_F(SnapshotTest, PagesACommitAppendedAfterTheCopyAreCaughtUp) {
  DebugLog log;
  OwnerProcess owner(kOwnerExe, source_, "pause-in-free-and-grow", 1000);
  ASSERT_TRUE(owner.ready()) << owner.output();
  const auto size_before = fs::file_size(source_);
  int reports = 0;
  bool steps_ok = true;
  bool grown_after_copy = false;
  sb::Report report;
  sb::sqlite_backup(
      source_, out_dir_ / "copy.sqlite",
      {.on_progress =
           [&](const sb::CopyProgress& progress) {
             ++reports;
             if (progress.attempt != 1) return;
             if (reports == 1) {
               steps_ok = steps_ok && owner.resume_until(".2") && owner.resume_until(".3");
             }
             if (reports == 2) {
               steps_ok = steps_ok && owner.resume_until(".4") && owner.resume_until(".5");
             }
             // (The report that closes the copy: every byte copied.)
             if (reports > 2 && progress.bytes_done == progress.bytes_total && !grown_after_copy) {
               grown_after_copy = true;
               steps_ok = steps_ok && owner.resume_until(".6");
             }
           },
       .report = &report});
  ASSERT_TRUE(steps_ok && grown_after_copy) << owner.output() << log.text();
  if (reports < 4) {
    GTEST_SKIP() << kCopiedInOneStep;
  }
  ASSERT_GT(fs::file_size(source_), size_before) << "T2 did not grow the file";
  const fs::path copy = out_dir_ / "copy.sqlite";
  EXPECT_EQ(query_text(copy, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(query_int(copy, "SELECT count(*) FROM b"), 1500) << "T2's rows, after T1's";
  EXPECT_EQ(query_int(copy,
                      "SELECT count(*) FROM b WHERE h IS NOT hex(substr(payload, 1, 8)) || "
                      "hex(substr(payload, 19993, 8))"),
            0);
  EXPECT_EQ(report.attempts, 2) << log.text();
  EXPECT_NE(log.text().find("caught the copy of"), std::string::npos) << log.text();
}

// As above, but a third commit T3 lands between the attempt that saw T1 and T2 and the next:
// uncounted, in place, it changes table k's page (read by the first attempt, written by
// neither T1 nor T2) and the last blob's last overflow page (one T2 filled, so read again).
// Caught up, the copy would hold T3's blob page and the page of k from before T3. The kernel's
// record of writes between the two attempts shows T3, and the next attempt reads the whole
// file again instead. (The library's own log says when the first attempt is over: T3 runs
// then.)
TEST_F(SnapshotTest, ACommitBetweenTwoAttemptsStopsTheCatchUp) {
  const sb::LogLevel saved_level = sb::log_level();
  sb::set_log_level(sb::LogLevel::debug);
  OwnerProcess owner(kOwnerExe, source_, "pause-in-free-and-reuse-then-third", 1000);
  bool third_committed = false;
  std::string log;
  sb::set_log_sink([&](const sb::LogRecord& record) {
    log.append(record.message).append("\n");
    if (!third_committed && record.message.find("; catching the copy up") != std::string::npos) {
      third_committed = owner.resume_until(".7");
    }
  });
  const SteppedBackup backup = back_up_stepping(owner, source_, out_dir_ / "copy.sqlite", {},
                                                {{".2", ".3"}, {".4", ".5"}, {".6"}});
  sb::set_log_sink({});
  sb::set_log_level(saved_level);
  ASSERT_TRUE(backup.every_step_came) << owner.output();
  if (backup.chunks < 4) {
    GTEST_SKIP() << kCopiedInOneStep;
  }
  ASSERT_TRUE(third_committed) << log;
  const fs::path copy = out_dir_ / "copy.sqlite";
  EXPECT_EQ(query_text(copy, "PRAGMA integrity_check"), "ok");
  const auto k_moved = query_int(copy, "SELECT count(*) FROM k WHERE x > 100");
  const auto blob_moved = query_int(copy, "SELECT count(*) FROM b WHERE h = printf('%-32s', 'T3')");
  EXPECT_TRUE((k_moved == 0 && blob_moved == 0) || (k_moved == 2 && blob_moved == 1))
      << "torn snapshot: " << k_moved.value_or(-1) << " rows of k and " << blob_moved.value_or(-1)
      << " blob of T3's";
  EXPECT_NE(log.find("not catching the copy up"), std::string::npos) << log;
}

// A transaction over two attached databases leaves a super-journal name in its journal, and
// SQLite plays such a journal back only while the super-journal exists, which it never does
// beside our copy: rolled back "through" it, the copy would silently stay torn. The owner
// pauses in such a commit (page 1 written) and finishes it during our copy.
TEST_F(SnapshotTest, JournalNamingASuperJournalIsNotUsedForRollback) {
  OwnerProcess owner(kOwnerExe, source_, "pause-in-commit-attached", 12000);
  const SteppedBackup backup =
      back_up_stepping(owner, source_, out_dir_ / "copy.sqlite", {".2"}, {{".3"}});
  ASSERT_TRUE(backup.every_step_came) << owner.output();
  expect_a_committed_state(out_dir_ / "copy.sqlite", false);
  EXPECT_GE(backup.report.attempts, 2);
}

// A commit that shrinks the file (auto_vacuum) moves pages from the end into freed places
// without journaling the places it moves them from, and cuts the file after its journal is
// done. A copy that read the end after the cut is short, and rolling it back would leave
// those pages zero. The owner pauses in such a commit (page 1 written) and finishes it
// during our copy.
TEST_F(SnapshotTest, CommitThatShrinksTheFileDuringTheCopyIsNotRolledBack) {
  OwnerProcess owner(kOwnerExe, source_, "pause-in-shrinking-commit", 12000);
  const auto size_before = fs::file_size(source_);
  const SteppedBackup backup =
      back_up_stepping(owner, source_, out_dir_ / "copy.sqlite", {".2"}, {{".3"}});
  ASSERT_TRUE(backup.every_step_came) << owner.output();
  ASSERT_LT(fs::file_size(source_), size_before / 2) << "the commit did not shrink the file";
  const fs::path copy = out_dir_ / "copy.sqlite";
  EXPECT_EQ(query_text(copy, "PRAGMA integrity_check"), "ok");
  const auto rows = count_rows(copy);
  EXPECT_TRUE(rows == 12000 || rows == 3000) << rows << " rows";
}

// The transaction in progress when the copy starts (hot journal) is rolled back during the
// copy, and another commits, between two looks: the counter then stands exactly where it
// would if the first had committed, and the first's journal (held open, intact) would roll
// back only its own pages, leaving the second's half copied. A journal that ended without
// being seen in its commit phase must not be used.
TEST_F(SnapshotTest, TransactionThatRolledBackIsNotTakenForTheCommitThatFollowed) {
  OwnerProcess owner(kOwnerExe, source_, "rollback-then-commit", 12000);
  const SteppedBackup backup =
      back_up_stepping(owner, source_, out_dir_ / "copy.sqlite", {}, {{".2"}});
  ASSERT_TRUE(backup.every_step_came) << owner.output();
  expect_a_committed_state(out_dir_ / "copy.sqlite", false);
  EXPECT_GE(backup.report.attempts, 2);
}

// After the commit the copy will be rolled back through, a second transaction spills
// uncommitted pages into the file while we copy it, and rolls back before the last look: at
// both looks nothing shows it (the counter moved once, no journal is hot), and the
// committed transaction's journal does not know those pages. The watch sees the second
// transaction's hot journal between two chunks, and that must spoil the attempt.
TEST_F(SnapshotTest, AnotherTransactionHotBetweenChunksSpoilsTheCommitCopy) {
  OwnerProcess owner(kOwnerExe, source_, "pause-in-commit-then-spill", 12000);
  const SteppedBackup backup =
      back_up_stepping(owner, source_, out_dir_ / "copy.sqlite", {".2"}, {{".3"}, {".4"}});
  if (backup.chunks < 2) {
    GTEST_SKIP() << kCopiedInOneStep;
  }
  ASSERT_TRUE(backup.every_step_came) << owner.output();
  expect_a_committed_state(out_dir_ / "copy.sqlite", false);
  EXPECT_EQ(
      query_int(out_dir_ / "copy.sqlite", "SELECT count(*) FROM t WHERE v LIKE 'uncommitted%'"), 0);
  EXPECT_GE(backup.report.attempts, 2);
}

// Two commits during one copy cannot be undone from their journals: T1 frees pages without
// journaling them (their content no longer matters after T1) and T2 fills them without
// journaling them either (they were free when it began), so a copy that read them after T2,
// rolled back through both journals, would bring T1's deleted rows back pointing at T2's
// blobs. The owner pauses in both commits so that the backup sees each one committing and
// copies each journal in its commit phase; the copy must still not be accepted as such.
TEST_F(SnapshotTest, TwoCommitsDuringTheCopyAreNotRolledBackThroughBothJournals) {
  OwnerProcess owner(kOwnerExe, source_, "pause-in-two-commits", 600);
  const SteppedBackup backup = back_up_across_two_commits(owner, source_, out_dir_ / "copy.sqlite");
  if (backup.chunks < 2) {
    GTEST_SKIP() << kCopiedInOneStep;
  }
  ASSERT_TRUE(backup.every_step_came) << owner.output();
  const fs::path copy = out_dir_ / "copy.sqlite";
  EXPECT_EQ(query_text(copy, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(query_int(copy,
                      "SELECT count(*) FROM b WHERE h IS NOT hex(substr(payload, 1, 8)) || "
                      "hex(substr(payload, 19993, 8))"),
            0)
      << "rows whose blob is another's";
  // T1 deleted ids 2, 4, ..., 600; T2's new rows take ids from 600 on.
  const auto even = query_int(copy, "SELECT count(*) FROM b WHERE id % 2 = 0 AND id < 600");
  EXPECT_TRUE(even == 0 || even == 299) << even.value_or(-1) << " of T1's deleted rows";
}

// Two commits during one copy that free no page (rows rewritten in place) are undone from
// their journals, newest first: each page ends as it was before the first, and the copy
// made while both committed is accepted at once. The owner pauses in both commits so that
// the backup sees each one committing and copies each journal in its commit phase (the same
// steps as the test above, whose first commit frees pages).
TEST_F(SnapshotTest, TwoCommitsThatFreeNoPageAreRolledBackThroughBothJournals) {
  OwnerProcess owner(kOwnerExe, source_, "pause-in-two-in-place-commits", 12000);
  const SteppedBackup backup = back_up_across_two_commits(owner, source_, out_dir_ / "copy.sqlite");
  if (backup.chunks < 2) {
    GTEST_SKIP() << kCopiedInOneStep;
  }
  ASSERT_TRUE(backup.every_step_came) << owner.output();
  const fs::path copy = out_dir_ / "copy.sqlite";
  EXPECT_EQ(backup.report.attempts, 1);
  EXPECT_EQ(query_text(copy, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(count_rows(copy), 12000);
  // The state before the first commit: neither commit's rows.
  EXPECT_EQ(query_int(copy, "SELECT count(*) FROM t WHERE v GLOB 'ROW *'"), 0);
  EXPECT_EQ(query_int(source_, "SELECT count(*) FROM t WHERE v GLOB 'ROW *'"), 3000);
  EXPECT_EQ(query_int(source_, "PRAGMA freelist_count"), 0);
}

// The same two in-place commits, the second still in its commit at the last look (paused
// after writing page 1, as a slow fsync of the database would hold it): its burst is in the
// record, the copy is rolled back through both journals at the first attempt. (A first fix
// for late events waited 50 ms for the last commit to end and refused it otherwise: a whole
// copy again for every slow disk; helper-29 found this.)
TEST_F(SnapshotTest, TwoCommitsTheLastStillInItsCommitAreRolledBackAtOnce) {
  OwnerProcess owner(kOwnerExe, source_, "pause-in-two-in-place-commits", 12000);
  const SteppedBackup backup =
      back_up_stepping(owner, source_, out_dir_ / "copy.sqlite", {".2"}, {{".3", ".4"}}, 1);
  ASSERT_TRUE(backup.every_step_came) << owner.output();
  if (backup.chunks < 2) GTEST_SKIP() << kCopiedInOneStep;
  EXPECT_EQ(backup.report.attempts, 1);
  const fs::path copy = out_dir_ / "copy.sqlite";
  EXPECT_EQ(query_text(copy, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(count_rows(copy), 12000);
  EXPECT_EQ(query_int(copy, "SELECT count(*) FROM t WHERE v GLOB 'ROW *'"), 0)
      << "both commits rolled back";
}

// A commit that shrinks the database (auto_vacuum) inside a file that grows in chunks
// (SQLITE_FCNTL_CHUNK_SIZE) leaves the file as long as it was, and the next commit appends
// where the cut pages were without journaling them (past the database's end, not the file's).
// The journals' original sizes are the file's, so only page 1's page count shows the shrink
// (helper-25 found this).
TEST_F(SnapshotTest, CommitsThatShrinkAndRegrowTheDatabaseInsideItsFileAreNotAChain) {
  OwnerProcess owner(kOwnerExe, source_, "pause-in-chunk-shrink-regrow", 12000);
  const SteppedBackup backup = back_up_across_two_commits(owner, source_, out_dir_ / "copy.sqlite");
  if (backup.chunks < 2) {
    GTEST_SKIP() << kCopiedInOneStep;
  }
  ASSERT_TRUE(backup.every_step_came) << owner.output();
  const fs::path copy = out_dir_ / "copy.sqlite";
  EXPECT_EQ(query_text(copy, "PRAGMA integrity_check"), "ok");
  const auto rows = count_rows(copy);
  const auto added = query_int(copy, "SELECT count(*) FROM t WHERE v LIKE 'new%'");
  EXPECT_TRUE((rows == 12000 && added == 0) || (rows == 9000 && added == 0) ||
              (rows == 12000 && added == 3000))
      << rows << " rows, " << added.value_or(-1) << " new";
}

// Distinct calls may run concurrently on distinct destinations (the header promises it),
// with the process-wide log sink called from all of them.
TEST_F(SnapshotTest, ConcurrentBackupsOfOneLiveSourceAreIndependent) {
  OwnerProcess owner(kOwnerExe, source_, "wal-hold", 800);
  ASSERT_TRUE(owner.ready()) << owner.output();
  std::atomic<int> records{0};
  const sb::LogLevel saved_level = sb::log_level();
  sb::set_log_level(sb::LogLevel::debug);
  sb::set_log_sink([&](const sb::LogRecord&) { ++records; });
  std::vector<std::string> failures(4);
  std::vector<long long> counts(4, -1);
  {
    std::vector<std::jthread> threads;
    for (std::size_t i = 0; i < 4; ++i) {
      threads.emplace_back([&, i] {
        try {
          if (i % 2 == 0) {
            sb::sqlite_backup(source_, out_dir_ / ("copy" + std::to_string(i) + ".sqlite"));
            counts[i] = count_rows(out_dir_ / ("copy" + std::to_string(i) + ".sqlite"));
          } else {
            auto memory = sb::sqlite_backup(source_);
            counts[i] = memory ? count_rows(memory->get()) : -1;
          }
        } catch (const std::exception& error) {
          failures[i] = error.what();
        }
      });
    }
  }
  sb::set_log_sink({});
  sb::set_log_level(saved_level);
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(failures[i], "") << "backup " << i;
    EXPECT_EQ(counts[i], 800) << "backup " << i;
  }
  EXPECT_GT(records.load(), 0);
  EXPECT_EQ(list_names(out_dir_), (std::vector<std::string>{"copy0.sqlite", "copy2.sqlite"}));
}

}  // namespace

namespace {

// Whether another process holds SQLite's PENDING lock on `database` (a write lock on the byte at
// 1 GiB): a writer in its commit, waiting for readers to let go so that it can take EXCLUSIVE.
bool pending_lock_held(const fs::path& database) {
  const int fd = ::open(database.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct flock probe {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  probe.l_start = 0x40000000;
  probe.l_len = 1;
  const bool asked = ::fcntl(fd, F_OFD_GETLK, &probe) == 0;
  ::close(fd);
  return asked && probe.l_type == F_WRLCK;
}

}  // namespace

// Under the reader's lock (SourceLock), an owner that commits during the copy waits in its
// busy handler (holding PENDING: SQLite takes EXCLUSIVE before it syncs its journal) until the
// copy is judged; the backup takes the committed state in one attempt, and the owner's commit
// then completes, without SQLITE_BUSY.
TEST_F(SnapshotTest, UnderTheReaderLockACommitWaitsForTheCopy) {
  OwnerProcess owner(kOwnerExe, source_, "commit-on-signal", 300);
  ASSERT_TRUE(owner.ready()) << owner.output();
  sb::Options options;
  options.source_lock = sb::SourceLock::always;
  options.copy_retry = 1;
  bool owner_waited = false;
  options.copy_function = [&](const fs::path& from, const fs::path& to) {
    if (from.filename() == source_.filename() && !owner_waited) {
      owner.resume();  // COMMIT now, in the middle of our copy
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (!pending_lock_held(source_) && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));  // polling for a state
      }
      owner_waited = pending_lock_held(source_);
    }
    return sb::atomic_copy(from, to);
  };
  sb::Report report;
  options.report = &report;
  sb::sqlite_backup(source_, out_dir_ / "copy.sqlite", options);
  EXPECT_TRUE(owner_waited) << "the owner's commit never waited for our lock";
  EXPECT_EQ(report.attempts, 1);
  EXPECT_EQ(count_rows(out_dir_ / "copy.sqlite"), 300);
  EXPECT_EQ(query_int(out_dir_ / "copy.sqlite",
                      "SELECT count(*) FROM t WHERE v LIKE '%(committed on signal)'"),
            0);
  ASSERT_TRUE(owner.wait_until(".2")) << "the owner's commit did not complete: " << owner.output();
  EXPECT_EQ(query_int(source_, "SELECT count(*) FROM t WHERE v LIKE '%(committed on signal)'"),
            300);
}

// The same commit without the lock (SourceLock::never) lands in the middle of the copy, and
// the one attempt is refused: what the lock is for.
TEST_F(SnapshotTest, WithoutTheReaderLockTheSameCommitSpoilsTheAttempt) {
  OwnerProcess owner(kOwnerExe, source_, "commit-on-signal", 300);
  ASSERT_TRUE(owner.ready()) << owner.output();
  sb::Options options;
  options.source_lock = sb::SourceLock::never;
  options.copy_retry = 1;
  bool committed = false;
  options.copy_function = [&](const fs::path& from, const fs::path& to) {
    if (from.filename() == source_.filename() && !committed) {
      committed = owner.resume_until(".2");  // the commit completes before we copy
    }
    if (!fs::exists(from)) {  // the commit deleted its journal: there is none to copy
      write_file(to, "");
      return true;
    }
    return sb::atomic_copy(from, to);
  };
  try {
    sb::sqlite_backup(source_, out_dir_ / "copy.sqlite", options);
    ADD_FAILURE() << "a copy taken across a commit was accepted";
  } catch (const sb::SqliteBackupError& error) {
    EXPECT_EQ(error.kind(), sb::ErrorKind::unstable_source) << error.what();
    EXPECT_THAT(error.what(), ::testing::HasSubstr("committed during the copy"));
  }
  EXPECT_TRUE(committed) << owner.output();
  EXPECT_TRUE(list_names(out_dir_).empty());
}

namespace {

using namespace sqlite_backup::testing;

// The file path of a live WAL over a database of several copy chunks, through the public API:
// the first look writes the WAL's pages into the copy while the database is copied, and the
// application after the copy writes the rest. The result must be byte for byte the one the
// staged path gives (a caller's copy function stages the WAL and applies it after the whole
// copy). The owner is this process's own open connection, as a web app backing up its own
// database would be. (tests/internal/write_ahead_test.cpp holds the copy at a chosen point to
// force the interleaving that matters.)
TEST_F(SnapshotTest, TheWalWrittenDuringTheCopyGivesTheStagedPathsBytes) {
  sqlite3* owner = nullptr;
  ASSERT_EQ(sqlite3_open(source_.c_str(), &owner), SQLITE_OK);
  const auto exec = [owner](const std::string& sql) {
    ASSERT_EQ(sqlite3_exec(owner, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(owner);
  };
  // About 12 MiB (three 4 MiB copy chunks) in the database file, then a WAL rewriting rows
  // spread over all of it, and rows past its end.
  exec(
      "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;"
      "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);"
      "INSERT INTO t(v) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
      "LIMIT 12000) SELECT randomblob(900) FROM n;"
      "PRAGMA wal_checkpoint(TRUNCATE);"
      "UPDATE t SET v = randomblob(900) WHERE id % 7 = 3;"
      "INSERT INTO t(v) SELECT randomblob(900) FROM t WHERE id <= 500;");
  ASSERT_GT(fs::file_size(source_), 10U << 20);
  ASSERT_GT(fs::file_size(source_.string() + "-wal"), 2U << 20);

  sb::sqlite_backup(source_, out_dir_ / "written_during.sqlite");
  sb::Options staged;
  staged.copy_function = [](const fs::path& from, const fs::path& to) {
    return sb::atomic_copy(from, to);
  };
  sb::sqlite_backup(source_, out_dir_ / "staged.sqlite", staged);
  sqlite3_close(owner);

  EXPECT_EQ(count_rows(out_dir_ / "written_during.sqlite"), 12500);
  EXPECT_TRUE(read_file(out_dir_ / "written_during.sqlite") ==
              read_file(out_dir_ / "staged.sqlite"))
      << "the two paths gave different bytes";
}

}  // namespace
