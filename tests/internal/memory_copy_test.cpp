// The memory snapshot of a live WAL (snapshot::copy_live_wal_set_into_memory and
// recover::apply_live_wal): the source's own WAL is applied to the image as it is read, with
// nothing staged. What the owner does to its WAL between and during our reads is forced here
// at exact points, from the progress callback of the database read or from the image's
// writes, with a real SQLite connection as the owner.
#include "snapshot/memory_copy.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <span>
#include <sqlite_backup/sqlite_backup.hpp>
#include <string>
#include <thread>
#include <vector>

#include "debug_log.hpp"
#include "discover/database_files.hpp"
#include "io/file.hpp"
#include "io/sqlite_memory.hpp"
#include "recover/apply_wal.hpp"
#include "recover/memory_image.hpp"
#include "small_heap_images.hpp"
#include "test_support.hpp"
#include "wal_owner.hpp"

namespace sqlite_backup::testing {
namespace {

// The image handed to a fresh in-memory connection, as the memory destination hands it.
long long rows_in(io::SqliteMemory image) {
  sqlite3* db = nullptr;
  sqlite3_open(":memory:", &db);
  const int rc = image.hand_to(db);
  const long long rows = rc == SQLITE_OK ? count_rows(db) : -1;
  EXPECT_EQ(query_text(db, "PRAGMA integrity_check"), "ok");
  sqlite3_close(db);
  return rows;
}

io::SqliteMemory read_whole(const fs::path& file) {
  const io::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  io::SqliteMemory memory;
  io::read_file_into(fd.get(), file, memory, {});
  return memory;
}

// The same bytes as the staged path gives: a staged copy of the database and of the WAL,
// with apply_wal() on the files.
std::string applied_through_staged_files(const fs::path& source, const TempDir& dir) {
  const fs::path database = dir / "staged.db";
  const fs::path wal = dir / "staged.db-wal";
  fs::copy_file(source, database);
  fs::copy_file(source.string() + "-wal", wal);
  EXPECT_TRUE(recover::apply_wal(database, wal, nullptr, source).applied);
  return read_file(database);
}

// A file large enough for two threads (40 MiB, an odd size) is read whole, byte for byte,
// with the caller's job run once on the second thread before it joins the read, and the
// progress reported on the calling thread only.
TEST(ReadFileInto, TwoThreadsReadEveryByteAndRunTheJobAlongside) {
  TempDir dir;
  const fs::path file = dir / "big.bin";
  const std::string bytes = random_bytes((std::size_t{40} << 20) + 12345);
  write_file(file, bytes);
  const io::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  io::SqliteMemory memory;
  std::set<std::thread::id> job_threads;
  std::set<std::thread::id> progress_threads;
  const std::uint64_t read = io::read_file_into(
      fd.get(), file, memory,
      [&](std::uint64_t) {
        progress_threads.insert(std::this_thread::get_id());
        return true;
      },
      [&] { job_threads.insert(std::this_thread::get_id()); });
  EXPECT_EQ(read, bytes.size());
  ASSERT_EQ(memory.size(), bytes.size());
  EXPECT_TRUE(std::string(reinterpret_cast<const char*>(memory.data()), memory.size()) == bytes);
  ASSERT_EQ(job_threads.size(), 1U);
  EXPECT_NE(*job_threads.begin(), std::this_thread::get_id());
  EXPECT_EQ(progress_threads, std::set<std::thread::id>{std::this_thread::get_id()});
}

// keep_going's false stops the read: nothing counts as read, whether it comes at once or only
// when every byte is in, on two threads (40 MiB) or on one (3 MiB).
TEST(ReadFileInto, AStoppedReadReturnsNothing) {
  TempDir dir;
  for (const std::size_t size : {std::size_t{40} << 20, std::size_t{3} << 20}) {
    const fs::path file = dir / ("file" + std::to_string(size));
    write_file(file, random_bytes(size));
    const io::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    io::SqliteMemory at_once;
    EXPECT_EQ(io::read_file_into(fd.get(), file, at_once, [](std::uint64_t) { return false; }), 0U)
        << size;
    EXPECT_EQ(at_once.size(), 0U) << size;
    io::SqliteMemory at_the_end;
    EXPECT_EQ(io::read_file_into(fd.get(), file, at_the_end,
                                 [size](std::uint64_t done) { return done < size; }),
              0U)
        << size;
    EXPECT_EQ(at_the_end.size(), 0U) << size;
  }
}

TEST(ApplyLiveWal, AppliesTheSourcesOwnWalAsTheStagedCopyWouldBeAppliedAndLeavesItAlone) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, 4096);
  owner.insert(300, 900);
  owner.exec("UPDATE t SET v = randomblob(700) WHERE id % 3 = 0");
  const std::string wal_before = read_file(source.string() + "-wal");

  io::SqliteMemory image = read_whole(source);
  const io::UniqueFd wal(::open((source.string() + "-wal").c_str(), O_RDONLY | O_CLOEXEC));
  recover::MemoryImage memory(image, source);
  const recover::WalApplication applied =
      recover::apply_live_wal(memory, wal.get(), nullptr, source);
  ASSERT_TRUE(applied.applied) << applied.why_not;
  EXPECT_TRUE(applied.left_wal_mode);
  EXPECT_EQ(read_file(source.string() + "-wal"), wal_before) << "the source's WAL was changed";
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(image.data()), image.size()),
            applied_through_staged_files(source, dir));
  EXPECT_EQ(rows_in(std::move(image)), 300);
}

// Enough frames (over 2,000 pages, with runs broken by frames a later commit superseded)
// that they are read straight into the image's pages on two threads: the same bytes as the
// staged path's.
TEST(ApplyLiveWal, ManyFramesReadStraightIntoTheImageGiveTheStagedCopysBytes) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, 4096);
  owner.insert(2000, 900);
  owner.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  owner.insert(8000, 900);
  owner.exec("UPDATE t SET v = randomblob(900) WHERE id % 7 = 0");

  io::SqliteMemory image = read_whole(source);
  const io::UniqueFd wal(::open((source.string() + "-wal").c_str(), O_RDONLY | O_CLOEXEC));
  recover::MemoryImage memory(image, source);
  const recover::WalApplication applied =
      recover::apply_live_wal(memory, wal.get(), nullptr, source);
  ASSERT_TRUE(applied.applied) << applied.why_not;
  ASSERT_GE(applied.pages_written, 2048U);
  EXPECT_LT(applied.pages_written, applied.committed_frames) << "no frame superseded";
  EXPECT_TRUE(std::string(reinterpret_cast<const char*>(image.data()), image.size()) ==
              applied_through_staged_files(source, dir));
  EXPECT_EQ(rows_in(std::move(image)), 10000);
}

// The first look lists the pages of committed frames, each once, page 1 never, and leaves out
// what a transaction still in progress has spilled into the WAL.
TEST(ApplyLiveWal, TheFirstLookListsThePagesOfCommittedFramesOnly) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, 4096);
  owner.insert(300, 900);
  owner.exec("UPDATE t SET v = randomblob(700) WHERE id % 3 = 0");
  const fs::path wal_path = source.string() + "-wal";
  const io::UniqueFd wal(::open(wal_path.c_str(), O_RDONLY | O_CLOEXEC));
  const auto committed = recover::committed_pages_of_live_wal(wal.get(), nullptr, source);
  ASSERT_TRUE(committed.has_value());
  EXPECT_EQ(committed->page_size, 4096U);
  ASSERT_FALSE(committed->pages.empty());
  EXPECT_GT(committed->pages.front(), 1U);
  EXPECT_TRUE(std::is_sorted(committed->pages.begin(), committed->pages.end()));
  EXPECT_EQ(std::adjacent_find(committed->pages.begin(), committed->pages.end()),
            committed->pages.end());

  // A transaction bigger than its page cache spills pages past the database's end into the
  // WAL before it commits: none of them is listed.
  owner.exec("PRAGMA cache_size=10; BEGIN");
  owner.insert(2000, 1000);
  const auto with_spill = recover::committed_pages_of_live_wal(wal.get(), nullptr, source);
  owner.exec("ROLLBACK");
  ASSERT_TRUE(with_spill.has_value());
  EXPECT_EQ(with_spill->pages, committed->pages);
  EXPECT_EQ(with_spill->wal_header, committed->wal_header);
}

// The image's first write comes after the WAL's frames were scanned: the owner's checkpoint
// cuts the WAL to nothing (wal_checkpoint(TRUNCATE)) right then. With `straight`, the image
// offers its bytes, and the frames are read straight into them (bytes_extended_to); without,
// they come through write_pages().
class CuttingImage final : public recover::DatabaseImage {
 public:
  CuttingImage(io::SqliteMemory& memory, fs::path wal, bool straight)
      : inner_(memory, wal), wal_(std::move(wal)), straight_(straight) {}
  std::byte* bytes_extended_to(std::uint64_t size) override {
    if (!straight_) return nullptr;
    cut();
    return inner_.bytes_extended_to(size);
  }
  std::uint64_t size() override { return inner_.size(); }
  std::size_t read(std::span<std::byte> buffer, std::uint64_t offset) override {
    return inner_.read(buffer, offset);
  }
  void write(std::span<const std::byte> bytes, std::uint64_t offset) override {
    inner_.write(bytes, offset);
  }
  void write_pages(std::uint32_t first_page, std::span<const std::byte* const> pages,
                   std::size_t page_size) override {
    cut();
    inner_.write_pages(first_page, pages, page_size);
  }
  void resize(std::uint64_t size) override { inner_.resize(size); }
  void finish() override {}

 private:
  void cut() {
    if (!cut_) {
      cut_ = true;
      EXPECT_EQ(::truncate(wal_.c_str(), 0), 0);
    }
  }

  recover::MemoryImage inner_;
  fs::path wal_;
  bool straight_;
  bool cut_ = false;
};

class ApplyLiveWalCut : public ::testing::TestWithParam<bool> {};

TEST_P(ApplyLiveWalCut, AWalCutWhileItIsReadEndsTheAttemptRatherThanTheBackup) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, 4096);
  owner.insert(1000, 3000);  // a WAL of several windows (1 MiB each)
  ASSERT_GT(fs::file_size(source.string() + "-wal"), std::uintmax_t{3} << 20);

  io::SqliteMemory image = read_whole(source);
  const io::UniqueFd wal(::open((source.string() + "-wal").c_str(), O_RDONLY | O_CLOEXEC));
  CuttingImage cutting(image, source.string() + "-wal", GetParam());
  recover::WalApplication applied;
  ASSERT_NO_THROW(applied = recover::apply_live_wal(cutting, wal.get(), nullptr, source));
  EXPECT_FALSE(applied.applied);
  EXPECT_NE(applied.why_not.find("cut"), std::string::npos) << applied.why_not;
  EXPECT_TRUE(applied.cut_while_read);
}

INSTANTIATE_TEST_SUITE_P(ThroughWritesOrStraight, ApplyLiveWalCut, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& param) {
                           return param.param ? "Straight" : "ThroughWritePages";
                         });

// Runs one memory attempt on `source`, calling `meanwhile` once, after the first chunk of the
// database was read (the read goes on after it).
std::optional<snapshot::MemoryCopy> attempt_with(const fs::path& source,
                                                 const std::function<void()>& meanwhile) {
  snapshot::Settings settings;
  bool called = false;
  settings.on_progress = [&](const CopyProgress& progress) {
    if (!called && progress.bytes_done > 0) {
      called = true;
      meanwhile();
    }
  };
  auto copy = snapshot::copy_live_wal_set_into_memory(discover::DatabaseFiles(source), settings);
  EXPECT_TRUE(called);
  return copy;
}

// A source of a few MiB, so that its database is read in several chunks.
void fill(const WalOwner& owner) {
  owner.insert(2000, 2000);
  owner.exec("PRAGMA wal_checkpoint(TRUNCATE)");  // most of it in the database file
  owner.insert(100, 2000);                        // and a live WAL
}

TEST(MemoryCopy, ACommitWhileTheDatabaseIsReadIsInTheSnapshot) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, 4096);
  fill(owner);
  auto copy = attempt_with(source, [&] { owner.insert(1, 100); });
  ASSERT_TRUE(copy.has_value());
  // (Its memory file's descriptor was closed on the thread that read it: see
  // io::SqliteMemory::close_memory_file.)
  EXPECT_EQ(copy->database.memory_file(), -1);
  EXPECT_EQ(rows_in(std::move(copy->database)), 2101);
}

// The owner checkpoints everything into the database file (which we are reading, half of it
// already read) and restarts the WAL, then commits again: the WAL we read next is a new
// generation without the pages our half-read database lacks. Accepting it would be a torn
// snapshot; the WAL header seen before the copy no longer matches.
TEST(MemoryCopy, AWalRestartedWhileTheDatabaseIsReadIsNotAccepted) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, 4096);
  fill(owner);
  owner.exec("UPDATE t SET v = randomblob(2000) WHERE id <= 100");  // pages in the first chunk
  const auto copy = attempt_with(source, [&] {
    owner.exec("PRAGMA wal_checkpoint(RESTART)");
    owner.insert(1, 100);
  });
  EXPECT_FALSE(copy.has_value());
}

// The WAL's application grows a heap image as a file grows (recover::MemoryImage): up to the
// bound on heap memory (2 MiB here), though a quarter more room would pass it, and not past
// it (io::ImageOutgrewHeapMemory, for the memory copy to decline).
TEST(MemoryImage, GrowsHeapMemoryUpToItsBoundAndNotPastIt) {
  constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;
  const SmallHeapImages heap_only(2 * kMiB);
  const fs::path source = "source.db";
  io::SqliteMemory memory;
  ASSERT_TRUE(memory.reserve_image(3 * kMiB / 2, source));
  memory.resize(3 * kMiB / 2, source);
  recover::MemoryImage image(memory, source);
  const std::vector<std::byte> page(4096, std::byte{0x5a});
  EXPECT_NO_THROW(image.write(page, 2 * kMiB - page.size()));
  EXPECT_EQ(image.size(), 2 * kMiB);
  EXPECT_LE(memory.capacity(), 2 * kMiB);
  EXPECT_THROW(image.write(page, 2 * kMiB), io::ImageOutgrewHeapMemory);
  EXPECT_EQ(image.size(), 2 * kMiB) << "the image is as it was";
}

// Where no memory file can be had, the image is heap memory, bounded (io::kLargestHeapImage,
// set here to the source's size at the first look): a database that grows past the bound
// while it is read (its owner checkpoints 4 MiB of new rows into it) is left to the path
// through files, which does not hold it in heap memory as it grows, and the snapshot of the
// whole pipeline still has every row.
TEST(MemoryCopy, ADatabaseGrowingPastTheHeapsBoundDuringTheReadIsLeftToTheFilePath) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, 4096);
  fill(owner);
  const std::uint64_t at_first_look =
      fs::file_size(source) + fs::file_size(source.string() + "-wal");
  const SmallHeapImages heap_only(at_first_look + 1);
  const DebugLog log;
  const auto grow = [&] {
    owner.insert(2000, 2000);
    owner.exec("PRAGMA wal_checkpoint(PASSIVE)");
  };
  const auto copy = attempt_with(source, grow);
  const std::string said = log.text();
  const auto grew = said.find("grew to at least");
  const bool declined_for_growth =
      grew != std::string::npos &&
      said.find("copying through files instead", grew) < said.find('\n', grew);

  // The whole pipeline, the source growing the same way during its first read.
  Options options;
  bool grown = false;
  options.on_progress = [&](const CopyProgress& progress) {
    if (!grown && progress.bytes_done > 0) {
      grown = true;
      grow();
    }
  };
  sqlite3* target = nullptr;
  sqlite3_open(":memory:", &target);
  EXPECT_NO_THROW(sqlite_backup_to_connection(source, target, options));

  EXPECT_FALSE(copy.has_value());
  EXPECT_TRUE(declined_for_growth) << said;
  EXPECT_TRUE(grown);
  EXPECT_EQ(count_rows(target), 6100);
  EXPECT_EQ(query_text(target, "PRAGMA integrity_check"), "ok");
  sqlite3_close(target);
}

}  // namespace
}  // namespace sqlite_backup::testing
