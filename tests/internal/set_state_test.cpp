// validate::judge() and its markers on hand-made states: what counts as a hot journal, and
// that each reason it gives is true of the states it was given.
#include "validate/set_state.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace sqlite_backup::validate {
namespace {

constexpr std::array<unsigned char, 8> kMagic = {0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7};

void put_be32(MemberState& member, std::size_t offset, std::uint32_t value) {
  for (std::size_t i = 0; i < 4; ++i) {
    member.header[offset + i] = static_cast<std::byte>(value >> (24 - 8 * i));
  }
}

// A journal header as SQLite writes it: magic, record count, nonce, original page count,
// sector size, page size.
MemberState journal_header(std::uint32_t nonce, std::uint32_t original_pages,
                           std::uint32_t sector_size, std::uint32_t page_size) {
  MemberState journal;
  journal.exists = true;
  journal.header_bytes = kJournalHeaderSize;
  std::memcpy(journal.header.data(), kMagic.data(), kMagic.size());
  put_be32(journal, 8, 1);
  put_be32(journal, 12, nonce);
  put_be32(journal, 16, original_pages);
  put_be32(journal, 20, sector_size);
  put_be32(journal, 24, page_size);
  return journal;
}

MemberState database_header(std::uint32_t change_counter) {
  MemberState database;
  database.exists = true;
  database.header_bytes = kDatabaseHeaderSize;
  put_be32(database, 24, change_counter);
  return database;
}

TEST(JournalIsHot, OnlyWithAHeaderSqliteWouldPlayBack) {
  EXPECT_TRUE(journal_is_hot(journal_header(7, 10, 512, 4096)));
  EXPECT_TRUE(journal_is_hot(journal_header(7, 10, 65536, 65536)));
  // The magic followed by noise: SQLite stops at such a header and plays nothing back.
  EXPECT_FALSE(journal_is_hot(journal_header(0x8bd3a1f2, 0xd2c4e0a7, 0x3ae1c07b, 0x9c0d44e1)));
  EXPECT_FALSE(journal_is_hot(journal_header(7, 10, 512, 4095)));     // page size not a power of 2
  EXPECT_FALSE(journal_is_hot(journal_header(7, 10, 512, 256)));      // page size too small
  EXPECT_FALSE(journal_is_hot(journal_header(7, 10, 512, 131072)));   // page size too large
  EXPECT_FALSE(journal_is_hot(journal_header(7, 10, 16, 4096)));      // sector size too small
  EXPECT_FALSE(journal_is_hot(journal_header(7, 10, 131072, 4096)));  // sector size too large
  EXPECT_FALSE(journal_is_hot(journal_header(7, 10, 500, 4096)));  // sector size not a power of 2
}

// record_look(): the looks between chunks decide when a commit's journal is worth copying,
// and keep the evidence judge() uses.
TEST(RecordLook, AsksForAJournalOnlyWhenANewCommitIsUnderWay) {
  DuringCopy during;
  const MemberState no_journal;
  // The first look: no commit under way, nothing to copy, the counter noted.
  EXPECT_FALSE(record_look(during, database_header(5), no_journal));
  EXPECT_EQ(during.counter_seen, std::optional<std::uint32_t>(5));
  // Unmoved counter: nothing new, even with a hot journal (its commit has not begun writing).
  EXPECT_FALSE(record_look(during, database_header(5), journal_header(7, 10, 512, 4096)));
  ASSERT_EQ(during.hot_journals.size(), 1U);  // but the hot journal is noted
  // The counter moved and a journal is hot: copy it.
  const MemberState t7 = journal_header(7, 10, 512, 4096);
  EXPECT_TRUE(record_look(during, database_header(6), t7));
  during.commits.push_back(CommitJournal{"staged-journal.1", t7, 5});
  // The same transaction again (counter moved on within it): already captured.
  EXPECT_FALSE(record_look(during, database_header(7), t7));
  // The next transaction: copy its journal too.
  EXPECT_TRUE(record_look(during, database_header(8), journal_header(8, 10, 512, 4096)));
  EXPECT_EQ(during.hot_journals.size(), 2U);
  EXPECT_FALSE(during.counter_went_back);
}

TEST(RecordLook, NotesACounterThatWentBack) {
  DuringCopy during;
  EXPECT_FALSE(record_look(during, database_header(9), MemberState{}));
  EXPECT_FALSE(record_look(during, database_header(4), MemberState{}));
  EXPECT_TRUE(during.counter_went_back);
}

// A writer in the default locking mode holds EXCLUSIVE only around each commit; the two looks
// can each land in one (journal hot at the first, not yet hot at the second). The reason
// must not claim the owner keeps the lock between transactions: nothing seen says so.
TEST(Judge, ExclusiveLockAtBothLooksIsNotCalledExclusiveLockingMode) {
  SetState before;
  before.database = database_header(41);
  before.journal = journal_header(7, 10, 512, 4096);
  before.exclusive_lock_held = true;
  SetState after = before;
  after.journal = journal_header(7, 10, 512, 4096);
  after.journal.header[0] = std::byte{0};  // the next commit's journal, not synced yet
  DuringCopy during;
  during.staged_database_bytes = 10 * 4096;
  const Verdict verdict = judge(before, after, CopiedSet{{}, before.journal, false}, during);
  ASSERT_FALSE(verdict.consistent);
  EXPECT_EQ(verdict.reason.find("holds an exclusive lock between transactions"), std::string::npos)
      << verdict.reason;
  EXPECT_NE(verdict.reason.find("with no hot journal at a look"), std::string::npos)
      << verdict.reason;
  EXPECT_NE(verdict.reason.find("a commit starting or ending"), std::string::npos)
      << verdict.reason;
}

// A quiet rollback-mode copy (no journal, the same counter at both looks): judge asks for the
// content comparison, and decides on its result.
TEST(Judge, AQuietCopyIsDecidedByTheContentComparison) {
  SetState before;
  before.database = database_header(41);
  const SetState after = before;
  DuringCopy during;
  during.staged_database_bytes = 10 * 4096;

  Verdict verdict = judge(before, after, {}, during);
  EXPECT_TRUE(verdict.consistent);
  EXPECT_EQ(verdict.need, Need::content_comparison);

  during.comparison = Comparison::equal;
  verdict = judge(before, after, {}, during);
  EXPECT_TRUE(verdict.consistent);
  EXPECT_EQ(verdict.need, Need::nothing_more);

  during.comparison = Comparison::differs;
  verdict = judge(before, after, {}, during);
  EXPECT_FALSE(verdict.consistent);
  EXPECT_NE(verdict.reason.find("contents differ"), std::string::npos) << verdict.reason;

  during.comparison = Comparison::source_gone;
  verdict = judge(before, after, {}, during);
  EXPECT_FALSE(verdict.consistent);
  EXPECT_NE(verdict.reason.find("deleted"), std::string::npos) << verdict.reason;
}

// A commit with no journal on disk (journal_mode=OFF or MEMORY) shows only in SQLite's
// EXCLUSIVE lock: a quiet copy that saw it is thrown away before any comparison, even beside
// a -journal file (a stale one); held by a process that has the journal open (an owner in
// exclusive locking mode that journals), or beside a WAL, the lock alone does not spoil it.
TEST(Judge, AQuietCopyWhileAnOwnerWithoutAJournalHoldsTheLockIsThrownAway) {
  SetState before;
  before.database = database_header(41);
  before.exclusive_lock_held = true;
  const SetState after = before;
  DuringCopy during;
  during.staged_database_bytes = 10 * 4096;
  Verdict verdict = judge(before, after, {}, during);
  EXPECT_FALSE(verdict.consistent);
  EXPECT_NE(verdict.reason.find("without the -journal open"), std::string::npos) << verdict.reason;

  SetState stale_journal = before;
  stale_journal.journal.exists = true;  // left by another connection: nobody has it open
  verdict = judge(stale_journal, stale_journal, {}, during);
  EXPECT_FALSE(verdict.consistent);
  EXPECT_NE(verdict.reason.find("without the -journal open"), std::string::npos) << verdict.reason;

  SetState journaling_owner = stale_journal;
  journaling_owner.journal_open_by_lock_holder = true;  // PERSIST's zeroed journal, say
  verdict = judge(journaling_owner, journaling_owner, {}, during);
  EXPECT_TRUE(verdict.consistent);
  EXPECT_EQ(verdict.need, Need::content_comparison);
}

// Commits seen during the copy, each journal copied in its commit phase: a chain of them is
// rolled back through only when they follow one another with no page free between them and
// no shrinking.
TEST(Judge, CommitsDuringTheCopyMustFormAChainWithNoFreePageBetween) {
  SetState before;
  before.database = database_header(5);
  SetState after = before;
  after.database = database_header(8);
  DuringCopy during;
  during.staged_database_bytes = 12 * 4096;
  during.commits = {CommitJournal{"j.1", journal_header(7, 10, 512, 4096), 5, 4},
                    CommitJournal{"j.2", journal_header(8, 10, 512, 4096), 6, 0},
                    CommitJournal{"j.3", journal_header(9, 12, 512, 4096), 7, 0}};
  // The kernel's record, begun in the first commit's commit: it finishes writing the
  // database and ends its journal; each later one journals, writes the database, ends.
  during.writes.start();
  during.writes.database_written();
  during.writes.journal_written();
  for (int commit = 1; commit < 3; ++commit) {
    during.writes.journal_written();
    during.writes.database_written();
    during.writes.database_written();
    during.writes.journal_written();
  }
  // (Pages free before the first commit do not matter: their content was no data.)
  EXPECT_TRUE(judge(before, after, {}, during).consistent);

  DuringCopy freed = during;
  freed.commits[2].original_freelist_pages = 2;
  Verdict verdict = judge(before, after, {}, freed);
  EXPECT_FALSE(verdict.consistent);
  EXPECT_NE(verdict.reason.find("2 page(s) were free between two commits"), std::string::npos)
      << verdict.reason;

  DuringCopy gap = during;
  gap.commits[2].original_counter = 8;
  after.database = database_header(9);
  verdict = judge(before, after, {}, gap);
  EXPECT_FALSE(verdict.consistent);
  EXPECT_NE(verdict.reason.find("was missed"), std::string::npos) << verdict.reason;
  after.database = database_header(8);

  DuringCopy shrank = during;
  shrank.commits[2].header = journal_header(9, 9, 512, 4096);
  verdict = judge(before, after, {}, shrank);
  EXPECT_FALSE(verdict.consistent);
  EXPECT_NE(verdict.reason.find("shrank"), std::string::npos) << verdict.reason;

  // A hot journal seen between chunks must be one of the chain's.
  DuringCopy stranger = during;
  stranger.hot_journals.push_back({});
  verdict = judge(before, after, {}, stranger);
  EXPECT_FALSE(verdict.consistent);
  EXPECT_NE(verdict.reason.find("another transaction"), std::string::npos) << verdict.reason;

  // One more burst of database writes after the last commit ended its journal: a commit that
  // moved no counter (locking_mode=EXCLUSIVE).
  DuringCopy uncounted = during;
  uncounted.writes.database_written();
  verdict = judge(before, after, {}, uncounted);
  EXPECT_FALSE(verdict.consistent);
  EXPECT_NE(verdict.reason.find("3 bursts"), std::string::npos) << verdict.reason;

  // The first commit may have written everything before the record began: it leaves no
  // burst, and the uncounted commit's is still one too many.
  DuringCopy done_writing = during;
  done_writing.writes = {};
  done_writing.writes.start();
  done_writing.writes.journal_written();  // the first commit ends its journal
  for (int commit = 1; commit < 3; ++commit) {
    done_writing.writes.journal_written();
    done_writing.writes.database_written();
    done_writing.writes.journal_written();
  }
  EXPECT_TRUE(judge(before, after, {}, done_writing).consistent);
  done_writing.writes.journal_written();  // an uncounted commit
  done_writing.writes.database_written();
  EXPECT_FALSE(judge(before, after, {}, done_writing).consistent);

  // Without the kernel's record, an uncounted commit cannot be ruled out.
  DuringCopy unwatched = during;
  unwatched.writes = {};
  verdict = judge(before, after, {}, unwatched);
  EXPECT_FALSE(verdict.consistent);
  EXPECT_NE(verdict.reason.find("inotify"), std::string::npos) << verdict.reason;
  DuringCopy overflowed = during;
  overflowed.writes.lost_some();
  EXPECT_FALSE(judge(before, after, {}, overflowed).consistent);
}

// Bursts of database writes, each after journal activity; writes before any journal activity
// finish the commit in progress when the record began, and are not counted.
TEST(WriteHistory, CountsDatabaseBurstsAfterJournalActivity) {
  WriteHistory history;
  EXPECT_FALSE(history.complete());
  history.start();
  EXPECT_TRUE(history.complete());
  history.database_written();  // the commit in progress when the record began
  history.database_written();
  EXPECT_EQ(history.bursts_after_journal(), 0);
  history.journal_written();  // its journal ends...
  history.journal_written();  // ...the next one journals
  EXPECT_EQ(history.bursts_after_journal(), 0);
  history.database_written();
  history.database_written();
  EXPECT_EQ(history.bursts_after_journal(), 1);
  history.journal_written();
  history.database_written();
  EXPECT_EQ(history.bursts_after_journal(), 2);
  // A commit still in its commit at the last look, its database writes not in the record
  // yet (their events come once each write returned): counted now, and only once.
  history.journal_written();
  history.count_burst_in_flight();
  EXPECT_EQ(history.bursts_after_journal(), 3);
  history.database_written();  // its event, late
  EXPECT_EQ(history.bursts_after_journal(), 3);
  // One whose writes the record already shows is not counted twice.
  history.count_burst_in_flight();
  EXPECT_EQ(history.bursts_after_journal(), 3);
  history.lost_some();
  EXPECT_FALSE(history.complete());
}

// Uncounted commits (locking_mode=EXCLUSIVE, the counter unmoved), each journal copied once
// synced: the record of writes from before the first look must show at most one burst per
// commit seen (one fewer when the first was hot at the first look), and after the last one
// no transaction may have begun.
TEST(Judge, UncountedCommitsAreCountedByTheRecordFromTheFirstLook) {
  SetState before;
  before.database = database_header(5);
  before.exclusive_lock_held = true;
  before.journal_open_by_lock_holder = true;
  before.journal.exists = true;
  before.journal.header_bytes = kJournalHeaderSize;  // zeroed between transactions
  before.journal.stat.size = 4096;
  SetState after = before;
  DuringCopy during;
  during.staged_database_bytes = 10 * 4096;
  CommitJournal first{"j.1", journal_header(7, 10, 512, 4096), 5};
  first.uncounted = true;
  CommitJournal second{"j.2", journal_header(8, 10, 512, 4096), 5};
  second.uncounted = true;
  during.commits = {first, second};
  during.hot_journals = {};
  during.writes.start_before_first_look(true);
  for (int commit = 0; commit < 2; ++commit) {
    during.writes.journal_written();
    during.writes.database_written();
    during.writes.journal_written();
  }
  EXPECT_TRUE(judge(before, after, {}, during).consistent);

  // Writes before any journal activity, no journal hot at the first look: a transaction that
  // keeps no journal (journal_mode=OFF for a while), counted (helper-31).
  DuringCopy unjournaled = during;
  unjournaled.writes = {};
  unjournaled.writes.start_before_first_look(true);
  unjournaled.writes.database_written();
  for (int commit = 0; commit < 2; ++commit) {
    unjournaled.writes.journal_written();
    unjournaled.writes.database_written();
    unjournaled.writes.journal_written();
  }
  Verdict verdict = judge(before, after, {}, unjournaled);
  EXPECT_FALSE(verdict.consistent);
  EXPECT_NE(verdict.reason.find("3 bursts"), std::string::npos) << verdict.reason;

  // The lock's holder without its journal open at the last look: it may be writing unjournaled.
  SetState closed = after;
  closed.journal_open_by_lock_holder = false;
  verdict = judge(before, closed, {}, during);
  EXPECT_FALSE(verdict.consistent);
  EXPECT_NE(verdict.reason.find("without the -journal open at the last look"), std::string::npos)
      << verdict.reason;

  DuringCopy third = during;  // a commit no look saw
  third.writes.database_written();
  third.writes.journal_written();
  verdict = judge(before, after, {}, third);
  EXPECT_FALSE(verdict.consistent);
  EXPECT_NE(verdict.reason.find("3 bursts"), std::string::npos) << verdict.reason;

  // The first one hot at the first look: its own burst may be in the record (begun after the
  // record), so the two bursts here may be it and an unseen one.
  SetState hot_before = before;
  hot_before.journal = first.header;
  verdict = judge(hot_before, after, {}, during);
  EXPECT_FALSE(verdict.consistent);
  DuringCopy hot_first = during;
  hot_first.writes = {};
  hot_first.writes.start_before_first_look(false);
  hot_first.writes.database_written();  // the first one's writes, before any journal activity
  hot_first.writes.journal_written();
  hot_first.writes.journal_written();
  hot_first.writes.database_written();
  hot_first.writes.journal_written();
  EXPECT_TRUE(judge(hot_before, after, {}, hot_first).consistent);

  // A transaction begun after the last one seen: journaling only, it has not written the
  // database; hot, it may have.
  SetState begun = after;
  begun.journal.header[12] = std::byte{1};
  EXPECT_TRUE(judge(before, begun, {}, during).consistent);
  begun.journal = journal_header(9, 10, 512, 4096);
  verdict = judge(before, begun, {}, during);
  EXPECT_FALSE(verdict.consistent);
  EXPECT_NE(verdict.reason.find("began after the last commit"), std::string::npos)
      << verdict.reason;

  // A record begun only at the first commit seen cannot rule out a commit before it.
  DuringCopy late_record = during;
  late_record.writes = {};
  late_record.writes.start();
  verdict = judge(before, after, {}, late_record);
  EXPECT_FALSE(verdict.consistent);
  EXPECT_NE(verdict.reason.find("from the first look"), std::string::npos) << verdict.reason;

  // The counter moved: a commit no look saw wrote page 1.
  SetState counted = after;
  counted.database = database_header(6);
  verdict = judge(before, counted, {}, during);
  EXPECT_FALSE(verdict.consistent);
  EXPECT_NE(verdict.reason.find("another commit after the ones seen"), std::string::npos)
      << verdict.reason;

  // A counted commit among them (caught in its commit, page 1 in its journal): it moves the
  // counter by one, and no page may be free when it begins.
  DuringCopy mixed = during;
  mixed.commits[1].uncounted = false;
  EXPECT_TRUE(judge(before, counted, {}, mixed).consistent);
  mixed.commits[1].original_freelist_pages = 2;
  verdict = judge(before, counted, {}, mixed);
  EXPECT_FALSE(verdict.consistent);
  EXPECT_NE(verdict.reason.find("2 page(s) were free"), std::string::npos) << verdict.reason;
  // ... and an uncounted one after it finds the counter it left.
  DuringCopy after_counted = during;
  after_counted.commits[0].uncounted = false;
  after_counted.commits[1].original_counter = 5;
  verdict = judge(before, counted, {}, after_counted);
  EXPECT_FALSE(verdict.consistent);
  EXPECT_NE(verdict.reason.find("was missed"), std::string::npos) << verdict.reason;
  after_counted.commits[1].original_counter = 6;
  EXPECT_TRUE(judge(before, counted, {}, after_counted).consistent);
}

TEST(JournalSynced, OnlyWithARecordCountWrittenAtTheSync) {
  MemberState journal = journal_header(7, 10, 512, 4096);  // record count 1
  EXPECT_TRUE(journal_synced(journal));
  put_be32(journal, 8, 0xffffffff);  // written at the start by an owner that does not sync
  EXPECT_FALSE(journal_synced(journal));
  put_be32(journal, 8, 0);
  EXPECT_FALSE(journal_synced(journal));
}

// ---- Early journals (EarlyJournal): a journal file as SQLite writes one, on disk ----------

constexpr std::uint32_t kPageSize = 1024;
constexpr std::uint32_t kSector = 512;
constexpr std::uint32_t kNonce = 0x5eed;
constexpr std::uint32_t kCounter = 41;  // page 1's change counter when T began

void put_be32(std::vector<unsigned char>& bytes, std::size_t offset, std::uint32_t value) {
  for (std::size_t i = 0; i < 4; ++i) {
    bytes[offset + i] = static_cast<unsigned char>(value >> (24 - 8 * i));
  }
}

// One synced segment at `offset`: its header (padded to the sector), then a record for each of
// `pages` (page number, page, checksum: the nonce plus every 200th byte from the end). Page 1's
// record holds the change counter kCounter (and its version-valid-for number), a page count of
// 10 and no free page.
void put_segment(std::vector<unsigned char>& journal, std::size_t offset,
                 const std::vector<std::uint32_t>& pages) {
  const std::size_t end = offset + kSector + pages.size() * (kPageSize + 8);
  if (journal.size() < end) journal.resize(end);
  std::memcpy(journal.data() + offset, kMagic.data(), kMagic.size());
  put_be32(journal, offset + 8, static_cast<std::uint32_t>(pages.size()));
  put_be32(journal, offset + 12, kNonce);
  put_be32(journal, offset + 16, 10);
  put_be32(journal, offset + 20, kSector);
  put_be32(journal, offset + 24, kPageSize);
  std::size_t at = offset + kSector;
  for (const std::uint32_t page : pages) {
    put_be32(journal, at, page);
    std::vector<unsigned char> bytes(kPageSize, static_cast<unsigned char>(page));
    if (page == 1) {
      bytes.assign(kPageSize, 0);
      put_be32(bytes, 24, kCounter);
      put_be32(bytes, 28, 10);
      put_be32(bytes, 92, kCounter);
    }
    std::memcpy(journal.data() + at + 4, bytes.data(), bytes.size());
    std::uint32_t sum = kNonce;
    for (std::size_t i = kPageSize - 200; i > 0 && i < kPageSize; i -= 200) sum += bytes[i];
    put_be32(journal, at + 4 + kPageSize, sum);
    at += kPageSize + 8;
  }
}

void write_file(const std::filesystem::path& path, const std::vector<unsigned char>& bytes) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr) << path;
  ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), file), bytes.size());
  ASSERT_EQ(std::fclose(file), 0);
}

class EarlyJournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = std::filesystem::temp_directory_path() /
              ("sqlite_backup_early_" + std::to_string(::getpid()));
    std::filesystem::remove_all(folder_);
    std::filesystem::create_directories(folder_);
    // T's journal when a look found it synced: pages 1, 2 and 3 in one segment, followed by
    // what an earlier, longer transaction left in the file (PERSIST, exclusive locking).
    journal_.assign(8192, 0xee);
    put_segment(journal_, 0, {1, 2, 3});
    write_file(source_, journal_);
    at_look_ = capture_member(source_, kJournalHeaderSize);
    std::filesystem::copy_file(source_, folder_ / "copy");
    early_.reset();
    ASSERT_FALSE(synced_commit_journal(at_look_, kCounter, folder_ / "copy", &early_))
        << "T has not written page 1: not a commit yet";
    ASSERT_TRUE(early_.has_value()) << "kept as T's early journal";
  }
  void TearDown() override { std::filesystem::remove_all(folder_); }

  // confirm_early_journal() at a look that found page 1 written (the counter one more) and
  // T's header as it was.
  std::optional<CommitJournal> confirm() {
    return confirm_early_journal(*early_, source_, database_header(kCounter + 1),
                                 capture_member(source_, kJournalHeaderSize), folder_ / "commit");
  }

  std::filesystem::path folder_;
  std::filesystem::path source_ = std::filesystem::temp_directory_path() /
                                  ("sqlite_backup_early_" + std::to_string(::getpid())) /
                                  "live.sqlite-journal";
  std::vector<unsigned char> journal_;
  MemberState at_look_;
  std::optional<EarlyJournal> early_;
};

TEST_F(EarlyJournalTest, IsTakenAtTheCommitWhenNothingWasWrittenSince) {
  const std::optional<CommitJournal> commit = confirm();
  ASSERT_TRUE(commit.has_value());
  EXPECT_EQ(commit->original_counter, kCounter);
  EXPECT_FALSE(commit->uncounted);
  EXPECT_EQ(commit->pages_written, (std::vector<std::uint32_t>{1, 2, 3}));
  EXPECT_TRUE(std::filesystem::exists(folder_ / "commit")) << "the copy, moved";
}

TEST_F(EarlyJournalTest, IsNotTakenBeforePageOneIsWritten) {
  EXPECT_FALSE(confirm_early_journal(*early_, source_, database_header(kCounter),
                                     capture_member(source_, kJournalHeaderSize),
                                     folder_ / "commit"));
}

TEST_F(EarlyJournalTest, IsNotTakenOnceTheTransactionEnded) {
  std::fill_n(journal_.begin(), kJournalHeaderSize, 0);  // zeroed, as PERSIST ends one
  write_file(source_, journal_);
  EXPECT_FALSE(confirm());
}

TEST_F(EarlyJournalTest, IsNotTakenWhenASegmentFollowedIt) {
  // T spilled, journaled page 4 in a new segment at the next sector, and synced it.
  put_segment(journal_, 4096, {4});
  journal_.resize(8192);
  write_file(source_, journal_);
  EXPECT_FALSE(confirm());
}

TEST_F(EarlyJournalTest, IsNotTakenWhenSomethingFollowedItsLastRecord) {
  // A super-journal's name goes right after the last record (no full sync).
  const std::size_t records_end = kSector + 3 * (kPageSize + 8);
  put_be32(journal_, records_end, 0x40000000 / kPageSize + 1);
  write_file(source_, journal_);
  EXPECT_FALSE(confirm());
}

TEST_F(EarlyJournalTest, IsNotTakenWhenTheFileGrew) {
  journal_.resize(journal_.size() + kPageSize, 0xee);
  write_file(source_, journal_);
  EXPECT_FALSE(confirm());
}

TEST_F(EarlyJournalTest, IsNotTakenWhenItEndedAfterTheLookThatFoundItInItsCommit) {
  // The look read T's header unchanged; T zeroed it before the marks were read again.
  std::fill_n(journal_.begin(), kJournalHeaderSize, 0);
  write_file(source_, journal_);
  EXPECT_FALSE(confirm_early_journal(*early_, source_, database_header(kCounter + 1), at_look_,
                                     folder_ / "commit"));
}

TEST_F(EarlyJournalTest, IsNotTakenWhenANewSegmentBeganAfterIt) {
  // T spilled after the copy: a new segment header at the next sector, its magic still zero
  // (written at the segment's sync), its nonce T's.
  const std::size_t next_segment = 4096;
  std::fill_n(journal_.begin() + static_cast<std::ptrdiff_t>(next_segment), kSector, 0);
  put_be32(journal_, next_segment + 12, kNonce);
  put_be32(journal_, next_segment + 16, 10);
  put_be32(journal_, next_segment + 20, kSector);
  put_be32(journal_, next_segment + 24, kPageSize);
  write_file(source_, journal_);
  EXPECT_FALSE(confirm());
}

TEST_F(EarlyJournalTest, IsNotTakenWhenTheRecordCountChanged) {
  put_be32(journal_, 8, 4);  // a fourth record counted since
  write_file(source_, journal_);
  EXPECT_FALSE(confirm());
}

}  // namespace
}  // namespace sqlite_backup::validate
