// recover::apply_wal against SQLite itself: the same WAL, applied by us and replayed by
// SQLite, must give the same database file, byte for byte, once SQLite has switched each
// to journal_mode=DELETE. Each WAL here comes from a real SQLite connection that is still
// open (as a live owner's would be), in shapes that decide which frames count.
#include "recover/apply_wal.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "test_support.hpp"
#include "wal_owner.hpp"

namespace sqlite_backup::testing {
namespace {

void copy_bytes(const fs::path& from, const fs::path& to) {
  const std::string bytes = read_file(from);
  std::ofstream out(to, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out.flush()) throw std::runtime_error("cannot write " + to.string());
}

// As recover_in_place() finishes a staged copy: SQLite opens it and leaves WAL mode.
void switch_to_delete_mode(const fs::path& database) {
  exec_sql(database, "PRAGMA journal_mode=DELETE");
  if (fs::exists(database.string() + "-wal") || fs::exists(database.string() + "-shm")) {
    throw std::runtime_error("SQLite left side files beside " + database.string());
  }
}

// Two copies of the owner's database and WAL as they are now: one for us, one for SQLite.
class TwoCopies {
 public:
  explicit TwoCopies(const fs::path& source) {
    fs::create_directory(dir_ / "ours");
    fs::create_directory(dir_ / "sqlite");
    for (const char* side : {"ours", "sqlite"}) {
      copy_bytes(source, dir_ / side / "db");
      copy_bytes(source.string() + "-wal", dir_ / side / "db-wal");
    }
  }
  [[nodiscard]] fs::path ours() const { return dir_ / "ours" / "db"; }
  [[nodiscard]] fs::path theirs() const { return dir_ / "sqlite" / "db"; }
  [[nodiscard]] fs::path our_wal() const { return dir_ / "ours" / "db-wal"; }

  recover::WalApplication apply_both() {
    const recover::WalApplication applied =
        recover::apply_wal(ours(), our_wal(), nullptr, "source.db");
    switch_to_delete_mode(ours());
    switch_to_delete_mode(theirs());
    return applied;
  }

 private:
  TempDir dir_{"sqlite_backup_apply_wal"};
};

void expect_same_database(const TwoCopies& copies) {
  const std::string ours = read_file(copies.ours());
  const std::string theirs = read_file(copies.theirs());
  EXPECT_EQ(ours.size(), theirs.size());
  EXPECT_TRUE(ours == theirs) << "the database files differ";
  EXPECT_EQ(query_text(copies.ours(), "PRAGMA integrity_check"), "ok");
}

class ApplyWalPageSizes : public ::testing::TestWithParam<int> {};

TEST_P(ApplyWalPageSizes, GivesTheDatabaseSqliteCheckpointWouldForNewAndRewrittenPages) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, GetParam());
  owner.insert(400, 700);
  for (int i = 0; i < 5; ++i) {
    owner.insert(50, 900);
    owner.exec("UPDATE t SET v = randomblob(800) WHERE id % 7 = " + std::to_string(i));
  }
  TwoCopies copies(source);
  const recover::WalApplication applied = copies.apply_both();
  ASSERT_TRUE(applied.applied) << applied.why_not;
  EXPECT_EQ(applied.valid_frames, applied.committed_frames);
  // Pages rewritten by several transactions are written once, in their last version.
  EXPECT_LT(applied.pages_written, applied.committed_frames);
  EXPECT_FALSE(fs::exists(copies.our_wal()));
  // The header left WAL mode as SQLite's switch to DELETE would have left it.
  EXPECT_TRUE(applied.left_wal_mode);
  expect_same_database(copies);
}

// 512 and 65536 are the bounds; 65536 is also the size the database header stores as 1.
INSTANTIATE_TEST_SUITE_P(PageSizes, ApplyWalPageSizes, ::testing::Values(512, 4096, 65536));

TEST(ApplyWal, LeavesOutFramesOfATransactionThatHasNotCommitted) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, 4096);
  owner.insert(200, 500);
  // A transaction bigger than its page cache spills pages into the WAL before it commits.
  owner.exec("PRAGMA cache_size=10; BEGIN");
  owner.insert(2000, 1000);
  TwoCopies copies(source);
  owner.exec("ROLLBACK");
  const recover::WalApplication applied = copies.apply_both();
  ASSERT_TRUE(applied.applied) << applied.why_not;
  EXPECT_GT(applied.valid_frames, applied.committed_frames + 100);
  expect_same_database(copies);
  EXPECT_EQ(count_rows(copies.ours()), 200);
}

TEST(ApplyWal, IgnoresFramesLeftFromTheWalsEarlierGeneration) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, 4096);
  owner.insert(3000, 1000);
  // Once everything is checkpointed, the next writer starts the WAL over from its first
  // frame with new salts: the old generation's frames stay in the file behind the new ones.
  owner.exec("PRAGMA wal_checkpoint(PASSIVE)");
  owner.exec("UPDATE t SET v = randomblob(1000) WHERE id = 1");
  const auto wal_size = fs::file_size(source.string() + "-wal");
  TwoCopies copies(source);
  const recover::WalApplication applied = copies.apply_both();
  ASSERT_TRUE(applied.applied) << applied.why_not;
  EXPECT_LT(applied.valid_frames, 10U);
  EXPECT_GT(wal_size, 3000U * 1000U) << "the WAL did not keep the earlier generation";
  expect_same_database(copies);
}

// Flips one byte of frame `frame` (1-based) at `offset_in_frame`, in our copy and SQLite's.
void damage_frame(const TwoCopies& copies, std::uint64_t frame, std::uint64_t offset_in_frame) {
  const std::uint64_t position = 32 + (frame - 1) * (24 + 4096) + offset_in_frame;
  for (const fs::path& wal : {copies.our_wal(), fs::path(copies.theirs().string() + "-wal")}) {
    std::fstream file(wal, std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(static_cast<std::streamoff>(position));
    const char byte = static_cast<char>(file.get());
    file.seekp(static_cast<std::streamoff>(position));
    file.put(static_cast<char>(byte ^ 0x01));
  }
}

// A WAL of 20 transactions of about 6 frames each.
void write_twenty_transactions(const WalOwner& owner) {
  for (int i = 0; i < 20; ++i) owner.insert(20, 1000);
}

TEST(ApplyWal, StopsWhereAFramesChecksumBreaksTheChain) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, 4096);
  write_twenty_transactions(owner);
  TwoCopies copies(source);
  damage_frame(copies, 60, 24 + 100);  // a byte of the page: a torn write
  const recover::WalApplication applied = copies.apply_both();
  ASSERT_TRUE(applied.applied) << applied.why_not;
  EXPECT_EQ(applied.valid_frames, 59U);
  expect_same_database(copies);
}

TEST(ApplyWal, StopsWhereAFramesSaltsAreNotTheHeaders) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, 4096);
  write_twenty_transactions(owner);
  TwoCopies copies(source);
  // The checksum does not cover the salts: only the salt comparison catches this frame.
  damage_frame(copies, 60, 8);
  const recover::WalApplication applied = copies.apply_both();
  ASSERT_TRUE(applied.applied) << applied.why_not;
  EXPECT_EQ(applied.valid_frames, 59U);
  expect_same_database(copies);
}

// No valid frame at all, in a WAL that has frames, is legal but rare (a restarted WAL
// whose first frame is not written yet); it is also what pages stored in another format
// look like (a VFS that encrypts them). SQLite decides.
TEST(ApplyWal, LeavesAWalWithoutASingleValidFrameToSqlite) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, 4096);
  write_twenty_transactions(owner);
  TwoCopies copies(source);
  damage_frame(copies, 1, 24 + 100);
  const recover::WalApplication applied = copies.apply_both();
  EXPECT_FALSE(applied.applied);
  EXPECT_NE(applied.why_not.find("no frame"), std::string::npos) << applied.why_not;
  expect_same_database(copies);
}

TEST(ApplyWal, CutsTheFileWhereTheLastCommitEndsTheDatabase) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, 4096, "PRAGMA auto_vacuum=FULL;");
  owner.insert(2000, 1000);
  owner.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  // The database file is now large; this commit shrinks the database to a few pages.
  owner.exec("DELETE FROM t WHERE id > 10");
  const auto file_size = fs::file_size(source);
  TwoCopies copies(source);
  const recover::WalApplication applied = copies.apply_both();
  ASSERT_TRUE(applied.applied) << applied.why_not;
  EXPECT_LT(fs::file_size(copies.ours()), file_size / 10);
  expect_same_database(copies);
}

TEST(ApplyWal, TakesAWalTruncatedByACheckpointAsEmpty) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, 4096);
  owner.insert(300, 700);
  owner.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  ASSERT_EQ(fs::file_size(source.string() + "-wal"), 0U);
  TwoCopies copies(source);
  const recover::WalApplication applied = copies.apply_both();
  ASSERT_TRUE(applied.applied) << applied.why_not;
  EXPECT_EQ(applied.valid_frames, 0U);
  EXPECT_TRUE(applied.left_wal_mode);
  expect_same_database(copies);
  EXPECT_EQ(count_rows(copies.ours()), 300);
}

TEST(ApplyWal, LeavesAWalWithABrokenHeaderToSqliteUntouched) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, 4096);
  owner.insert(100, 500);
  TwoCopies copies(source);
  {
    std::fstream wal(copies.our_wal(), std::ios::in | std::ios::out | std::ios::binary);
    // Flipped, not overwritten: the checksum depends on the random salts, so any fixed
    // byte would already be there once in 256 runs and damage nothing.
    wal.seekg(26);  // inside the header's checksum
    const char byte = static_cast<char>(wal.get());
    wal.seekp(26);
    wal.put(static_cast<char>(byte ^ 0x01));
  }
  const std::string database_before = read_file(copies.ours());
  const std::string wal_before = read_file(copies.our_wal());
  const recover::WalApplication applied =
      recover::apply_wal(copies.ours(), copies.our_wal(), nullptr, "source.db");
  EXPECT_FALSE(applied.applied);
  EXPECT_NE(applied.why_not.find("checksum"), std::string::npos) << applied.why_not;
  EXPECT_EQ(read_file(copies.ours()), database_before);
  EXPECT_EQ(read_file(copies.our_wal()), wal_before);
}

// SQLite writes the format bytes (18, 19) both 2 or both 1. Mixed ones (a damaged page 1)
// SQLite's switch to DELETE overwrites, while a copy without a WAL would keep them: such a
// page 1 is left to SQLite.
TEST(ApplyWal, LeavesAPage1WithMixedFormatBytesToSqlite) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, 4096);
  owner.insert(50, 100);
  owner.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  // A same-size rewrite of one row touches its leaf page only: page 1 stays out of the WAL.
  owner.exec("UPDATE t SET v = randomblob(100) WHERE id = 7");
  TwoCopies copies(source);
  for (const fs::path& database : {copies.ours(), copies.theirs()}) {
    std::fstream file(database, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(19);
    file.put('\x01');  // 18 stays 2
  }
  const recover::WalApplication applied = copies.apply_both();
  EXPECT_FALSE(applied.applied);
  EXPECT_NE(applied.why_not.find("format bytes"), std::string::npos) << applied.why_not;
  expect_same_database(copies);
}

// Patches the 4-byte big-endian field at `offset` of both copies' database header.
void patch_header(const TwoCopies& copies, std::streamoff offset, std::uint32_t value) {
  for (const fs::path& database : {copies.ours(), copies.theirs()}) {
    std::fstream file(database, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(offset);
    for (int shift = 24; shift >= 0; shift -= 8)
      file.put(static_cast<char>((value >> shift) & 0xff));
  }
}

// SQLite trusts the in-header database size (28) only while the header is valid for the
// change counter (92 equal to 24); its switch to DELETE rewrites it otherwise. Our switch
// makes the header valid, so a stale size would become trusted: such a header is SQLite's.
TEST(ApplyWal, LeavesAHeaderWhoseDatabaseSizeSqliteWouldRewriteToSqlite) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, 4096);
  owner.insert(100, 500);
  owner.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  TwoCopies copies(source);
  patch_header(copies, 92, 12345);  // not the change counter: 28 is not to be trusted
  patch_header(copies, 28, 2);
  const recover::WalApplication applied = copies.apply_both();
  EXPECT_FALSE(applied.applied);
  EXPECT_NE(applied.why_not.find("database size"), std::string::npos) << applied.why_not;
  expect_same_database(copies);
}

// With auto_vacuum=FULL, the commit of SQLite's switch to DELETE also removes free pages
// (an owner whose autovacuum_pages callback kept them); ours would keep them.
TEST(ApplyWal, LeavesFreePagesOfAFullAutoVacuumDatabaseToSqlite) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, 4096, "PRAGMA auto_vacuum=FULL;");
  sqlite3_autovacuum_pages(
      owner.handle(), [](void*, const char*, unsigned, unsigned, unsigned) { return 0U; }, nullptr,
      nullptr);
  owner.insert(200, 1000);
  owner.exec("DELETE FROM t WHERE id > 20");
  TwoCopies copies(source);
  const recover::WalApplication applied = copies.apply_both();
  EXPECT_FALSE(applied.applied);
  EXPECT_NE(applied.why_not.find("auto_vacuum"), std::string::npos) << applied.why_not;
  expect_same_database(copies);
}

TEST(ApplyWal, LeavesAWalWhosePageSizeDiffersFromTheDatabasesToSqlite) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, 4096);
  owner.insert(100, 500);
  TwoCopies copies(source);
  {
    // The database header says 1024-byte pages; the WAL's frames hold 4096-byte ones.
    std::fstream database(copies.ours(), std::ios::in | std::ios::out | std::ios::binary);
    database.seekp(16);
    database.put('\x04');
    database.put('\x00');
  }
  const std::string wal_before = read_file(copies.our_wal());
  const recover::WalApplication applied =
      recover::apply_wal(copies.ours(), copies.our_wal(), nullptr, "source.db");
  EXPECT_FALSE(applied.applied);
  EXPECT_NE(applied.why_not.find("page size"), std::string::npos) << applied.why_not;
  EXPECT_EQ(read_file(copies.our_wal()), wal_before);
}

}  // namespace
}  // namespace sqlite_backup::testing
