// Bounded torture runs: real writer processes (tests/support/sqlite_churn) commit
// invariant-keeping transactions while the test backs the database up again and again. Every
// snapshot must be ok: the backup succeeds, the snapshot passes integrity_check, it is exactly
// the state after one committed transaction K (no torn copy, no lost WAL content), K is at least
// what was committed before the backup began and at most what had been started by its end,
// nothing is left beside the destination or in the temporary folder, and no file appears in the
// source folder other than the ones SQLite's own writers make.
//
// Each test is one kind of workload. Defaults: 20 backups or 8 s of backups per scenario, on a
// 12 MiB database; SQLITE_BACKUP_STRESS_BACKUPS, SQLITE_BACKUP_STRESS_SECONDS and
// SQLITE_BACKUP_STRESS_MB raise them for longer manual runs (e.g. 500 backups, 300 s, 64 MiB).
#include <gtest/gtest.h>

#include <algorithm>
#include <iomanip>
#include <iostream>

#include "stress_harness.hpp"

namespace stress {
namespace {

// Runs the scenario (once the programs it needs are built) and checks every backup it took.
void run_and_expect_every_backup_ok(const Scenario& scenario) {
  ASSERT_FALSE(kChurnExe.empty()) << "sqlite_churn was not built (tests/support/sqlite_churn.cpp)";
  if (uses_cli(scenario.via)) {
    ASSERT_FALSE(kCliExe.empty()) << "the sqlite_backup CLI was not built";
  }
  const ScenarioResult result = run_scenario(scenario);
  const std::string summary = summarize(scenario, result);
  std::cout << summary << std::endl;
  for (const auto& error : result.harness_errors) {
    ADD_FAILURE() << "[" << scenario.name << "] harness: " << error;
  }
  int gave_up = 0;
  for (const auto& record : result.backups) {
    if (scenario.may_be_outpaced && record.outcome == "tool-error" &&
        record.detail.find("failed to copy all files without any of them changing") !=
            std::string::npos) {
      ++gave_up;  // (see Scenario::may_be_outpaced)
      continue;
    }
    EXPECT_EQ(record.outcome, "ok")
        << "[" << scenario.name << "] backup #" << record.index << " via " << record.via
        << " after " << std::fixed << std::setprecision(3) << record.seconds
        << " s: " << record.detail;
  }
  if (gave_up > 0) {
    std::cout << "[" << scenario.name << "] " << gave_up << " of " << result.backups.size()
              << " backup(s) gave up, outpaced by the owner (see Scenario::may_be_outpaced)"
              << std::endl;
  }
  if (gave_up > 0 && !kSlowedBySanitizers) {
    EXPECT_LT(2 * gave_up, static_cast<int>(result.backups.size()))
        << "[" << scenario.name << "] " << gave_up << " of " << result.backups.size()
        << " backups gave up: fewer than half may";
  }
  EXPECT_TRUE(result.source_litter.empty())
      << "[" << scenario.name << "] the backups created files in the source folder: " << [&] {
           std::string names;
           for (const auto& name : result.source_litter) names += name + "; ";
           return names;
         }();
  const int wanted = std::min(kMinimumBackups, backups_per_scenario());
  EXPECT_GE(static_cast<int>(result.backups.size()), wanted)
      << "[" << scenario.name << "] too few backups ran to stress anything: " << summary;
  // The point is backing up while writers commit: many backups must overlap a commit (not all:
  // a big transaction holds the write lock, and rollback-journal writers commit slowly).
  EXPECT_GE(result.backups_overlapping_commits,
            std::max(1, static_cast<int>(result.backups.size()) / 4))
      << "[" << scenario.name << "] the writers were mostly idle during the backups: " << summary;
  EXPECT_GE(result.checkpoints_during, scenario.min_checkpoints)
      << "[" << scenario.name << "] too few explicit checkpoints while backing up: " << summary;
  EXPECT_GE(result.big_transactions_during, scenario.min_big_transactions)
      << "[" << scenario.name << "] too few big transactions while backing up: " << summary;
  EXPECT_GE(result.cache_spills_during, scenario.min_cache_spills)
      << "[" << scenario.name
      << "] too few pages spilled before COMMIT while backing up: " << summary;
}

TEST(LiveBackupStress, WalTwoWritersDefaultAutocheckpoint) {
  const Scenario scenario{
      .name = "wal",
      .prime_journal = "wal",
      .writers = {{}, {}},
      .allowed_source_suffixes = {"-wal", "-shm"},
      .via = Via::library_and_memory,
  };
  run_and_expect_every_backup_ok(scenario);
}

TEST(LiveBackupStress, WalWithCheckpointerResettingTheWal) {
  // wal_autocheckpoint=4 plus a process looping TRUNCATE/RESTART/PASSIVE/FULL checkpoints:
  // the WAL is checkpointed and restarted constantly, the case where copying the database and
  // the WAL one after the other pairs a pre-checkpoint database with a post-reset WAL.
  const Scenario scenario{
      .name = "wal-ckpt",
      .prime_journal = "wal",
      .writers = {{"--autocheckpoint", "4"}, {"--autocheckpoint", "4"}},
      .checkpointer = true,
      .allowed_source_suffixes = {"-wal", "-shm"},
      .via = Via::library_and_cli,
      .min_checkpoints = 10,
  };
  run_and_expect_every_backup_ok(scenario);
}

TEST(LiveBackupStress, RollbackJournalWithTransactionsSpillingBeforeCommit) {
  // journal_mode=DELETE with cache_size=64 and 30-130 page transactions: the pager writes into
  // the database file before COMMIT, so a copy taken mid-transaction holds uncommitted pages and
  // a hot journal that must be rolled back.
  const std::vector<std::string> flags = spilling_writer_flags("delete");
  const Scenario scenario{
      .name = "rollback",
      .prime_journal = "delete",
      .writers = {flags, flags},
      .allowed_source_suffixes = {"-journal"},
      .via = Via::library,
      .min_cache_spills = 100,
  };
  run_and_expect_every_backup_ok(scenario);
}

TEST(LiveBackupStress, RollbackWritersFasterThanOneCopyFinishUnderTheReaderLock) {
  // Issue 11's workload: two rollback-journal writers committing back to back (at most 0.3 ms
  // between transactions) on a 48 MiB database: a copy takes longer than their commits are
  // apart, so lock-free attempts keep failing; with the reader's lock (the default, after
  // a lock-free attempt) every backup completes and validates.
  const std::vector<std::string> flags = {"--journal", "delete", "--max-sleep-us", "300"};
  const Scenario scenario{
      .name = "rollback-large",
      .prime_journal = "delete",
      .writers = {flags, flags},
      .allowed_source_suffixes = {"-journal"},
      .via = Via::cli,
      .database_mib = 48,
  };
  run_and_expect_every_backup_ok(scenario);
}

TEST(LiveBackupStress, AutoVacuumFullCutsAndRegrowsTheFileUnderTwoRollbackWriters) {
  // Issue 11's auto_vacuum workload: with auto_vacuum=FULL every commit that frees pages (a
  // blob rewritten) moves pages and cuts the file, and the next one grows it again, while two
  // rollback-journal writers spill pages before COMMIT.
  const std::vector<std::string> flags = spilling_writer_flags("delete");
  const Scenario scenario{
      .name = "autovacuum",
      .prime_journal = "delete",
      .prime_flags = {"--auto-vacuum", "full"},
      .writers = {flags, flags},
      .allowed_source_suffixes = {"-journal"},
      .via = Via::library_and_cli,
  };
  run_and_expect_every_backup_ok(scenario);
}

TEST(LiveBackupStress, AutoVacuumFullInWalMode) {
  // The same file cutting in WAL mode: checkpoints shrink and regrow the database file while
  // the WAL holds the pages that say so.
  const Scenario scenario{
      .name = "autovacuum-wal",
      .prime_journal = "wal",
      .prime_flags = {"--auto-vacuum", "full"},
      .writers = {{"--autocheckpoint", "8"}, {"--autocheckpoint", "8"}},
      .allowed_source_suffixes = {"-wal", "-shm"},
      .via = Via::library_and_memory,
  };
  run_and_expect_every_backup_ok(scenario);
}

TEST(LiveBackupStress, RollbackOwnerHoldingExclusiveLockingMode) {
  // Issue 11's exclusive-locking rollback owner: it holds SQLite's EXCLUSIVE lock for good, so
  // no reader's lock can be had, its journal persists (header zeroed after each commit) and
  // its change counter stops moving. Every snapshot must still be one committed state. At
  // this pace (a commit every 0-20 ms, a 4 MiB database) most copies meet no commit; the next
  // test has several in every copy.
  const Scenario scenario{
      .name = "rollback-exclusive",
      .prime_journal = "delete",
      .writers = {{"--journal", "delete", "--locking", "exclusive", "--max-sleep-us", "20000"}},
      .allowed_source_suffixes = {"-journal"},
      .via = Via::library_and_cli,
      .database_mib = 4,
  };
  run_and_expect_every_backup_ok(scenario);
}

TEST(LiveBackupStress, ExclusiveRollbackOwnerFreeingAndTakingPagesAsFastAsItCan) {
  // The same owner committing back to back, each transaction rewriting blobs (freeing their
  // overflow pages and taking others) besides its rows: several commits fall into every copy,
  // and one that takes pages after one that freed some cannot be rolled back through, so the
  // next attempt catches the copy up (snapshot::CatchUp). Every snapshot must be one committed
  // state, and most backups must finish (see may_be_outpaced).
  const Scenario scenario{
      .name = "rollback-exclusive-busy",
      .prime_journal = "delete",
      .writers = {{"--journal", "delete", "--locking", "exclusive", "--max-sleep-us", "0"}},
      .allowed_source_suffixes = {"-journal"},
      .via = Via::library_and_cli,
      .may_be_outpaced = true,
  };
  run_and_expect_every_backup_ok(scenario);
}

TEST(LiveBackupStress, ExclusiveRollbackOwnerCommittingInPlaceAsFastAsItCan) {
  // The same owner committing back to back, each transaction rewriting integers in place: it
  // takes, frees and appends no page, so SQLite leaves the change counter where it is, and
  // several such commits fall into every copy. They are followed by their synced journals and
  // counted by the kernel's record of writes; every snapshot must be one committed state.
  const Scenario scenario{
      .name = "rollback-exclusive-in-place",
      .prime_journal = "delete",
      .writers = {{"--journal", "delete", "--locking", "exclusive", "--txn-pages", "in-place",
                   "--max-sleep-us", "0"}},
      .allowed_source_suffixes = {"-journal"},
      .via = Via::library_and_cli,
      .may_be_outpaced = true,
  };
  run_and_expect_every_backup_ok(scenario);
}

TEST(LiveBackupStress, PersistAndTruncateJournals) {
  // PERSIST leaves a journal whose header is zeroed after each commit; TRUNCATE leaves an
  // empty one: neither is hot, and both must be told apart from a hot journal.
  const Scenario scenario{
      .name = "persist",
      .prime_journal = "delete",
      .writers = {spilling_writer_flags("persist"), spilling_writer_flags("truncate")},
      .allowed_source_suffixes = {"-journal"},
      .via = Via::cli,
      .min_cache_spills = 100,
  };
  run_and_expect_every_backup_ok(scenario);
}

TEST(LiveBackupStress, WalExclusiveLockingHeldByTheOnlyWriter) {
  // locking_mode=EXCLUSIVE: the writer keeps its wal-index in heap memory (no -shm) and every
  // other connection gets SQLITE_BUSY; it TRUNCATE-checkpoints after ~5% of its transactions.
  // Unlike a lock-based tool, ours must still succeed every time.
  const Scenario scenario{
      .name = "exclusive",
      .prime_journal = "wal",
      .writers = {{"--locking", "exclusive", "--journal", "wal", "--self-checkpoint-pct", "5"}},
      .allowed_source_suffixes = {"-wal"},
      .via = Via::cli,
      .min_checkpoints = 2,
  };
  run_and_expect_every_backup_ok(scenario);
}

TEST(LiveBackupStress, WalWithBigTransactions) {
  // One writer commits 3-8 MiB transactions every ~0.4 s beside small ones: the WAL grows past
  // the autocheckpoint threshold in one commit and big frames sets are in flight during copies.
  const Scenario scenario{
      .name = "big-txn",
      .prime_journal = "wal",
      .writers = {{}, {"--big-every-ms", "400", "--big-mb", "3-8"}},
      .allowed_source_suffixes = {"-wal", "-shm"},
      .via = Via::library,
      .min_big_transactions = 3,
  };
  run_and_expect_every_backup_ok(scenario);
}

}  // namespace
}  // namespace stress
