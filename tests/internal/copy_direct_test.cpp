// Direct writes (io::WriteOut::direct): a durable copy of a large database goes to the disk
// past the page cache, byte for byte the source's, with a tail the device cannot take
// directly written through the page cache; and the backup chooses it only where the copy is
// fsynced and not read back.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "io/copy.hpp"
#include "io/file.hpp"
#include "sqlite_backup/sqlite_backup.hpp"
#include "test_support.hpp"
#include "wal_owner.hpp"

namespace sqlite_backup::testing {
namespace {

// How many of the first `bytes` of `file` are in the page cache, in pages (mincore).
std::size_t cached_pages(const fs::path& file, std::size_t bytes) {
  const io::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw std::runtime_error("cannot open " + file.string());
  void* map = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (map == MAP_FAILED) throw std::runtime_error("cannot map " + file.string());
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> resident((bytes + page - 1) / page);
  const int status = ::mincore(map, bytes, resident.data());
  ::munmap(map, bytes);
  if (status != 0) throw std::runtime_error("mincore failed on " + file.string());
  std::size_t cached = 0;
  for (const unsigned char flags : resident) cached += flags & 1U;
  return cached;
}

class DirectCopy : public ::testing::TestWithParam<std::size_t> {};

// 9 MiB and a tail: 1536 bytes (three sectors: all of it direct), then 1000 (the last bytes
// do not fill a sector and go through the page cache).
TEST_P(DirectCopy, CopiesEveryBytePastThePageCache) {
  const TempDir dir;
  if (!direct_writes_possible(dir.path())) {
    GTEST_SKIP() << "the filesystem of " << dir.path() << " refuses O_DIRECT";
  }
  const fs::path source = dir / "source";
  const fs::path copy = dir / "copy";
  const std::size_t main_part = std::size_t{9} << 20;
  const std::string bytes = random_bytes(main_part + GetParam());
  write_file(source, bytes);
  const io::UniqueFd in(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
  io::UniqueFd out(::open(copy.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  const io::CopyOutcome outcome =
      io::copy_file_contents(in.get(), source, out.get(), copy, {}, io::WriteOut::direct);
  EXPECT_EQ(outcome.method, io::CopyMethod::splice_direct);
  EXPECT_EQ(outcome.bytes, bytes.size());
  // The descriptor is handed back as it came (later writes through it are ordinary ones).
  EXPECT_EQ(::fcntl(out.get(), F_GETFL) & O_DIRECT, 0);
  out.close(copy);
  // (Before anything reads the copy: a read would bring it into the page cache.)
  EXPECT_EQ(cached_pages(copy, main_part), 0U);
  EXPECT_TRUE(read_file(copy) == bytes);
}

INSTANTIATE_TEST_SUITE_P(Tail, DirectCopy, ::testing::Values(1536, 1000),
                         [](const auto& test) {
                           return test.param % 512 == 0 ? std::string("WholeSectors")
                                                        : std::string("PartOfASector");
                         });

// The library's choice: a durable backup of a 72 MiB database whose live WAL it applies
// writes the database past the page cache; the same backup with durable off does not (no
// fsync follows, so the page cache is the faster way), and both are the owner's state.
TEST(DirectWrites, ADurableBackupOfALargeLiveWalDatabaseWritesPastThePageCache) {
  const TempDir dir;
  if (!direct_writes_possible(dir.path())) {
    GTEST_SKIP() << "the filesystem of " << dir.path() << " refuses O_DIRECT";
  }
  const fs::path source = dir / "source.sqlite";
  WalOwner owner(source, 4096);
  owner.insert(18000, 4000);  // about 72 MiB
  owner.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  owner.exec("UPDATE t SET v = randomblob(4000) WHERE id % 100 = 0");  // a live WAL
  ASSERT_GT(fs::file_size(source.string() + "-wal"), 0U);
  const std::string state = table_digest(owner.handle());
  const std::size_t database_bytes = fs::file_size(source);
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));

  sqlite_backup::sqlite_backup(source, dir / "durable.sqlite");
  // The WAL's pages (one in a hundred rows) go through the page cache; the rest did not.
  EXPECT_LT(cached_pages(dir / "durable.sqlite", database_bytes), database_bytes / page / 10);

  sqlite_backup::sqlite_backup(source, dir / "no-sync.sqlite", {.durable = false});
  EXPECT_GT(cached_pages(dir / "no-sync.sqlite", database_bytes), database_bytes / page / 2);

  EXPECT_EQ(table_digest(dir / "durable.sqlite"), state);
  EXPECT_EQ(table_digest(dir / "no-sync.sqlite"), state);
}

}  // namespace
}  // namespace sqlite_backup::testing
