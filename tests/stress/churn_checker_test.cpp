// The stress tests are only as good as their checker: these tests prove that `sqlite_churn
// check` accepts a snapshot that is the state after one committed transaction and flags every
// kind of bad snapshot a backup tool could produce (torn copies, lost or mismatched WAL
// content, half-applied transactions, stale or impossible states, truncation, junk), and that
// the writer's status file reports exactly what it committed.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <string>
#include <vector>

#include "stress_harness.hpp"

namespace stress {
namespace {

using sqlite_backup::testing::describe;
using sqlite_backup::testing::exec_sql;
using sqlite_backup::testing::ProcessResult;
using sqlite_backup::testing::read_file;
using sqlite_backup::testing::run_process;
using sqlite_backup::testing::TempDir;
using sqlite_backup::testing::write_file;

class ChurnCheckerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(kChurnExe.empty()) << "sqlite_churn was not built"; }

  void prime(const fs::path& database, const std::string& journal) {
    const ProcessResult result =
        run_process({kChurnExe.string(), "prime", "--db", database.string(), "--mb", "1",
                     "--journal", journal, "--seed", "7"});
    ASSERT_EQ(result.exit_code, 0) << describe(result);
  }

  // Commits exactly `count` transactions in a fresh writer process and returns its status file.
  void write(const fs::path& database, int count, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {kChurnExe.string(),
                                     "write",
                                     "--db",
                                     database.string(),
                                     "--status",
                                     (dir_ / "status").string(),
                                     "--transactions",
                                     std::to_string(count),
                                     "--max-sleep-us",
                                     "0",
                                     "--seed",
                                     std::to_string(++seed_)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    const ProcessResult result = run_process(argv);
    ASSERT_EQ(result.exit_code, 0) << describe(result);
  }

  // Copies in a child process: closing a descriptor of the database in this process would drop
  // every POSIX lock this process holds on it, including an open connection's.
  fs::path copy(const fs::path& from, const std::string& name) {
    const fs::path to = dir_ / name;
    const ProcessResult result = run_process({"/bin/cp", from.string(), to.string()});
    if (result.exit_code != 0) {
      throw std::runtime_error("cp " + from.string() + " " + to.string() + ": " + describe(result));
    }
    return to;
  }

  CheckResult check(const fs::path& database, std::int64_t min_seq = 0, std::int64_t max_seq = -1) {
    return check_snapshot(database, min_seq, max_seq, scratch_.path());
  }

  TempDir dir_{"sqlite_backup_churn_checker"};
  TempDir scratch_{"sqlite_backup_churn_scratch"};
  int seed_ = 0;
};

// "corrupt" or "inconsistent": the two verdicts a torn snapshot may earn.
bool is_torn_verdict(const CheckResult& result) {
  return result.exit_code != 0 &&
         (result.verdict.rfind("corrupt", 0) == 0 || result.verdict.rfind("inconsistent", 0) == 0);
}

TEST_F(ChurnCheckerTest, StatusFileReportsExactlyWhatWasCommitted) {
  const fs::path db = dir_ / "live.db";
  prime(db, "delete");
  const StatusView status(dir_ / "status");
  write(db, 30);
  EXPECT_EQ(status.load(StatusField::committed), 30);
  EXPECT_EQ(status.load(StatusField::pending), 30);
  EXPECT_EQ(status.load(StatusField::transactions), 30);
  EXPECT_EQ(status.load(StatusField::ready), 1);
  const CheckResult result = check(db, 30, 30);
  EXPECT_EQ(result.exit_code, 0) << result.raw;
  EXPECT_EQ(result.k, 30);
  EXPECT_EQ(result.verdict, "ok");
}

TEST_F(ChurnCheckerTest, FlagsStaleAndImpossibleStates) {
  const fs::path db = dir_ / "live.db";
  prime(db, "delete");
  write(db, 20);
  EXPECT_EQ(check(db, 20, 20).exit_code, 0);
  const CheckResult stale = check(db, 21);
  EXPECT_EQ(stale.exit_code, 4) << stale.raw;
  EXPECT_EQ(stale.verdict.rfind("stale: K=20 < 21", 0), 0U) << stale.raw;
  const CheckResult future = check(db, 0, 19);
  EXPECT_EQ(future.exit_code, 3) << future.raw;
  EXPECT_EQ(future.verdict.rfind("inconsistent", 0), 0U) << future.raw;
}

TEST_F(ChurnCheckerTest, FlagsEveryBrokenInvariant) {
  const fs::path db = dir_ / "live.db";
  prime(db, "delete");
  write(db, 40);
  struct Case {
    const char* label;
    const char* sql;
    int exit_code;
  };
  const std::vector<Case> cases = {
      {"sum broken", "UPDATE accounts SET balance = balance + 1 WHERE id = 7", 3},
      {"balances moved, sum kept",
       "UPDATE accounts SET balance = balance + (CASE id WHEN 1 THEN 5 ELSE -5 END) WHERE id IN "
       "(1, 2)",
       3},
      {"log gap", "DELETE FROM log WHERE seq = 10", 3},
      {"meta behind log", "UPDATE meta SET last_seq = last_seq - 1", 3},
      {"blob payload changed",
       "UPDATE blobs SET payload = randomblob(length(payload)) WHERE id = 3", 3},
      {"blob last_seq wrong",
       "UPDATE blobs SET last_seq = 0 WHERE id = (SELECT MAX(blob_id) FROM bw)", 3},
      {"transfer missing", "DELETE FROM xfer WHERE rowid = (SELECT MAX(rowid) FROM xfer)", 3},
      {"blob write record missing", "DELETE FROM bw WHERE rowid = (SELECT MIN(rowid) FROM bw)", 3},
      {"schema missing", "DROP TABLE meta", 2},
  };
  for (const auto& c : cases) {
    const fs::path broken = copy(db, "broken.db");
    exec_sql(broken, c.sql);
    const CheckResult result = check(broken);
    EXPECT_EQ(result.exit_code, c.exit_code) << c.label << ": " << result.raw;
  }
}

TEST_F(ChurnCheckerTest, FlagsDamagedFiles) {
  const fs::path db = dir_ / "live.db";
  prime(db, "delete");
  write(db, 20);
  const std::string bytes = read_file(db);

  const fs::path half = dir_ / "half.db";
  write_file(half, bytes.substr(0, bytes.size() / 2));
  EXPECT_EQ(check(half).exit_code, 2) << check(half).raw;

  const fs::path empty = dir_ / "empty.db";
  write_file(empty, "");
  EXPECT_EQ(check(empty).exit_code, 2);

  const fs::path junk = dir_ / "junk.db";
  write_file(junk, sqlite_backup::testing::random_bytes(65536));
  EXPECT_EQ(check(junk).exit_code, 2);

  EXPECT_EQ(check(dir_ / "missing.db").exit_code, 2);
}

TEST_F(ChurnCheckerTest, FlagsATornCopyOfOldAndNewHalves) {
  const fs::path db = dir_ / "live.db";
  prime(db, "delete");
  write(db, 30);
  const std::string old_bytes = read_file(db);
  write(db, 120);
  const std::string new_bytes = read_file(db);
  const std::size_t half = old_bytes.size() / 2 / 4096 * 4096;
  const fs::path torn = dir_ / "torn.db";
  write_file(torn, old_bytes.substr(0, half) + new_bytes.substr(half));
  const CheckResult result = check(torn);
  EXPECT_TRUE(is_torn_verdict(result)) << result.raw;
}

// The race a per-file copy loses: the database copied before a checkpoint, the WAL copied after
// the checkpoint restarted it. The pair replays into a state after no transaction.
TEST_F(ChurnCheckerTest, FlagsADatabaseFromBeforeACheckpointWithAWalFromAfterTheReset) {
  const fs::path db = dir_ / "live.db";
  prime(db, "wal");
  // An open connection keeps the WAL alive when each writer process closes.
  sqlite3* holder = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &holder), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(holder, "SELECT last_seq FROM meta", nullptr, nullptr, nullptr),
            SQLITE_OK);
  write(db, 40, {"--autocheckpoint", "0"});
  ASSERT_GT(fs::file_size(db.string() + "-wal"), 0U)
      << "the 40 transactions should live in the WAL";

  const fs::path race = copy(db, "race.db");
  const fs::path pair = copy(db, "pair.db");
  copy(db.string() + "-wal", "pair.db-wal");
  ASSERT_EQ(sqlite3_exec(holder, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr),
            SQLITE_OK);
  write(db, 5, {"--autocheckpoint", "0"});
  copy(db.string() + "-wal", "race.db-wal");
  sqlite3_close(holder);

  const CheckResult together = check(pair, 40, 40);
  EXPECT_EQ(together.exit_code, 0) << together.raw;
  const CheckResult raced = check(race);
  EXPECT_TRUE(is_torn_verdict(raced)) << raced.raw;
}

}  // namespace
}  // namespace stress
