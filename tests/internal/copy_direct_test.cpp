// Direct writes (io::WriteOut::direct): a durable copy of a large database goes to the disk
// past the page cache, byte for byte the source's, with a tail the device cannot take
// directly written through the page cache; and the snapshot chooses it only where the copy
// is fsynced and not read back.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "io/copy.hpp"
#include "io/file.hpp"
#include "snapshot/copy_set.hpp"
#include "test_support.hpp"

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

INSTANTIATE_TEST_SUITE_P(Tail, DirectCopy, ::testing::Values(1536, 1000), [](const auto& test) {
  return test.param % 512 == 0 ? std::string("WholeSectors") : std::string("PartOfASector");
});

// The choice: direct writes for a durable copy of a large database only, with a live WAL
// applied (so no content comparison reads the copy back); early writeback for other durable
// database copies; the page cache alone for side files and copies no fsync follows.
TEST(DirectWrites, OnlyForALargeDurableDatabaseCopyWithAWalApplied) {
  snapshot::Settings durable;
  durable.start_writeback = true;
  const snapshot::Settings not_durable;
  const std::uint64_t large = snapshot::kDirectWritesFrom;
  EXPECT_EQ(snapshot::write_out_of(durable, true, true, large), io::WriteOut::direct);
  EXPECT_EQ(snapshot::write_out_of(durable, true, true, large - 4096), io::WriteOut::early);
  EXPECT_EQ(snapshot::write_out_of(durable, true, false, large), io::WriteOut::early);
  EXPECT_EQ(snapshot::write_out_of(durable, false, true, large), io::WriteOut::cached);
  EXPECT_EQ(snapshot::write_out_of(not_durable, true, true, large), io::WriteOut::cached);
}

}  // namespace
}  // namespace sqlite_backup::testing
