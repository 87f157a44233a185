// recover::write_looked_pages: the first look at a live WAL writes the pages it found into the
// database copy while the copy runs, each only once the copy has passed it, and the
// application after the copy then writes only what later frames changed. The result must be
// byte for byte the plain application's, with a real SQLite connection as the WAL's owner.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "discover/database_files.hpp"
#include "io/file.hpp"
#include "plain_application.hpp"
#include "recover/apply_wal.hpp"
#include "snapshot/copy_set.hpp"
#include "sqlite_backup/log.hpp"
#include "test_support.hpp"
#include "wal_owner.hpp"

namespace sqlite_backup::testing {
namespace {

constexpr int kPageSize = 4096;

// A source whose database file holds 1,200 rows (about 300 pages) and whose live WAL rewrites
// a third of them.
class WriteAhead : public ::testing::Test {
 protected:
  WriteAhead() : owner_(dir_ / "source.db", kPageSize) {
    owner_.insert(1200, 900);
    owner_.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    owner_.exec("UPDATE t SET v = randomblob(900) WHERE id % 3 = 0");
  }

  [[nodiscard]] fs::path source() const { return dir_ / "source.db"; }
  [[nodiscard]] fs::path wal_path() const { return source().string() + "-wal"; }

  // The database file copied as the snapshot copies it (before any WAL page goes in).
  fs::path copy_database(const std::string& name) const {
    const fs::path copy = dir_ / name;
    fs::copy_file(source(), copy);
    return copy;
  }

  // What the plain application (staged copies of both files, apply_wal()) gives now.
  std::string applied_plainly(const std::string& name) const {
    return plain_application_of(source(), dir_ / name);
  }

  recover::WalPages look(int wal_fd) const {
    auto pages = recover::committed_pages_of_live_wal(wal_fd, nullptr, source());
    EXPECT_TRUE(pages.has_value());
    return pages.value_or(recover::WalPages{});
  }

  // write_looked_pages() into `copy`, the copy counted as having passed `copied` bytes.
  static bool write_ahead(const recover::WalPages& pages, int wal_fd, const fs::path& copy,
                          std::uint64_t copied) {
    const io::UniqueFd database(::open(copy.c_str(), O_WRONLY | O_CLOEXEC));
    EXPECT_TRUE(database);
    return recover::write_looked_pages(
        pages, wal_fd, database.get(), [copied](std::uint64_t end) { return end <= copied; },
        nullptr, "source.db", copy);
  }

  TempDir dir_;
  WalOwner owner_;
};

TEST_F(WriteAhead, PagesWrittenAheadAndTheRestAfterGiveThePlainApplication) {
  const io::UniqueFd wal(::open(wal_path().c_str(), O_RDONLY | O_CLOEXEC));
  recover::WalPages pages = look(wal.get());
  ASSERT_FALSE(pages.pages.empty());
  const fs::path copy = copy_database("ahead.db");
  ASSERT_TRUE(write_ahead(pages, wal.get(), copy, UINT64_MAX));
  pages.written_through_frame = static_cast<std::uint32_t>(pages.page_of_frame.size());
  const recover::WalApplication applied =
      recover::apply_live_wal(copy, wal.get(), nullptr, source(), &pages);
  ASSERT_TRUE(applied.applied) << applied.why_not;
  EXPECT_TRUE(read_file(copy) == applied_plainly("plain.db"));
}

// The application skips the pages written ahead: a page spoiled after the write-ahead stays
// spoiled (it is not written twice), which is what makes the write-ahead save the work.
TEST_F(WriteAhead, TheApplicationDoesNotWriteAPageWrittenAheadAgain) {
  const io::UniqueFd wal(::open(wal_path().c_str(), O_RDONLY | O_CLOEXEC));
  recover::WalPages pages = look(wal.get());
  const fs::path copy = copy_database("ahead.db");
  ASSERT_TRUE(write_ahead(pages, wal.get(), copy, UINT64_MAX));
  pages.written_through_frame = static_cast<std::uint32_t>(pages.page_of_frame.size());
  const std::uint64_t spoiled = (std::uint64_t{pages.pages.back()} - 1) * kPageSize;
  {
    const io::UniqueFd database(::open(copy.c_str(), O_WRONLY | O_CLOEXEC));
    const std::string zeros(kPageSize, '\0');
    ASSERT_EQ(::pwrite(database.get(), zeros.data(), zeros.size(), static_cast<off_t>(spoiled)),
              kPageSize);
  }
  ASSERT_TRUE(recover::apply_live_wal(copy, wal.get(), nullptr, source(), &pages).applied);
  EXPECT_TRUE(read_file(copy).substr(spoiled, kPageSize) == std::string(kPageSize, '\0'));
}

// A commit after the look rewrites pages already written ahead: the application writes them
// again from the later frames (without the frame bound it would keep the look's version).
TEST_F(WriteAhead, PagesACommitAfterTheLookChangedAreWrittenFromTheirLaterFrames) {
  const io::UniqueFd wal(::open(wal_path().c_str(), O_RDONLY | O_CLOEXEC));
  recover::WalPages pages = look(wal.get());
  const fs::path copy = copy_database("ahead.db");
  ASSERT_TRUE(write_ahead(pages, wal.get(), copy, UINT64_MAX));
  pages.written_through_frame = static_cast<std::uint32_t>(pages.page_of_frame.size());
  owner_.exec("UPDATE t SET v = randomblob(900) WHERE id % 3 = 0");  // the same pages again
  const recover::WalApplication applied =
      recover::apply_live_wal(copy, wal.get(), nullptr, source(), &pages);
  ASSERT_TRUE(applied.applied) << applied.why_not;
  EXPECT_GT(applied.committed_frames, pages.page_of_frame.size());
  EXPECT_TRUE(read_file(copy) == applied_plainly("plain.db"));
}

// Nothing is written where the copy has not passed yet: the copy would overwrite it with the
// database's older page. Stopped there, the write-ahead says it did not finish.
// Pages the copy laid over its own bytes are left alone; every other listed page is written.
TEST_F(WriteAhead, LeavesOutThePagesTheCopyWroteItself) {
  const io::UniqueFd wal(::open(wal_path().c_str(), O_RDONLY | O_CLOEXEC));
  const recover::WalPages pages = look(wal.get());
  ASSERT_GT(pages.pages.size(), 4U);
  const fs::path copy = copy_database("copy.db");
  const std::string before = read_file(copy);
  const std::string plain = applied_plainly("plain.db");
  // Every second listed page counts as laid over by the copy.
  std::set<std::uint64_t> laid_over;
  for (std::size_t i = 0; i < pages.pages.size(); i += 2) {
    laid_over.insert((std::uint64_t{pages.pages[i]} - 1) * kPageSize);
  }
  {
    const io::UniqueFd database(::open(copy.c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(recover::write_looked_pages(
        pages, wal.get(), database.get(), [](std::uint64_t) { return true; }, nullptr, "source.db",
        copy, [&](std::uint64_t begin) { return laid_over.count(begin) != 0; }));
  }
  const std::string after = read_file(copy);
  for (std::size_t i = 0; i < pages.pages.size(); ++i) {
    const std::size_t at = (std::size_t{pages.pages[i]} - 1) * kPageSize;
    if (at + kPageSize > before.size()) continue;  // (past the database's end: SQLite's size)
    const std::string expected = (i % 2 == 0 ? before : plain).substr(at, kPageSize);
    EXPECT_TRUE(after.substr(at, kPageSize) == expected) << "page " << pages.pages[i];
  }
}

TEST_F(WriteAhead, NothingIsWrittenBeyondWhereTheCopyStands) {
  const io::UniqueFd wal(::open(wal_path().c_str(), O_RDONLY | O_CLOEXEC));
  const recover::WalPages pages = look(wal.get());
  ASSERT_GE(pages.pages.size(), 120U);
  const fs::path copy = copy_database("ahead.db");
  const std::string before = read_file(copy);
  // The copy stands just after the 100th page of the list: the first run of pages (64 at
  // most) is behind it, the second reaches past it.
  const std::uint64_t copied = std::uint64_t{pages.pages[100]} * kPageSize;
  EXPECT_FALSE(write_ahead(pages, wal.get(), copy, copied));
  const std::string after = read_file(copy);
  ASSERT_EQ(after.size(), before.size());
  EXPECT_TRUE(after.substr(copied) == before.substr(copied)) << "written past the copy";
  EXPECT_FALSE(after.substr(0, copied) == before.substr(0, copied)) << "nothing written before it";
}

// A database copy too short for the WAL's last commit (here: cut to half), which SQLite's
// checkpoint refuses as corrupt. Writing the WAL's last page ahead extends the copy to nearly
// the commit's size; the application must still judge by the size the copy ended at, or it
// would accept what SQLite refuses.
TEST(WriteAheadOfAShortCopy, LeavesAWalWhoseLastCommitCannotBeFilledToSqlite) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, kPageSize);
  owner.insert(1200, 900);
  owner.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  owner.exec("UPDATE t SET v = randomblob(900) WHERE id = (SELECT max(id) FROM t)");
  const io::UniqueFd wal(::open((source.string() + "-wal").c_str(), O_RDONLY | O_CLOEXEC));
  auto look = recover::committed_pages_of_live_wal(wal.get(), nullptr, source);
  ASSERT_TRUE(look.has_value());
  const std::uint64_t final_size = std::uint64_t{look->pages_after_commit} * kPageSize;
  ASSERT_GE(std::uint64_t{look->pages.back()} * kPageSize + 65536, final_size)
      << "the WAL's last page is to lie near the commit's end";
  const fs::path copy = dir / "copy.db";
  fs::copy_file(source, copy);
  fs::resize_file(copy, final_size / 2 / kPageSize * kPageSize);
  look->database_bytes_copied = fs::file_size(copy);
  {
    const io::UniqueFd database(::open(copy.c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(recover::write_looked_pages(
        *look, wal.get(), database.get(), [](std::uint64_t) { return true; }, nullptr, source,
        copy));
  }
  look->written_through_frame = static_cast<std::uint32_t>(look->page_of_frame.size());
  ASSERT_GT(fs::file_size(copy), final_size - 65536) << "the write-ahead extended the copy";
  const recover::WalApplication applied =
      recover::apply_live_wal(copy, wal.get(), nullptr, source, &*look);
  EXPECT_FALSE(applied.applied);
  EXPECT_NE(applied.why_not.find("cannot be filled"), std::string::npos) << applied.why_not;
}

// How the copy's writes go: directly (snapshot::Settings::direct_writes_from lowered to reach
// it at 11 MiB), through the page cache with early writeback (durable), or through the page
// cache alone (--no-sync). The pages are laid into the copy's chunks in the first two; the
// third leaves their ranges out for the first look to write.
enum class Writes { direct, durable, no_sync };

class LaidOverDuringTheCopy : public ::testing::TestWithParam<Writes> {
 protected:
  void SetUp() override {
    level_ = log_level();  // (before a skip: TearDown puts it back)
    if (GetParam() == Writes::direct && !direct_writes_possible(dir_.path())) {
      GTEST_SKIP() << "the filesystem of " << dir_.path() << " refuses O_DIRECT";
    }
    settings_.apply_live_wal = true;
    settings_.start_writeback = GetParam() != Writes::no_sync;
    if (GetParam() == Writes::direct) settings_.direct_writes_from = 0;
    // The copy names its method in a debug record: the pages can only have been laid by a
    // copy through the pipe.
    set_log_level(LogLevel::debug);
    set_log_sink([this](const LogRecord& record) {
      const std::lock_guard lock(mutex_);
      if (record.message.starts_with("copied ")) copies_.emplace_back(record.message);
    });
  }
  void TearDown() override {
    set_log_sink({});
    set_log_level(level_);
  }

  // Whether the database copy used the method that goes with the writes, as its debug record
  // says: through the pipe, where the pages are laid over; the kernel's own copy, leaving
  // their ranges out, for --no-sync.
  [[nodiscard]] bool database_copied_as_expected() {
    const std::lock_guard lock(mutex_);
    const char* method = GetParam() == Writes::direct    ? ", splice to direct writes)"
                         : GetParam() == Writes::durable ? ", splice)"
                                                         : ", copy_file_range)";
    for (const std::string& copy : copies_) {
      if (copy.find("source.db") != std::string::npos && copy.ends_with(method)) return true;
    }
    return false;
  }

  // The source: about 12 MiB (twelve copy chunks), a live WAL that rewrites a seventh of the
  // rows, and with `grow`, 3 MiB of new pages past the database file's end.
  [[nodiscard]] fs::path make_source(bool grow) {
    const fs::path source = dir_ / "source.db";
    owner_.emplace(source, kPageSize);
    owner_->insert(12000, 900);
    owner_->exec("PRAGMA wal_checkpoint(TRUNCATE)");
    owner_->exec("UPDATE t SET v = randomblob(900) WHERE id % 7 = 3");
    if (grow) owner_->insert(3000, 900);
    return source;
  }

  // A page the first look lists wholly within the copy's first chunk, where the copy never
  // lays pages, so the look writes it: where it is in the copy, and the WAL's latest version.
  struct PageOfTheFirstChunk {
    std::uint64_t at = 0;
    std::string wal_version;
  };
  static PageOfTheFirstChunk page_of_the_first_chunk(const recover::WalPages& look, int wal_fd) {
    const std::vector<std::uint64_t> offsets = recover::wal_offsets_of_looked_pages(look);
    PageOfTheFirstChunk found;
    for (std::size_t i = 0; i < look.pages.size(); ++i) {
      if (std::uint64_t{look.pages[i]} * kPageSize > kFirstChunk) continue;
      found.at = (std::uint64_t{look.pages[i]} - 1) * kPageSize;
      found.wal_version.assign(kPageSize, '\0');
      if (::pread(wal_fd, found.wal_version.data(), kPageSize, static_cast<off_t>(offsets[i])) !=
          kPageSize) {
        throw std::runtime_error("cannot read the WAL");
      }
    }
    return found;
  }

  // Called from the copy's progress callback: holds the copy until the staged copy holds the
  // page's WAL version (the look wrote it, so it has published its pages; the copy takes them
  // from its next chunk on). False after 10 s.
  static bool hold_until_written(const fs::path& staged, const PageOfTheFirstChunk& page) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < until) {
      std::string now(kPageSize, '\0');
      const io::UniqueFd copy(::open(staged.c_str(), O_RDONLY | O_CLOEXEC));
      if (copy &&
          ::pread(copy.get(), now.data(), kPageSize, static_cast<off_t>(page.at)) ==
              static_cast<ssize_t>(kPageSize) &&
          now == page.wal_version) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
  }

  // The plain application, as it is now: copies of the source's database and WAL, the WAL
  // applied by apply_wal().
  [[nodiscard]] std::string applied_plainly(const fs::path& source) const {
    return plain_application_of(source, dir_ / "plain.db");
  }

  // The first chunk of a copy through a pipe; a --no-sync copy (the kernel's, 4 MiB chunks)
  // reports first past it.
  static constexpr std::uint64_t kFirstChunk = std::uint64_t{1} << 20;
  TempDir dir_;
  snapshot::Settings settings_;

 private:
  LogLevel level_ = LogLevel::warning;
  std::mutex mutex_;
  std::vector<std::string> copies_;
  std::optional<WalOwner> owner_;
};

INSTANTIATE_TEST_SUITE_P(Writes, LaidOverDuringTheCopy,
                         ::testing::Values(Writes::direct, Writes::durable, Writes::no_sync),
                         [](const auto& test) {
                           return test.param == Writes::direct    ? std::string("Direct")
                                  : test.param == Writes::durable ? std::string("Durable")
                                                                  : std::string("NoSync");
                         });

// The copy holds still after its first chunk until the first look has written a page in it
// (so the look has found its pages and handed them to the copy). A durable copy then lays
// every later WAL page over its own chunks; a --no-sync one leaves them out and the look
// writes them. The result must be the plain application's bytes. Written directly, those
// later pages must have gone to the disk with the chunks, past the page cache: written apart
// (through the page cache) they would be thousands of small writes at the fsync.
TEST_P(LaidOverDuringTheCopy, GivesThePlainApplicationsBytesWithTheWalPagesInTheChunks) {
  const fs::path source = make_source(false);
  const io::UniqueFd wal(::open((source.string() + "-wal").c_str(), O_RDONLY | O_CLOEXEC));
  const auto look = recover::committed_pages_of_live_wal(wal.get(), nullptr, source);
  ASSERT_TRUE(look.has_value());
  const PageOfTheFirstChunk first = page_of_the_first_chunk(*look, wal.get());
  ASSERT_FALSE(first.wal_version.empty()) << "no listed page within the first chunk";

  const fs::path staged = dir_ / "staging" / "source.db";
  fs::create_directories(staged.parent_path());
  bool held = false;
  settings_.on_progress = [&](const CopyProgress& progress) {
    if (held || progress.bytes_done < kFirstChunk) return;
    held = true;
    if (!hold_until_written(staged, first)) ADD_FAILURE() << "the first look never wrote";
  };
  const snapshot::Outcome outcome =
      snapshot::copy_consistent_set(discover::DatabaseFiles(source), staged, settings_);
  ASSERT_TRUE(held) << "the copy was never held after its first chunk";
  ASSERT_TRUE(outcome.validated) << outcome.last_reason;
  EXPECT_TRUE(database_copied_as_expected());

  // (Before anything reads the copy whole.) Written directly, the pages past the first chunk
  // are not in the page cache: the copy laid them over its direct writes.
  const std::size_t size = fs::file_size(staged);
  const io::UniqueFd copy(::open(staged.c_str(), O_RDONLY | O_CLOEXEC));
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, copy.get(), 0);
  ASSERT_NE(map, MAP_FAILED);
  std::vector<unsigned char> resident((size + kPageSize - 1) / kPageSize);
  ASSERT_EQ(::mincore(map, size, resident.data()), 0);
  ::munmap(map, size);
  std::size_t later = 0;
  std::size_t later_cached = 0;
  for (const std::uint32_t page : look->pages) {
    const std::uint64_t at = (std::uint64_t{page} - 1) * kPageSize;
    if (at < 2 * kFirstChunk || at + kPageSize > size) continue;
    ++later;
    later_cached += resident[at / kPageSize] & 1U;
  }
  ASSERT_GT(later, 100U);
  if (GetParam() == Writes::direct) {
    EXPECT_EQ(later_cached, 0U) << "of " << later << " WAL pages past the first chunks";
  }

  EXPECT_TRUE(read_file(staged) == applied_plainly(source))
      << "the copy is not the plain application";
}

// A copy whose source file grows while it runs, with zeros where the WAL holds the new
// pages (an owner that extends its file in chunks, SQLITE_FCNTL_CHUNK_SIZE, does this). The
// look published no page from its database size on, so the copy passes those pages with the
// file's zeros: the write-ahead must still write them, and must not take them as laid over
// because the copy went past them. Without that, the snapshot holds zeros there.
TEST_P(LaidOverDuringTheCopy, LeavesNoPageOfAGrowthToTheCopy) {
  const fs::path source = make_source(true);
  const std::uint64_t file_size = fs::file_size(source);
  const io::UniqueFd wal(::open((source.string() + "-wal").c_str(), O_RDONLY | O_CLOEXEC));
  const auto look = recover::committed_pages_of_live_wal(wal.get(), nullptr, source);
  ASSERT_TRUE(look.has_value());
  const PageOfTheFirstChunk first = page_of_the_first_chunk(*look, wal.get());
  ASSERT_FALSE(first.wal_version.empty()) << "no listed page within the first chunk";
  std::uint64_t grown_size = file_size;  // the database's size at the WAL's last commit
  for (const std::uint32_t page : look->pages) {
    grown_size = std::max(grown_size, std::uint64_t{page} * kPageSize);
  }
  ASSERT_GT(grown_size, file_size + 2 * kFirstChunk) << "the WAL did not grow the database";

  const fs::path staged = dir_ / "staging" / "source.db";
  fs::create_directories(staged.parent_path());
  bool grown = false;
  settings_.on_progress = [&](const CopyProgress& progress) {
    if (grown || progress.bytes_done < kFirstChunk) return;
    grown = true;
    // The file grows once the look has published, before the copy's next chunk.
    if (!hold_until_written(staged, first)) ADD_FAILURE() << "the first look never wrote";
    fs::resize_file(source, grown_size);
  };
  const snapshot::Outcome outcome =
      snapshot::copy_consistent_set(discover::DatabaseFiles(source), staged, settings_);
  ASSERT_TRUE(grown) << "the copy was never held after its first chunk";
  ASSERT_TRUE(outcome.validated) << outcome.last_reason;
  EXPECT_TRUE(database_copied_as_expected());
  ASSERT_EQ(fs::file_size(source), grown_size);

  const std::string expected = applied_plainly(source);
  const std::string got = read_file(staged);
  ASSERT_EQ(got.size(), expected.size());
  std::size_t zero_pages = 0;  // of the growth, in the copy
  for (std::uint64_t at = file_size; at < grown_size; at += kPageSize) {
    zero_pages += got.compare(at, kPageSize, std::string(kPageSize, '\0')) == 0 ? 1 : 0;
  }
  EXPECT_EQ(zero_pages, 0U) << "pages of the growth the copy holds as the file's zeros";
  EXPECT_TRUE(got == expected) << "the copy is not the plain application";
}

}  // namespace
}  // namespace sqlite_backup::testing

namespace sqlite_backup::testing {
namespace {

// The same through the snapshot's own threads: the copy of a 12 MiB database is held after
// its first 1 MiB chunk, from the progress callback on the copying thread, until the first
// look has written the last run of WAL pages that lies wholly within that chunk (the copy
// never lays pages into its first chunk, so the look writes them). A look that wrote past
// the copy would meanwhile write pages the copy then overwrites with the database's older
// ones; the copy would no longer be the plain application's bytes.
TEST(WriteAheadDuringTheCopy, FollowsTheCopyAndGivesThePlainApplicationsBytes) {
  TempDir dir;
  const fs::path source = dir / "source.db";
  WalOwner owner(source, kPageSize);
  owner.insert(12000, 900);
  owner.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  owner.exec("UPDATE t SET v = randomblob(900) WHERE id % 7 = 3");
  const fs::path wal_path = source.string() + "-wal";
  constexpr std::uint64_t kFirstChunk = std::uint64_t{1} << 20;  // a copy through a pipe
  ASSERT_GT(fs::file_size(source), 2 * kFirstChunk);

  // The last page of the last run (as write_looked_pages forms runs: consecutive pages, 64
  // at most) that ends within the first chunk, and the WAL's latest version of it.
  const io::UniqueFd wal(::open(wal_path.c_str(), O_RDONLY | O_CLOEXEC));
  const auto look = recover::committed_pages_of_live_wal(wal.get(), nullptr, source);
  ASSERT_TRUE(look.has_value());
  std::uint32_t last_in_chunk = 0;
  for (std::size_t next = 0; next < look->pages.size();) {
    std::size_t count = 1;
    while (next + count < look->pages.size() && count < 64 &&
           look->pages[next + count] == look->pages[next] + count) {
      ++count;
    }
    const std::uint32_t last = look->pages[next + count - 1];
    if (std::uint64_t{last} * kPageSize > kFirstChunk) break;
    last_in_chunk = last;
    next += count;
  }
  ASSERT_GT(last_in_chunk, 0U);
  std::uint64_t frame = 0;
  for (std::size_t i = 0; i < look->page_of_frame.size(); ++i) {
    if (look->page_of_frame[i] == last_in_chunk) frame = i + 1;
  }
  std::string wal_version(kPageSize, '\0');
  ASSERT_EQ(::pread(wal.get(), wal_version.data(), kPageSize,
                    static_cast<off_t>(32 + (frame - 1) * (24 + kPageSize) + 24)),
            kPageSize);

  const fs::path staged = dir / "staging" / "source.db";
  fs::create_directories(staged.parent_path());
  snapshot::Settings settings;
  settings.apply_live_wal = true;
  bool held = false;
  settings.on_progress = [&](const CopyProgress& progress) {
    if (held || progress.bytes_done < kFirstChunk) return;
    held = true;
    // Polls the staged copy until the look has written that page (10 s at most: a look that
    // never gets there fails the test below).
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < until) {
      const std::string now = read_file(staged).substr(
          static_cast<std::size_t>((last_in_chunk - 1) * std::uint64_t{kPageSize}), kPageSize);
      if (now == wal_version) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ADD_FAILURE() << "the first look never wrote page " << last_in_chunk;
  };
  const snapshot::Outcome outcome =
      snapshot::copy_consistent_set(discover::DatabaseFiles(source), staged, settings);
  ASSERT_TRUE(held) << "the copy was never held after its first chunk";
  ASSERT_TRUE(outcome.validated) << outcome.last_reason;

  EXPECT_TRUE(read_file(staged) == plain_application_of(source, dir / "plain.db"))
      << "the copy is not the plain application";
}

}  // namespace
}  // namespace sqlite_backup::testing
