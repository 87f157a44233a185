// Backups of databases that a real, separate process owns right now (tests/support/
// sqlite_owner): rows only in the WAL, exclusive locks, an owner killed mid-transaction.
// Every test also proves the source folder is left exactly as it was.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <functional>
#include <sqlite_backup/sqlite_backup.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "debug_log.hpp"
#include "library_fixture.hpp"

namespace {

using namespace sqlite_backup::testing;

class OwnersTest : public SourceFolderTest {};

// A progress callback that makes an "exclusive-commit-on-signal" owner commit once in each
// attempt (at the attempt's first report), counting the commits in `commits`: no attempt
// can then validate.
std::function<void(const sb::CopyProgress&)> commit_once_per_attempt(OwnerProcess& owner,
                                                                     int& commits) {
  return [&owner, &commits, attempt_seen = 0](const sb::CopyProgress& progress) mutable {
    if (progress.attempt == attempt_seen) return;
    attempt_seen = progress.attempt;
    ++commits;
    if (!owner.resume_until("." + std::to_string(commits + 1))) {
      ADD_FAILURE() << "the owner did not commit: " << owner.output();
    }
  };
}

// What a backup giving up after 3 attempts says, as its one error line ("no error: ..." when
// it did not give up, "other error: ..." when it failed otherwise). `on_progress` may make the
// owner commit during each attempt (commit_once_per_attempt).
std::string giving_up_message(const fs::path& source, const fs::path& destination,
                              std::function<void(const sb::CopyProgress&)> on_progress = {}) {
  try {
    sb::sqlite_backup(source, destination,
                      {.copy_retry = 3, .on_progress = std::move(on_progress)});
    return "no error: the backup succeeded";
  } catch (const sb::SqliteBackupError& error) {
    if (error.kind() != sb::ErrorKind::unstable_source) {
      return std::string("other error: ") + error.what();
    }
    return error.what();
  }
}

// Copies only the main database file elsewhere and counts what SQLite sees in it: proves
// the rows really are somewhere else (the WAL, or a journal), so the test is not vacuous.
long long rows_in_main_file_alone(const fs::path& database, const fs::path& scratch) {
  fs::create_directories(scratch);
  fs::copy_file(database, scratch / "main-only.sqlite");
  return query_int(scratch / "main-only.sqlite", "SELECT count(*) FROM t").value_or(0);
}

bool reading_fails_with_busy(const fs::path& database) {
  sqlite3* db = nullptr;
  sqlite3_open_v2(database.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  const int rc = sqlite3_exec(db, "SELECT count(*) FROM t", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  return rc == SQLITE_BUSY;
}

TEST_F(OwnersTest, WalOwnerWithRowsOnlyInTheWalToFileAndMemoryLeavesTheSourceFolderUntouched) {
  OwnerProcess owner(kOwnerExe, source_, "wal-hold", 1000);
  ASSERT_TRUE(owner.ready()) << owner.output();
  ASSERT_TRUE(fs::exists(source_dir_ / "live.sqlite-wal"));
  ASSERT_EQ(rows_in_main_file_alone(source_, dir_ / "scratch"), 0)
      << "rows are not only in the WAL";
  const FolderState before = folder_state(source_dir_);

  sb::sqlite_backup(source_, out_dir_ / "copy.sqlite");
  EXPECT_EQ(count_rows(out_dir_ / "copy.sqlite"), 1000);
  auto memory = sb::sqlite_backup(source_);
  ASSERT_TRUE(memory.has_value());
  EXPECT_EQ(count_rows(memory->get()), 1000);
  EXPECT_EQ(table_digest(memory->get()), table_digest(out_dir_ / "copy.sqlite"));

  EXPECT_EQ(describe_difference(before, folder_state(source_dir_)), "")
      << "the backup wrote into the source folder";
}

TEST_F(OwnersTest, ExclusiveWalOwnerIsBackedUpWithoutTakingLocks) {
  OwnerProcess owner(kOwnerExe, source_, "exclusive", 700);
  ASSERT_TRUE(owner.ready()) << owner.output();
  ASSERT_TRUE(reading_fails_with_busy(source_)) << "the owner does not hold an exclusive lock";
  const FolderState before = folder_state(source_dir_);
  ASSERT_EQ(before.count("live.sqlite-shm"), 0U) << "exclusive WAL keeps its index in memory";

  sb::sqlite_backup(source_, out_dir_ / "copy.sqlite");
  EXPECT_EQ(count_rows(out_dir_ / "copy.sqlite"), 700);
  auto memory = sb::sqlite_backup(source_);
  ASSERT_TRUE(memory.has_value());
  EXPECT_EQ(count_rows(memory->get()), 700);

  EXPECT_EQ(describe_difference(before, folder_state(source_dir_)), "");
}

TEST_F(OwnersTest, ExclusiveRollbackOwnerIsBackedUpWithoutTakingLocks) {
  OwnerProcess owner(kOwnerExe, source_, "rollback-exclusive", 400);
  ASSERT_TRUE(owner.ready()) << owner.output();
  ASSERT_TRUE(reading_fails_with_busy(source_)) << "the owner does not hold an exclusive lock";
  const FolderState before = folder_state(source_dir_);

  sb::sqlite_backup(source_, out_dir_ / "copy.sqlite");
  EXPECT_EQ(count_rows(out_dir_ / "copy.sqlite"), 400);
  EXPECT_EQ(query_text(out_dir_ / "copy.sqlite", "PRAGMA integrity_check"), "ok");

  EXPECT_EQ(describe_difference(before, folder_state(source_dir_)), "");
}

// An owner in locking_mode=EXCLUSIVE that commits during every attempt (made to, from the
// progress callback, so that no attempt can validate): no reader's lock can hold its commits
// off, so the backup gives up, and its one error line says so and what the user can do.
TEST_F(OwnersTest, GivingUpOnAnExclusiveLockingOwnerSaysWhyAndWhatToDo) {
  OwnerProcess owner(kOwnerExe, source_, "exclusive-commit-on-signal", 2000);
  ASSERT_TRUE(owner.ready()) << owner.output();
  ASSERT_TRUE(reading_fails_with_busy(source_)) << "the owner does not hold an exclusive lock";
  int commits = 0;
  const std::string message =
      giving_up_message(source_, out_dir_ / "copy.sqlite", commit_once_per_attempt(owner, commits));
  EXPECT_NE(message.find("failed to copy all files without any of them changing 3 times"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("locking_mode=EXCLUSIVE"), std::string::npos) << message;
  EXPECT_NE(message.find("while that program is idle or closed"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
  EXPECT_EQ(commits, 3) << "one commit in each attempt";
  EXPECT_TRUE(fs::is_empty(out_dir_)) << "no destination, no temporary leftovers";
}

// An idle owner in locking_mode=EXCLUSIVE that keeps no journal (journal_mode=OFF) looks, to
// a reader, exactly like one paused halfway through a commit: its database file may be half
// written at any moment, so it is never backed up while it holds the lock. The advice is to
// wait for the program to close, not for it to be idle (it is).
TEST_F(OwnersTest, AnExclusiveOwnerKeepingNoJournalIsRefusedWithAdviceToWaitForItsClose) {
  OwnerProcess owner(kOwnerExe, source_, "rollback-exclusive-unjournaled", 400);
  ASSERT_TRUE(owner.ready()) << owner.output();
  ASSERT_TRUE(reading_fails_with_busy(source_)) << "the owner does not hold an exclusive lock";
  const std::string message = giving_up_message(source_, out_dir_ / "copy.sqlite");
  EXPECT_NE(message.find("process " + std::to_string(owner.pid()) + ")"), std::string::npos)
      << message;
  EXPECT_NE(message.find("keeps no journal"), std::string::npos) << message;
  EXPECT_NE(message.find("while that program is closed"), std::string::npos) << message;
  EXPECT_EQ(message.find("idle"), std::string::npos) << message;
  EXPECT_TRUE(fs::is_empty(out_dir_)) << "no destination, no temporary leftovers";
}

// The same owner journaling (it would be backed up: see ExclusiveRollbackOwnerIsBacked...),
// but seen by a user who may not read its open files: whether it journals cannot be told, so
// it is refused, and the advice is to run the backup as its user or as root. Needs root, to
// run the backup as nobody beside an owner that is root's.
TEST_F(OwnersTest, AnExclusiveOwnerWhoseOpenFilesWeMayNotReadIsRefusedWithAdviceToRunAsItsUser) {
  if (!is_root()) {
    GTEST_SKIP() << "needs root: the backup must run as another user than the owner's";
  }
  OwnerProcess owner(kOwnerExe, source_, "rollback-exclusive", 400);
  ASSERT_TRUE(owner.ready()) << owner.output();
  ASSERT_TRUE(reading_fails_with_busy(source_)) << "the owner does not hold an exclusive lock";
  for (fs::path folder = source_dir_; folder != folder.parent_path();
       folder = folder.parent_path()) {
    fs::permissions(folder, fs::perms::others_exec | fs::perms::others_read, fs::perm_options::add);
  }
  fs::permissions(out_dir_, fs::perms::all);
  const std::string message = result_as_nobody(
      [&] { return giving_up_message(source_, out_dir_ / "copy.sqlite"); }, out_dir_ / "verdict");
  EXPECT_NE(message.find("process " + std::to_string(owner.pid()) + ")"), std::string::npos)
      << message;
  EXPECT_NE(message.find("run the backup as that program's user or as root"), std::string::npos)
      << message;
  EXPECT_EQ(message.find("idle"), std::string::npos) << message;
  EXPECT_TRUE(fs::is_empty(out_dir_)) << "no destination, no temporary leftovers";
  // Root may read them: the same owner is backed up.
  sb::sqlite_backup(source_, out_dir_ / "copy.sqlite");
  EXPECT_EQ(count_rows(out_dir_ / "copy.sqlite"), 400);
}

// An exclusive WAL owner whose WAL restarts during every attempt keeps no -journal by design:
// the giving-up message must not call it journal-less (helper-27 found it did), nor ask for
// its user's rights. It is backed up while idle.
TEST_F(OwnersTest, GivingUpOnAnExclusiveWalOwnerAdvisesWaitingForItToBeIdle) {
  OwnerProcess owner(kOwnerExe, source_, "exclusive-wal-commit-on-signal", 2000);
  ASSERT_TRUE(owner.ready()) << owner.output();
  ASSERT_TRUE(reading_fails_with_busy(source_)) << "the owner does not hold an exclusive lock";
  int commits = 0;
  const std::string message =
      giving_up_message(source_, out_dir_ / "copy.sqlite", commit_once_per_attempt(owner, commits));
  EXPECT_EQ(message.find("keeps no journal"), std::string::npos) << message;
  EXPECT_EQ(message.find("as root"), std::string::npos) << message;
  EXPECT_NE(message.find("while that program is idle or closed"), std::string::npos) << message;
  EXPECT_TRUE(fs::is_empty(out_dir_)) << "no destination, no temporary leftovers";
}

// Past the lock-free attempts each one tries the reader's lock, waiting up to a quarter of a
// second for it. An owner in locking_mode=EXCLUSIVE never lets go of its lock: once refused,
// the lock is not tried again while every look finds the owner holding it (a backup giving up
// on such an owner took 30 s for its 100 attempts, nearly all of it waiting for the lock).
TEST_F(OwnersTest, AnExclusiveLockingOwnerIsNotAskedForTheReaderLockAgainAndAgain) {
  OwnerProcess owner(kOwnerExe, source_, "exclusive-commit-on-signal", 2000);
  ASSERT_TRUE(owner.ready()) << owner.output();
  ASSERT_TRUE(reading_fails_with_busy(source_)) << "the owner does not hold an exclusive lock";
  std::vector<std::string> lock_messages;
  const sb::LogLevel level = sb::log_level();
  sb::set_log_level(sb::LogLevel::debug);
  sb::set_log_sink([&lock_messages](const sb::LogRecord& record) {
    if (record.message.find("reader's lock") != std::string_view::npos) {
      lock_messages.emplace_back(record.message);
    }
  });
  sb::Options options;
  options.copy_retry = 5;  // 1 without the lock, then 4 that would ask for it
  int commits = 0;
  options.on_progress = commit_once_per_attempt(owner, commits);
  EXPECT_THROW(sb::sqlite_backup(source_, out_dir_ / "copy.sqlite", options),
               sb::SqliteBackupError);
  sb::set_log_sink({});
  sb::set_log_level(level);
  EXPECT_EQ(commits, 5) << "one commit in each attempt";
  ASSERT_EQ(lock_messages.size(), 4U) << ::testing::PrintToString(lock_messages);
  // Tried once, in the first attempt that may lock (that an attempt before followed its
  // commits as uncounted is no evidence: see
  // AnOwnerMetSyncingItsJournalIsStillAskedForTheReaderLock).
  EXPECT_EQ(lock_messages[0].find("could not take a reader's lock"), 0U) << lock_messages[0];
  for (std::size_t i = 1; i < lock_messages.size(); ++i) {
    EXPECT_NE(lock_messages[i].find("not trying a reader's lock"), std::string::npos)
        << lock_messages[i];
  }
  EXPECT_TRUE(fs::is_empty(out_dir_)) << "no destination, no temporary leftovers";
}

// An ordinary owner syncs its journal's records under SQLite's EXCLUSIVE lock before it writes
// the header that makes the journal hot: a first look then sees what an owner in
// locking_mode=EXCLUSIVE shows between commits, and the attempt follows its commits as
// uncounted. That guess must not cost the next attempt its reader's lock (helper-40 saw
// backups of a busy owner with a slow disk lose it for good): the lock is given up on only
// once it was asked for and refused. Here attempt 1 meets T1 at its journal's sync and T1
// commits during the copy; attempt 2 must ask for the lock (and get it, the owner now idle).
TEST_F(OwnersTest, AnOwnerMetSyncingItsJournalIsStillAskedForTheReaderLock) {
  constexpr int kRows = 24000;
  OwnerProcess owner(kOwnerExe, source_, "pause-in-journal-sync", kRows);
  ASSERT_TRUE(owner.ready()) << owner.output();
  ASSERT_TRUE(owner.resume_until(".2")) << owner.output();
  ASSERT_TRUE(reading_fails_with_busy(source_))
      << "the owner does not hold SQLite's EXCLUSIVE lock at its journal's sync";
  // (synchronous=FULL: the journal's header still lacks its magic, so it is not hot.)
  const std::string journal_magic = "\xd9\xd5\x05\xf9\x20\xa1\x63\xd7";
  ASSERT_NE(read_file(source_.string() + "-journal").substr(0, 8), journal_magic)
      << "the journal is hot already";
  std::string said;
  int chunks = 0;
  bool committed = false;
  sb::Options options;
  options.copy_retry = 2;
  options.on_progress = [&](const sb::CopyProgress& progress) {
    if (progress.attempt == 1 && ++chunks == 1) committed = owner.resume_until(".3");
  };
  sb::Report report;
  options.report = &report;
  {
    const DebugLog log;
    EXPECT_NO_THROW(sb::sqlite_backup(source_, out_dir_ / "copy.sqlite", options));
    said = log.text();
  }
  ASSERT_TRUE(committed) << owner.output();
  ASSERT_EQ(report.attempts, 2) << "T1's commit during the copy refuses attempt 1:\n" << said;
  EXPECT_EQ(said.find("not trying a reader's lock"), std::string::npos) << said;
  EXPECT_NE(said.find("holding a SHARED lock for this attempt"), std::string::npos) << said;
  const fs::path copy = out_dir_ / "copy.sqlite";
  EXPECT_EQ(query_int(copy, "SELECT count(*) FROM t WHERE v GLOB 'ROW *'"), kRows / 8)
      << "T1 is in the copy";
  EXPECT_EQ(query_text(copy, "PRAGMA integrity_check"), "ok");
}

// Any owner holds SQLite's EXCLUSIVE lock for a moment in each commit: one attempt that met
// it is no evidence of locking_mode=EXCLUSIVE, and the advice to wait until the program is
// idle or closed would be wrong for a merely busy owner.
TEST_F(OwnersTest, OneAttemptThatMetTheExclusiveLockGivesNoExclusiveModeAdvice) {
  OwnerProcess owner(kOwnerExe, source_, "exclusive-commit-on-signal", 2000);
  ASSERT_TRUE(owner.ready()) << owner.output();
  ASSERT_TRUE(reading_fails_with_busy(source_)) << "the owner does not hold an exclusive lock";
  sb::Options options;
  options.copy_retry = 1;
  bool committed = false;
  options.on_progress = [&](const sb::CopyProgress&) {
    if (committed) return;
    committed = true;
    if (!owner.resume_until(".2")) ADD_FAILURE() << "the owner did not commit: " << owner.output();
  };
  try {
    sb::sqlite_backup(source_, out_dir_ / "copy.sqlite", options);
    ADD_FAILURE() << "the backup did not give up";
  } catch (const sb::SqliteBackupError& error) {
    const std::string message = error.what();
    EXPECT_EQ(error.kind(), sb::ErrorKind::unstable_source) << message;
    EXPECT_EQ(message.find("while that program is idle or closed"), std::string::npos) << message;
    EXPECT_EQ(message.find("held SQLite's EXCLUSIVE lock throughout"), std::string::npos)
        << message;
  }
  EXPECT_TRUE(committed);
  EXPECT_TRUE(fs::is_empty(out_dir_)) << "no destination, no temporary leftovers";
}

TEST_F(OwnersTest, HotJournalIsRolledBackInTheCopyNeverInTheSource) {
  OwnerProcess owner(kOwnerExe, source_, "hot-journal", 300);
  ASSERT_TRUE(owner.ready()) << owner.output();
  owner.kill_hard();
  ASSERT_TRUE(fs::exists(source_dir_ / "live.sqlite-journal"));
  const FolderState before = folder_state(source_dir_);
  const std::string journal_bytes = read_file(source_dir_ / "live.sqlite-journal");
  const std::string database_bytes = read_file(source_);

  sb::sqlite_backup(source_, out_dir_ / "copy.sqlite");
  const fs::path copy = out_dir_ / "copy.sqlite";
  EXPECT_EQ(count_rows(copy), 300);
  EXPECT_EQ(query_int(copy, "SELECT count(*) FROM t WHERE v LIKE 'row %'"), 300)
      << "committed rows";
  EXPECT_EQ(query_int(copy, "SELECT count(*) FROM t WHERE v LIKE 'rewritten %'"), 0)
      << "the half-done transaction leaked into the snapshot";
  EXPECT_EQ(query_text(copy, "PRAGMA integrity_check"), "ok");

  auto memory = sb::sqlite_backup(source_);
  ASSERT_TRUE(memory.has_value());
  EXPECT_EQ(table_digest(memory->get()), table_digest(copy));

  // The source keeps its hot journal: rolling it back is the owner's business, not ours.
  EXPECT_EQ(describe_difference(before, folder_state(source_dir_)), "");
  EXPECT_EQ(read_file(source_dir_ / "live.sqlite-journal"), journal_bytes);
  EXPECT_EQ(read_file(source_), database_bytes);
}

TEST_F(OwnersTest, FileDestinationMatchesTheMemoryPathIncludingHeaderSettings) {
  exec_sql(source_,
           "PRAGMA page_size=8192; PRAGMA auto_vacuum=INCREMENTAL; PRAGMA user_version=7;"
           "PRAGMA application_id=4660; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
           "CREATE INDEX t_v ON t(v); INSERT INTO t(v) VALUES ('before the owner');");
  ASSERT_EQ(query_int(source_, "PRAGMA page_size"), 8192);
  ASSERT_EQ(query_int(source_, "PRAGMA auto_vacuum"), 2);
  OwnerProcess owner(kOwnerExe, source_, "wal-hold", 2000);
  ASSERT_TRUE(owner.ready()) << owner.output();
  ASSERT_EQ(rows_in_main_file_alone(source_, dir_ / "scratch"), 1)
      << "new rows are not only in the WAL";

  const fs::path copy = out_dir_ / "copy.sqlite";
  sb::sqlite_backup(source_, copy);
  auto memory = sb::sqlite_backup(source_);
  ASSERT_TRUE(memory.has_value());

  const std::vector<std::pair<std::string, long long>> expected = {
      {"page_size", 8192}, {"auto_vacuum", 2}, {"user_version", 7}, {"application_id", 4660}};
  for (const auto& [pragma, value] : expected) {
    EXPECT_EQ(query_int(copy, "PRAGMA " + pragma), value) << "file destination, PRAGMA " << pragma;
    EXPECT_EQ(query_int(memory->get(), "PRAGMA " + pragma), value)
        << "memory destination, PRAGMA " << pragma;
  }
  EXPECT_EQ(count_rows(copy), 2001);
  EXPECT_EQ(table_digest(copy), table_digest(memory->get()));
  EXPECT_EQ(
      query_text(copy,
                 "SELECT group_concat(name) FROM (SELECT name FROM sqlite_schema ORDER BY name)"),
      query_text(memory->get(),
                 "SELECT group_concat(name) FROM (SELECT name FROM sqlite_schema ORDER BY name)"));
  EXPECT_EQ(query_text(copy, "PRAGMA integrity_check"), "ok");
}

}  // namespace
