// Where a reflink clone is the database copy and where it is not (snapshot::clone_of_database):
// a durable copy over which a large live WAL is applied is copied whole, since every page the
// WAL writes into a clone is copied on write and waited for at the fsync. On a loop-mounted
// XFS (root and xfsprogs; skipped otherwise, saying why), with a real SQLite connection as
// the WAL's owner: the method the copy took, the snapshot's bytes, and the source untouched by
// what was written into its clone.
#include <gtest/gtest.h>

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "discover/database_files.hpp"
#include "plain_application.hpp"
#include "snapshot/copy_set.hpp"
#include "sqlite_backup/log.hpp"
#include "test_support.hpp"
#include "wal_owner.hpp"

namespace sqlite_backup::testing {
namespace {

constexpr int kPageSize = 4096;
constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;

// Bytes of a WAL of `frames` frames of 4 KiB pages.
constexpr std::uint64_t wal_of(std::uint64_t frames) { return 32 + frames * (kPageSize + 24); }

TEST(CloneOfDatabase, DurableCopiesOfAWalOfMoreFramesThanOneTwentiethOfThePagesAreNotClones) {
  snapshot::Settings durable;
  durable.start_writeback = true;
  const std::uint64_t database = 400 * kMiB;  // 102,400 pages: 5% is 5,120
  EXPECT_EQ(snapshot::clone_of_database(durable, true, database, wal_of(5121), kPageSize),
            io::Clone::never);
  EXPECT_EQ(snapshot::clone_of_database(durable, true, database, wal_of(5120), kPageSize),
            io::Clone::when_possible);
  EXPECT_EQ(snapshot::clone_of_database(durable, true, database, wal_of(100), kPageSize),
            io::Clone::when_possible);
  // No WAL applied over the copy, or no fsync to wait for the copies on write: a clone.
  EXPECT_EQ(snapshot::clone_of_database(durable, false, database, wal_of(9000), kPageSize),
            io::Clone::when_possible);
  snapshot::Settings not_synced;
  EXPECT_EQ(snapshot::clone_of_database(not_synced, true, database, wal_of(9000), kPageSize),
            io::Clone::when_possible);
  // A WAL header without a page size (torn, or empty) decides nothing.
  EXPECT_EQ(snapshot::clone_of_database(durable, true, database, wal_of(9000), 0),
            io::Clone::when_possible);
}

class CloneOnXfs : public ::testing::Test {
 protected:
  void SetUp() override {
    level_ = log_level();  // (before a skip: TearDown puts it back)
    std::string why_not;
    std::optional<XfsLoopMount> mounted = XfsLoopMount::try_mount(why_not);
    if (!mounted) GTEST_SKIP() << "no XFS to clone on: " << why_not;
    mount_.emplace(std::move(*mounted));
    set_log_level(LogLevel::debug);
    set_log_sink([this](const LogRecord& record) {
      const std::lock_guard lock(mutex_);
      if (record.message.starts_with("copied ") &&
          record.message.find("source.db (") != std::string::npos) {
        database_copies_.emplace_back(record.message);
      }
    });
  }
  void TearDown() override {
    set_log_sink({});
    set_log_level(level_);
  }

  // About 8 MiB (2,000 pages) in the database file, and a live WAL that rewrites every
  // `every`-th row: every 400th row is a few frames, far under the 100 of a twentieth of the
  // pages; every 10th is some 800.
  fs::path make_source(int every) {
    const fs::path source = *mount_ / "source.db";
    owner_.emplace(source, kPageSize);
    owner_->insert(8000, 900);
    owner_->exec("PRAGMA wal_checkpoint(TRUNCATE)");
    owner_->exec("UPDATE t SET v = randomblob(900) WHERE id % " + std::to_string(every) + " = 1");
    return source;
  }

  // Snapshots `source` into the XFS (where a clone of it can be made), durable or not, and
  // returns the copy's bytes; the method the database copy took goes to method_.
  std::string snapshot(const fs::path& source, bool durable) {
    const fs::path staged = *mount_ / (durable ? "durable" : "cached") / "source.db";
    fs::create_directories(staged.parent_path());
    snapshot::Settings settings;
    settings.apply_live_wal = true;
    settings.start_writeback = durable;
    const snapshot::Outcome outcome =
        snapshot::copy_consistent_set(discover::DatabaseFiles(source), staged, settings);
    EXPECT_TRUE(outcome.validated) << outcome.last_reason;
    const std::lock_guard lock(mutex_);
    method_ = database_copies_.empty() ? "" : database_copies_.back();
    database_copies_.clear();
    return read_file(staged);
  }

  // The plain application, away from the source.
  std::string applied_plainly(const fs::path& source) const {
    fs::create_directories(*mount_ / "plain");
    return plain_application_of(source, *mount_ / "plain" / "plain.db");
  }

  [[nodiscard]] bool cloned() const { return method_.ends_with(", reflink)"); }

  std::optional<XfsLoopMount> mount_;
  std::string method_;

 private:
  LogLevel level_ = LogLevel::warning;
  std::mutex mutex_;
  std::vector<std::string> database_copies_;
  std::optional<WalOwner> owner_;
};

// The usual case: a WAL far smaller than the database. The clone is the copy, the WAL's pages
// are written into it (copied on write), and the source keeps every byte it had.
TEST_F(CloneOnXfs, DurableCopyWithASmallWalIsAClone) {
  const fs::path source = make_source(400);
  const std::string source_before = read_file(source);
  const std::string expected = applied_plainly(source);
  EXPECT_TRUE(snapshot(source, true) == expected) << "the snapshot is not the plain application";
  EXPECT_TRUE(cloned()) << method_;
  EXPECT_TRUE(read_file(source) == source_before) << "a write into the clone reached the source";
}

// A WAL of more frames than a twentieth of the database's pages: copied whole, durably.
TEST_F(CloneOnXfs, DurableCopyWithALargeWalIsCopiedWhole) {
  const fs::path source = make_source(10);
  const std::string expected = applied_plainly(source);
  EXPECT_TRUE(snapshot(source, true) == expected) << "the snapshot is not the plain application";
  EXPECT_FALSE(method_.empty()) << "no debug record of the database copy";
  EXPECT_FALSE(cloned()) << method_;
}

// Not synced (--no-sync), the same large WAL: the copies on write cost no fsync, so a clone.
TEST_F(CloneOnXfs, CopyNotSyncedWithALargeWalIsAClone) {
  const fs::path source = make_source(10);
  const std::string source_before = read_file(source);
  const std::string expected = applied_plainly(source);
  EXPECT_TRUE(snapshot(source, false) == expected) << "the snapshot is not the plain application";
  EXPECT_TRUE(cloned()) << method_;
  EXPECT_TRUE(read_file(source) == source_before) << "a write into the clone reached the source";
}

}  // namespace
}  // namespace sqlite_backup::testing
