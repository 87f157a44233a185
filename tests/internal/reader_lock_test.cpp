// io::ReaderLock in WAL mode: a shared lock on read-lock 0 of the -shm keeps checkpoints from
// writing frames back into the database file (so the WAL cannot restart under a copy), while
// the owner's commits go on without waiting. Deterministic: the owner is a connection of this
// process, and an open-file-description lock conflicts with its POSIX locks as another
// process's would.
#include "io/reader_lock.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "test_support.hpp"
#include "wal_owner.hpp"

namespace sqlite_backup::testing {
namespace {

// PRAGMA wal_checkpoint(TRUNCATE)'s first column: 1 when it could not finish (busy).
long long checkpoint_truncate(const WalOwner& owner) {
  return query_int(owner.handle(), "PRAGMA wal_checkpoint(TRUNCATE)").value_or(-1);
}

TEST(ReaderLockWal, ReadLockZeroKeepsCheckpointsOutButNotCommits) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, 4096);
  owner.insert(200, 1000);
  // Our look is at the files, not through SQLite: the owner keeps its busy handler off.
  owner.exec("PRAGMA busy_timeout=0");
  const fs::path wal = source.string() + "-wal";
  const std::string database_before = read_file(source);
  const auto wal_size_before = fs::file_size(wal);

  {
    const auto lock = io::ReaderLock::try_wal_read_mark_zero(source.string() + "-shm");
    ASSERT_TRUE(lock.has_value());
    // A checkpoint cannot write back (it reports busy) and so cannot restart the WAL.
    EXPECT_EQ(checkpoint_truncate(owner), 1);
    EXPECT_TRUE(read_file(source) == database_before) << "the database file was written";
    EXPECT_GE(fs::file_size(wal), wal_size_before);
    // Commits do not wait for us: they append to the WAL.
    EXPECT_NO_THROW(owner.insert(10, 100));
    EXPECT_GT(fs::file_size(wal), wal_size_before);
  }
  // Released: the same checkpoint writes everything back and empties the WAL.
  EXPECT_EQ(checkpoint_truncate(owner), 0);
  EXPECT_EQ(fs::file_size(wal), 0U);
  EXPECT_EQ(count_rows(source), 210);
}

// What a checkpoint holds while it writes back: an exclusive lock on read-lock 0 (byte 123 of
// the -shm: the lock bytes start at 120, read-lock 0 is the fourth). Taken here the way the
// checkpoint takes it, our reader's lock is refused; shared with another reader, it is not.
TEST(ReaderLockWal, RefusedWhileACheckpointHoldsReadLockZero) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, 4096);
  owner.insert(50, 500);
  const fs::path shm = source.string() + "-shm";
  {
    const auto first = io::ReaderLock::try_wal_read_mark_zero(shm);
    ASSERT_TRUE(first.has_value());
    EXPECT_TRUE(io::ReaderLock::try_wal_read_mark_zero(shm).has_value());
  }
  const io::UniqueFd checkpointer(::open(shm.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(checkpointer);
  struct flock exclusive {};
  exclusive.l_type = F_WRLCK;
  exclusive.l_whence = SEEK_SET;
  exclusive.l_start = 123;
  exclusive.l_len = 1;
  ASSERT_EQ(::fcntl(checkpointer.get(), F_OFD_SETLK, &exclusive), 0);
  EXPECT_FALSE(io::ReaderLock::try_wal_read_mark_zero(shm).has_value());
  exclusive.l_type = F_UNLCK;
  ASSERT_EQ(::fcntl(checkpointer.get(), F_OFD_SETLK, &exclusive), 0);
  EXPECT_TRUE(io::ReaderLock::try_wal_read_mark_zero(shm).has_value());
  EXPECT_FALSE(io::ReaderLock::try_wal_read_mark_zero(dir / "missing.db-shm").has_value());
}

}  // namespace
}  // namespace sqlite_backup::testing
