// The promise the "Many machines" recipes rest on: snapshots of a database nobody changed in
// between are byte-identical, to a file and to standard output, in both journal modes, whatever
// the owner's checkpoints did meanwhile and whichever checking options were given; and a
// snapshot after a small change differs from the one before only in the pages that change
// touched (plus page 1's header, whose change counter moves). Deduplicating backup tools
// (restic's content-defined chunks) then store an unchanged database once and a changed one
// mostly once. The real CLI binary writes every snapshot; the owner is a connection held open by
// this test (in WAL mode a live WAL, checkpoints off).
#include <sqlite3.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "cli_harness.hpp"

namespace cli_test {
namespace {

using sqlite_backup::testing::TempDir;

constexpr std::size_t kPage = 4096;

class Owner {
 public:
  Owner(const fs::path& database, const std::string& journal_mode) {
    if (sqlite3_open(database.c_str(), &db_) != SQLITE_OK) throw std::runtime_error("open");
    exec("PRAGMA page_size=4096; PRAGMA journal_mode=" + journal_mode +
         "; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);"
         "INSERT INTO t(v) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
         "LIMIT 2000) SELECT randomblob(300) FROM n;");
  }
  Owner(const Owner&) = delete;
  Owner& operator=(const Owner&) = delete;
  ~Owner() { sqlite3_close(db_); }
  void exec(const std::string& sql) const {
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
      throw std::runtime_error(sql + ": " + sqlite3_errmsg(db_));
    }
  }

 private:
  sqlite3* db_ = nullptr;
};

std::string snapshot_to_file(const fs::path& source, const fs::path& destination) {
  const Result result = run_cli({source.string(), destination.string()});
  EXPECT_EQ(result.exit_code, 0) << describe(result);
  return read_file(destination);
}

std::string snapshot_to_stdout(const fs::path& source) {
  const Result result = run_cli({source.string(), "-"});
  EXPECT_EQ(result.exit_code, 0) << describe(result);
  return result.out;
}

constexpr std::size_t kHeader = 100;  // page 1 begins with the database header

// The page numbers (1-based) where two images differ, and where only one of them has a page.
std::set<std::uint32_t> differing_pages(const std::string& a, const std::string& b) {
  std::set<std::uint32_t> pages;
  const std::size_t size = std::max(a.size(), b.size());
  for (std::size_t offset = 0; offset < size; offset += kPage) {
    const std::string page_a = offset < a.size() ? a.substr(offset, kPage) : std::string{};
    const std::string page_b = offset < b.size() ? b.substr(offset, kPage) : std::string{};
    if (page_a != page_b) pages.insert(static_cast<std::uint32_t>(offset / kPage + 1));
  }
  return pages;
}

// The offsets in page 1 at which two images differ.
std::set<std::size_t> differing_bytes_of_page_one(const std::string& a, const std::string& b) {
  std::set<std::size_t> offsets;
  for (std::size_t i = 0; i < kPage; ++i) {
    if (i >= a.size() || i >= b.size() || a[i] != b[i]) offsets.insert(i);
  }
  return offsets;
}

// The pages of the frames in a WAL from byte `from` on (a 24-byte header before each page).
std::set<std::uint32_t> pages_of_frames(const std::string& wal, std::size_t from) {
  std::set<std::uint32_t> pages;
  for (std::size_t offset = std::max<std::size_t>(from, 32); offset + 24 + kPage <= wal.size();
       offset += 24 + kPage) {
    const auto byte = [&](std::size_t i) {
      return static_cast<std::uint32_t>(static_cast<unsigned char>(wal[offset + i]));
    };
    pages.insert(byte(0) << 24 | byte(1) << 16 | byte(2) << 8 | byte(3));
  }
  return pages;
}

class Determinism : public ::testing::TestWithParam<std::string> {};

TEST_P(Determinism, AnUnchangedDatabaseGivesTheSameBytesToAFileAndToStdout) {
  const TempDir dir;
  const fs::path source = dir / "live.sqlite";
  const Owner owner(source, GetParam());
  const std::string first = snapshot_to_file(source, dir / "first.sqlite");
  ASSERT_FALSE(first.empty());
  EXPECT_TRUE(snapshot_to_file(source, dir / "second.sqlite") == first)
      << "pages that differ: "
      << ::testing::PrintToString(differing_pages(read_file(dir / "second.sqlite"), first));
  const std::string streamed = snapshot_to_stdout(source);
  EXPECT_TRUE(streamed == first) << "pages that differ: "
                                 << ::testing::PrintToString(differing_pages(streamed, first));
  EXPECT_TRUE(integrity_ok(dir / "first.sqlite"));
}

TEST_P(Determinism, ASmallChangeChangesOnlyThePagesItTouchedAndPageOnesHeader) {
  const TempDir dir;
  const fs::path source = dir / "live.sqlite";
  const Owner owner(source, GetParam());
  const std::string before = snapshot_to_file(source, dir / "before.sqlite");
  // What the change touches, read from the source's own files: the frames it appends to the
  // WAL, or (rollback mode) the pages of the database file that differ afterwards, page 1 only
  // when more than its header (the change counter) differs.
  const fs::path wal = source.string() + "-wal";
  const std::string wal_before = fs::exists(wal) ? read_file(wal) : std::string{};
  const std::string file_before = read_file(source);
  owner.exec("UPDATE t SET v = randomblob(300) WHERE id = 1234");
  std::set<std::uint32_t> touched;
  if (GetParam() == "WAL") {
    touched = pages_of_frames(read_file(wal), wal_before.size());
  } else {
    const std::string file_after = read_file(source);
    touched = differing_pages(file_before, file_after);
    const std::set<std::size_t> page_one = differing_bytes_of_page_one(file_before, file_after);
    // A set is ordered: its last offset is the highest that changed.
    if (page_one.empty() || *page_one.rbegin() < kHeader) touched.erase(1);
  }
  ASSERT_FALSE(touched.empty());

  const std::string after = snapshot_to_stdout(source);
  const std::set<std::uint32_t> changed = differing_pages(before, after);
  EXPECT_FALSE(changed.empty());
  for (const std::uint32_t page : changed) {
    EXPECT_TRUE(touched.count(page) == 1 || page == 1)
        << "page " << page << " changed, but the update touched only "
        << ::testing::PrintToString(touched);
  }
  if (touched.count(1) == 0) {
    for (const std::size_t offset : differing_bytes_of_page_one(before, after)) {
      EXPECT_LT(offset, kHeader) << "page 1 changed outside its header, at byte " << offset
                                 << ", but the update did not touch page 1";
    }
  }
  // Of a 2000-row database, a one-row update touches a handful of pages.
  EXPECT_LE(changed.size(), 4U) << ::testing::PrintToString(changed);
}

// Options that only check or wait (verification, the reader's lock, no fsync) or copy more
// carefully change no byte: a timer's run with --verify=quick and a run by hand store once.
TEST_P(Determinism, OptionsThatOnlyCheckChangeNoByte) {
  const TempDir dir;
  const fs::path source = dir / "live.sqlite";
  const Owner owner(source, GetParam());
  const std::string plain = snapshot_to_stdout(source);
  ASSERT_FALSE(plain.empty());
  for (const std::vector<std::string>& options :
       std::vector<std::vector<std::string>>{{"--verify=full"},
                                             {"--verify=quick"},
                                             {"--source-lock=always"},
                                             {"--no-sync"},
                                             {"--no-wal-checkpoint"},
                                             {"--copy-retry", "1"}}) {
    std::vector<std::string> arguments = options;
    arguments.push_back(source.string());
    arguments.push_back("-");
    const Result result = run_cli(arguments);
    ASSERT_EQ(result.exit_code, 0) << describe(result);
    EXPECT_TRUE(result.out == plain)
        << ::testing::PrintToString(options)
        << ": pages that differ: " << ::testing::PrintToString(differing_pages(result.out, plain));
  }
}

INSTANTIATE_TEST_SUITE_P(JournalModes, Determinism, ::testing::Values("WAL", "DELETE"));

// The owner's checkpoints move committed pages from its WAL into the database file and its
// close removes the WAL: the database's content stays, and so do the snapshot's bytes.
TEST(DeterminismWal, TheOwnersCheckpointsAndCloseChangeNoByte) {
  const TempDir dir;
  const fs::path source = dir / "live.sqlite";
  std::string first;
  {
    const Owner owner(source, "WAL");
    first = snapshot_to_stdout(source);
    ASSERT_FALSE(first.empty());
    ASSERT_GT(fs::file_size(source.string() + "-wal"), kPage) << "the rows are not in the WAL";
    for (const std::string mode : {"PASSIVE", "FULL", "RESTART", "TRUNCATE"}) {
      owner.exec("PRAGMA wal_checkpoint(" + mode + ")");
      const std::string again = snapshot_to_stdout(source);
      EXPECT_TRUE(again == first) << "after wal_checkpoint(" << mode << "), pages that differ: "
                                  << ::testing::PrintToString(differing_pages(again, first));
    }
  }
  ASSERT_FALSE(fs::exists(source.string() + "-wal")) << "the owner's close left its WAL";
  const std::string closed = snapshot_to_file(source, dir / "closed.sqlite");
  EXPECT_TRUE(closed == first) << "after the owner closed, pages that differ: "
                               << ::testing::PrintToString(differing_pages(closed, first));
}

}  // namespace
}  // namespace cli_test
