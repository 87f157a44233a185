#include "validate/set_state.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "error_internal.hpp"
#include "io/big_endian.hpp"
#include "io/reader_lock.hpp"
#include "io/sqlite_magic.hpp"

namespace sqlite_backup::validate {
namespace {

using io::kJournalMagic;
using io::load_be32;

std::uint32_t big_endian_u32(const MemberState& member, std::size_t offset) noexcept {
  if (member.header_bytes < offset + 4) return 0;
  return load_be32(member.header.data() + offset);
}

bool same_bytes(const MemberState& a, const MemberState& b, std::size_t from,
                std::size_t to) noexcept {
  if (a.header_bytes < to || b.header_bytes < to) return a.header_bytes == b.header_bytes;
  return std::memcmp(a.header.data() + from, b.header.data() + from, to - from) == 0;
}

bool same_identity(const MemberState& a, const MemberState& b) noexcept {
  return a.exists == b.exists && (!a.exists || a.stat.same_file(b.stat));
}

std::string describe(const char* name, const MemberState& before, const MemberState& after) {
  if (before.exists && !after.exists) {
    return fmt::format("the {} was deleted during the copy", name);
  }
  if (!before.exists && after.exists) return fmt::format("a {} appeared during the copy", name);
  return fmt::format("the {} was replaced by another file during the copy", name);
}

// An owner in locking_mode=EXCLUSIVE keeps SQLite's EXCLUSIVE lock from its first write to
// its close, and counts only some of its commits in the change counter (those that dirty
// page 1 anyway, the first under the lock, the first after a rollback). Other owners hold
// EXCLUSIVE only around a commit: from before its journal turns hot until just after the
// journal is gone, a moment either side. So the lock held at a look with no hot journal marks
// an owner whose commits may not be counted: at the first look, or at the last only (an owner
// that entered exclusive locking mode during the copy: its first commit under the lock
// counted, the next ones not). A writer that happens to be at either end of a commit at a
// look only costs a retry.
bool uncounted_commits_possible(const SetState& before, const SetState& after) noexcept {
  return (before.exclusive_lock_held && !journal_is_hot(before.journal)) ||
         (after.exclusive_lock_held && !journal_is_hot(after.journal));
}

// Why our copy cannot be rolled back through `journals` for its size: it is shorter than the
// database was when one of them began (see rollback_obstacle()).
std::string shrink_obstacle(const std::vector<const MemberState*>& journals,
                            const DuringCopy& during) {
  for (const MemberState* journal : journals) {
    const std::uint64_t original_bytes =
        std::uint64_t{big_endian_u32(*journal, 16)} * big_endian_u32(*journal, 24);
    if (during.staged_database_bytes < original_bytes) {
      return fmt::format(
          "the database shrank during the copy ({} bytes copied, {} when a transaction began)",
          during.staged_database_bytes, original_bytes);
    }
  }
  return {};
}

// Checks shared by the cases that roll our copy back through the journals of transactions
// (whose journal headers are `journals`). Empty when none applies, else why not:
//  - no other transaction's journal was seen hot between the copy's chunks (it may have
//    spilled pages into the file and rolled them back, invisible at the two looks);
//  - the change counter never went back (a commit that failed after writing page 1, rolled
//    back, would make a later commit look like one of ours);
//  - our copy is not shorter than the database was when any of them began: a commit that
//    shrinks the file (auto_vacuum, incremental_vacuum, VACUUM) moves pages without
//    journaling their old places and cuts the file after its journal is done, so a copy that
//    read the end after the cut cannot be rolled back (playback would leave those pages zero);
//  - no sign of an owner that does not count every commit (exclusive locking mode).
// (`check_size` false: the caller checks shrink_obstacle() itself.)
std::string rollback_obstacle(const SetState& before, const SetState& after,
                              const std::vector<const MemberState*>& journals,
                              const DuringCopy& during, bool uncounted_commits_ruled_out = false,
                              bool check_size = true) {
  for (const auto& nonce : during.hot_journals) {
    const bool ours = std::any_of(journals.begin(), journals.end(), [&](const MemberState* j) {
      return std::memcmp(nonce.data(), j->header.data() + 12, nonce.size()) == 0;
    });
    if (!ours) return "another transaction began writing the database during the copy";
  }
  if (during.counter_went_back ||
      big_endian_u32(after.database, 24) < big_endian_u32(before.database, 24)) {
    return "the change counter went back during the copy (a commit was undone)";
  }
  if (check_size) {
    std::string shrank = shrink_obstacle(journals, during);
    if (!shrank.empty()) return shrank;
  }
  if (!uncounted_commits_ruled_out && uncounted_commits_possible(before, after)) {
    // Only what was seen: the lock with no hot journal is either the very start or end of a
    // commit (any owner) or an owner in exclusive locking mode; they cannot be told apart.
    return "another process held SQLite's EXCLUSIVE lock on the database with no hot journal "
           "at a look (a commit starting or ending, or an owner in locking_mode=EXCLUSIVE, "
           "whose commits are not all counted)";
  }
  return {};
}

// Why the commits seen during the copy, oldest first, do not form one chain that rolling
// back through their journals undoes exactly; empty when they do. Each journal holds the
// original of every page its transaction changed that was in use when it began: those it
// did not journal were free then (taken from the freelist) or past the end, and their content
// did not matter. Rolled back newest first, each page ends as the oldest journal holding it
// had it, which is the page before the first commit, provided no commit changed the page
// unjournaled before that one journaled it. A commit changes unjournaled only a page that
// was free when it began (or past the end): so between consecutive commits no page may be
// free (a page the earlier freed, unjournaled since freeing a page does not write it, would
// be filled by the later unjournaled, and the first's rollback could not bring back what it
// held), the file may not shrink (moved pages' old places are not journaled), and no commit
// may be missed (every commit outside exclusive locking mode bumps the counter and journals
// page 1, so their counters follow one another).
std::string chain_obstacle(const std::vector<CommitJournal>& commits) {
  for (std::size_t i = 1; i < commits.size(); ++i) {
    const CommitJournal& earlier = commits[i - 1];
    const CommitJournal& later = commits[i];
    if (later.original_counter != earlier.original_counter + 1) {
      return fmt::format(
          "a commit between two seen during the copy was missed (change counter {} then {})",
          earlier.original_counter, later.original_counter);
    }
    if (later.original_freelist_pages != 0) {
      return fmt::format(
          "{} page(s) were free between two commits during the copy (the later may have filled, "
          "unjournaled, a page the earlier freed)",
          later.original_freelist_pages);
    }
    // By the database's own size, not only the file's: in a file grown in chunks a commit
    // that shrinks the database leaves the file as it was, and the next one appends where
    // the cut pages were without journaling them (past the database's end).
    if (later.original_database_pages < earlier.original_database_pages ||
        big_endian_u32(later.header, 16) < big_endian_u32(earlier.header, 16)) {
      return "the database shrank between two commits during the copy";
    }
  }
  return {};
}

// Commits seen during a copy whose record of writes began before the first look (an owner
// taken for one in locking_mode=EXCLUSIVE, see snapshot/copy_set.cpp): counted ones, caught in
// their commit (journal_in_commit_phase()), and uncounted ones, which leave the change counter
// where it is, caught with their journal synced (synced_commit_journal()), as counted ones
// may be too, T1..Tn.
//  - An uncounted commit changes only pages that were in use when it began, and journals each
//    one first: SQLite writes the counter, incremented, into page 1 whenever it writes page 1
//    (pager_write_changecounter() in pager.c), and taking a page from the freelist, freeing one
//    or growing the database changes page 1 (its freelist count, its page count). So only a
//    counted commit may write a page unjournaled, and chain_obstacle()'s rules are needed for
//    those alone: no page free when one begins (after T1), the database not shrinking. Then,
//    rolled back through Tn's journal, then ..., then T1's, each page ends as the oldest
//    journal holding it had it, which is the state before T1.
//  - The counted ones move the counter one by one and the uncounted ones find it where the
//    last counted one left it: a counted commit unseen shows.
//  - An uncounted commit unseen does not; the kernel's record of writes, begun before the
//    first look, shows it: every transaction writes its journal before the database and ends
//    by zeroing, cutting or deleting it, so the database writes that follow journal activity
//    come in one burst per transaction (more if it spills).
//    - No journal hot at the first look: nothing was writing the database then (a commit's
//      journal stays hot from its sync until its last database write has returned), and the
//      write that made the next journal hot came after the record began. So each transaction
//      that wrote the database during the copy left at least one burst, T1..Tn one each: at
//      most n bursts mean no other transaction wrote. (The last one's burst may still be in
//      flight, its events queued only once its writes return: judge_copy() counts it then.)
//    - A journal hot at the first look: T1's, whose database writes may have come before the
//      record or before any journal activity in it (uncounted): at most n - 1.
//    - The owner may also write with no journal at all (journal_mode=OFF for a while): such a
//      transaction's writes follow journal activity (a burst) unless it came first, and with
//      no journal hot at the first look a first burst is counted too (helper-31 found both).
//  - At the last look, the journal is Tn's, still hot, or not hot: a transaction writes the
//    database only once its journal is hot (the first write, a spill included, syncs the
//    journal first, which writes its header's magic; without syncs the magic is there from
//    the start), so none after Tn wrote it while we copied (one that ended meanwhile left a
//    burst). Nor may the lock's holder have its journal closed then (journal_mode=OFF): its
//    writes may be in our copy with their events not yet queued (helper-31).
Verdict judge_commits_from_first_look(const SetState& before, const SetState& after,
                                      const DuringCopy& during) {
  Verdict verdict;
  const std::vector<CommitJournal>& commits = during.commits;
  if (!during.writes.complete()) {
    verdict.reason =
        "the kernel could not report every write since the first look (inotify), so commits "
        "that do not move the change counter cannot be counted";
    return verdict;
  }
  const bool hot_at_first_look = journal_is_hot(before.journal);
  if (hot_at_first_look && !same_journal_transaction(before.journal, commits.front().header)) {
    verdict.reason = "the transaction in progress before the copy is not the commit seen";
    return verdict;
  }
  std::uint32_t counter = big_endian_u32(before.database, 24);
  std::optional<std::uint32_t> database_pages;  // when the last counted commit began
  // Why rolling back through the chain may not give the state before it, though every page
  // written since the first look is known (see Verdict::catch_up): judged last.
  std::string chain_reason;
  for (std::size_t k = 0; k < commits.size(); ++k) {
    const CommitJournal& commit = commits[k];
    if (commit.uncounted) {
      if (commit.original_counter != counter) {
        verdict.reason = fmt::format(
            "a commit during the copy was missed (change counter {}, then {} at a commit that "
            "does not move it)",
            counter, commit.original_counter);
        return verdict;
      }
    } else {
      // (The first, in progress at the first look, may have written page 1 already.)
      const bool in_progress = k == 0 && hot_at_first_look;
      if (commit.original_counter != counter &&
          !(in_progress && commit.original_counter + 1 == counter)) {
        verdict.reason = fmt::format(
            "a commit during the copy was missed (change counter {}, the commit seen from {})",
            counter, commit.original_counter);
        return verdict;
      }
      counter = commit.original_counter + 1;
      if (k > 0 && commit.original_freelist_pages != 0 && chain_reason.empty()) {
        chain_reason = fmt::format(
            "{} page(s) were free between two commits during the copy (the later may have "
            "filled, unjournaled, a page the earlier freed)",
            commit.original_freelist_pages);
      }
      if (database_pages && commit.original_database_pages < *database_pages &&
          chain_reason.empty()) {
        chain_reason = "the database shrank between two commits during the copy";
      }
      database_pages = commit.original_database_pages;
    }
    if (k > 0 && big_endian_u32(commit.header, 16) < big_endian_u32(commits[k - 1].header, 16) &&
        chain_reason.empty()) {
      chain_reason = "the database shrank between two commits during the copy";
    }
  }
  if (big_endian_u32(after.database, 24) != counter) {
    verdict.reason = fmt::format("another commit after the ones seen (change counter {} -> {})",
                                 counter, big_endian_u32(after.database, 24));
    return verdict;
  }
  std::vector<const MemberState*> journals;
  journals.reserve(commits.size());
  for (const CommitJournal& commit : commits) journals.push_back(&commit.header);
  verdict.reason = rollback_obstacle(before, after, journals, during, true, false);
  if (!verdict.reason.empty()) return verdict;
  if (chain_reason.empty()) chain_reason = shrink_obstacle(journals, during);
  if (journal_is_hot(after.journal) &&
      !same_journal_transaction(commits.back().header, after.journal)) {
    verdict.reason = "a write transaction began after the last commit seen during the copy";
    return verdict;
  }
  // An owner that holds the lock without its journal open (journal_mode=OFF or MEMORY for a
  // while) writes the database with no journal activity at all: one writing at the last look
  // may have writes in our copy whose events the kernel has not queued yet. (One that let go
  // of the lock had its writes returned.)
  if (after.exclusive_lock_held && !after.journal_open_by_lock_holder) {
    verdict.reason =
        "another process held SQLite's EXCLUSIVE lock without the -journal open at the last "
        "look (journal_mode=OFF or MEMORY, or a process we may not look into): a commit may "
        "have been half written";
    return verdict;
  }
  const int allowed = static_cast<int>(commits.size()) - (hot_at_first_look ? 1 : 0);
  if (during.writes.bursts_after_journal() > allowed) {
    verdict.reason = fmt::format(
        "the database was written in {} bursts during the copy, by more transactions than the "
        "{} commit(s) seen (an uncounted commit in locking_mode=EXCLUSIVE, or pages spilled)",
        during.writes.bursts_after_journal(), commits.size());
    return verdict;
  }
  if (!chain_reason.empty()) {
    verdict.reason = std::move(chain_reason);
    verdict.catch_up = true;
    return verdict;
  }
  verdict.consistent = true;
  return verdict;
}

// Transactions T1..Tn committed while we copied the database, and we copied each one's
// journal in its commit phase, so that copy holds every record of it (see
// journal_in_commit_phase()). In rollback mode (outside exclusive locking mode, see
// rollback_obstacle()) every commit increments page 1's change counter exactly once, and only
// the holder of the write lock writes the database file. So T1..Tn were the only writers
// during the copy if the counter went from T1's original (or T1's own increment, T1 being the
// hot transaction we saw before) to Tn's increment, the commits follow one another (see
// chain_obstacle()), and no other journal was hot meanwhile or at the end. Rolling our copy
// back through Tn's journal, then Tn-1's, ..., then T1's, gives the state before T1: every
// page of our copy holds that or a later version, whose original before T1 the oldest journal
// holding it puts back. Not caught: a transaction that spilled pages and rolled back between
// two of our looks at the journal.
Verdict judge_commit(const SetState& before, const SetState& after, const DuringCopy& during) {
  if (during.writes.from_first_look()) return judge_commits_from_first_look(before, after, during);
  if (std::any_of(during.commits.begin(), during.commits.end(),
                  [](const CommitJournal& commit) { return commit.uncounted; })) {
    Verdict verdict;
    verdict.reason =
        "commits that do not move the change counter were seen with no record of "
        "writes from the first look";
    return verdict;
  }
  Verdict verdict;
  const std::vector<CommitJournal>& commits = during.commits;
  verdict.reason = chain_obstacle(commits);
  if (!verdict.reason.empty()) return verdict;
  std::vector<const MemberState*> journals;
  journals.reserve(commits.size());
  for (const CommitJournal& commit : commits) journals.push_back(&commit.header);
  verdict.reason = rollback_obstacle(before, after, journals, during);
  if (!verdict.reason.empty()) return verdict;
  const CommitJournal& first = commits.front();
  const CommitJournal& last = commits.back();
  const std::uint32_t counter_before = big_endian_u32(before.database, 24);
  if (journal_is_hot(before.journal)) {
    // The transaction in progress when we began must be the first seen committing.
    if (!same_journal_transaction(before.journal, first.header) ||
        !(first.original_counter == counter_before ||
          first.original_counter + 1 == counter_before)) {
      verdict.reason = "the transaction in progress before the copy is not the commit seen";
      return verdict;
    }
  } else if (first.original_counter != counter_before) {
    verdict.reason = fmt::format(
        "a commit during the copy was missed (change counter {} before, the commit seen from {})",
        counter_before, first.original_counter);
    return verdict;
  }
  const std::uint32_t counter_after = big_endian_u32(after.database, 24);
  if (counter_after != last.original_counter + 1) {
    verdict.reason = fmt::format("another commit after the ones seen (change counter {} -> {})",
                                 last.original_counter + 1, counter_after);
    return verdict;
  }
  if (journal_is_hot(after.journal) && !same_journal_transaction(last.header, after.journal)) {
    verdict.reason = "a write transaction began writing the database during the copy";
    return verdict;
  }
  // An owner in locking_mode=EXCLUSIVE counts only its first commit under the lock. The next
  // one, begun and ended between two of our looks, the lock let go before the last look,
  // moves no header we read and shows no lock: the chain above would take the counted commit
  // for the whole story, and our copy would keep the uncounted one's later pages. The
  // kernel's record of writes, begun while the first commit seen was still in its commit,
  // has no gaps between looks. That commit writes no journal before its end, so what it
  // still writes to the database comes before any journal activity, and may be nothing (it
  // may be syncing, done writing); every later transaction writes its journal first. So
  // bursts after journal activity are the later commits': one each for those seen, and one
  // more shows a commit the headers did not. (A transaction that spills pages writes in
  // several bursts and is refused too, as is a commit that cuts the file after its journal
  // ended.)
  if (!during.writes.complete()) {
    verdict.reason =
        "the kernel could not report the writes during the copy (inotify), so a commit that "
        "does not move the change counter cannot be ruled out";
    return verdict;
  }
  if (std::cmp_greater_equal(during.writes.bursts_after_journal(), commits.size())) {
    verdict.reason = fmt::format(
        "the database was written in {} bursts after the first commit seen, by more "
        "transactions than the {} commit(s) seen after it (an uncounted commit in "
        "locking_mode=EXCLUSIVE, or pages spilled)",
        during.writes.bursts_after_journal(), commits.size() - 1);
    return verdict;
  }
  verdict.consistent = true;
  return verdict;
}

// SQLite's record checksum: the segment's nonce plus every 200th byte of the page, from the
// end (pager_cksum in pager.c).
std::uint32_t record_checksum(std::uint32_t nonce, std::span<const unsigned char> page) noexcept {
  std::uint32_t sum = nonce;
  for (std::size_t i = page.size() - 200; i > 0 && i < page.size(); i -= 200) sum += page[i];
  return sum;
}

// What a journal holds, read as SQLite plays it back. A journal is a sequence of segments,
// each a header (padded to the sector size) followed by its records (page number, page,
// checksum); a record count of 0xffffffff means "up to the end of the file". Each record
// must carry its segment's checksum, and the first that does not (or has page number 0) ends
// the journal; past it lies what earlier transactions left in a reused file (PERSIST,
// exclusive locking), which must not be taken for this transaction's.
struct JournalScan {
  // The change counter page 1 had when the transaction began (the first record of page 1
  // holds its original); nullopt when the transaction has not journaled page 1 (it has not
  // reached its commit, which always does).
  std::optional<std::uint32_t> original_counter;
  std::uint32_t original_freelist_pages = 0;  // with original_counter: page 1's at offset 36
  // The database's size in pages when the transaction began: page 1's count (offset 28) when
  // SQLite trusts it, its version-valid-for number (92) being the change counter; else the
  // first segment header's original size (offset 16, the file's).
  std::uint32_t original_database_pages = 0;
  // Every record a segment header counts is there and valid (a journal synced for commit
  // must be so; one still being written may end in a torn record).
  bool intact = false;
  std::uint32_t header_database_pages = 0;  // the first segment header's original size
  std::uint32_t page_size = 0;              // the first segment header's
  // Each record's page, and where a record reads as a freelist trunk page (next trunk, leaf
  // count, leaves) the pages it lists (see pages_written_by()); sorted once the scan is done.
  std::vector<std::uint32_t> pages_written;
  // Where the transaction may still write (see EarlyJournal), when every segment counts its
  // records: each segment header's offset, the end of the last record, where the next
  // segment header would go.
  bool counts_known = false;
  std::vector<std::uint64_t> segment_offsets;
  std::uint64_t records_end = 0;
  std::uint64_t next_segment = 0;
};

// Adds to `pages` the page `page_number` of a record and, where its bytes read as a freelist
// trunk page, the pages that lists: a page that is not one but happens to read as one only
// adds pages, and reading a page again is harmless.
void note_pages_written(std::vector<std::uint32_t>& pages, std::uint32_t page_number,
                        std::span<const unsigned char> bytes) {
  pages.push_back(page_number);
  const auto most_leaves = static_cast<std::uint32_t>(bytes.size() / 4 - 2);
  const std::uint32_t leaves = load_be32(bytes.data() + 4);
  if (leaves > most_leaves) return;
  if (const std::uint32_t next = load_be32(bytes.data()); next != 0) pages.push_back(next);
  for (std::uint32_t i = 0; i < leaves; ++i) {
    if (const std::uint32_t leaf = load_be32(bytes.data() + 8 + std::size_t{i} * 4); leaf != 0) {
      pages.push_back(leaf);
    }
  }
}

void sort_pages(std::vector<std::uint32_t>& pages) {
  std::sort(pages.begin(), pages.end());
  pages.erase(std::unique(pages.begin(), pages.end()), pages.end());
}

// `on_record` is told each record SQLite would play back: its page number, the offset of the
// page's bytes in the file, and those bytes.
using OnRecord = std::function<void(std::uint32_t, std::uint64_t, std::span<const unsigned char>)>;
JournalScan scan_journal_records(const std::filesystem::path& journal, const OnRecord& on_record) {
  JournalScan scan;
  const io::UniqueFd fd = io::open_source_file(journal);
  if (!fd) return scan;
  const std::uint64_t size = io::stat_fd(fd.get(), journal).size;
  std::array<unsigned char, kJournalHeaderSize> header{};
  std::vector<unsigned char> record;
  std::uint64_t offset = 0;
  bool first_segment = true;
  // (Where the loop ends, the next segment header would be at `offset`.)
  scan.counts_known = true;
  while (offset + kJournalHeaderSize <= size) {
    if (io::read_at(fd.get(), std::as_writable_bytes(std::span(header)), offset, journal) <
            header.size() ||
        std::memcmp(header.data(), kJournalMagic.data(), kJournalMagic.size()) != 0) {
      // The end of the journal (SQLite stops at a segment without the magic too).
      scan.intact = !first_segment;
      scan.next_segment = offset;
      return scan;
    }
    scan.segment_offsets.push_back(offset);
    if (first_segment) {
      scan.original_database_pages = load_be32(&header[16]);
      scan.header_database_pages = scan.original_database_pages;
      scan.page_size = load_be32(&header[24]);
    }
    first_segment = false;
    const std::uint32_t declared = load_be32(&header[8]);
    const std::uint32_t nonce = load_be32(&header[12]);
    const std::uint64_t sector = load_be32(&header[20]);
    const std::uint64_t page = load_be32(&header[24]);
    if (sector < 32 || page < 512 || page > 65536) return scan;
    const std::uint64_t record_size = page + 8;
    const std::uint64_t first = offset + sector;
    const bool to_end = declared == 0xffffffffU;
    scan.counts_known = scan.counts_known && !to_end;
    const std::uint64_t count =
        to_end ? (size > first ? (size - first) / record_size : 0) : declared;
    record.resize(record_size);
    for (std::uint64_t i = 0; i < count; ++i) {
      const std::uint64_t at = first + i * record_size;
      const bool readable = at + record_size <= size &&
                            io::read_at(fd.get(), std::as_writable_bytes(std::span(record)), at,
                                        journal) == record_size;
      const std::uint32_t page_number = readable ? load_be32(record.data()) : 0;
      if (!readable || page_number == 0 ||
          load_be32(record.data() + 4 + page) !=
              record_checksum(nonce, std::span<const unsigned char>(record.data() + 4, page))) {
        scan.intact = to_end;  // a counted record missing or bad: not a whole journal
        return scan;
      }
      const std::span<const unsigned char> bytes(record.data() + 4, page);
      if (on_record) on_record(page_number, at + 4, bytes);
      note_pages_written(scan.pages_written, page_number, bytes);
      if (page_number == 1 && !scan.original_counter) {
        const unsigned char* page_one = record.data() + 4;
        scan.original_counter = load_be32(page_one + 24);
        scan.original_freelist_pages = load_be32(page_one + 36);
        if (load_be32(page_one + 92) == *scan.original_counter) {
          scan.original_database_pages = load_be32(page_one + 28);
        }
      }
    }
    scan.records_end = first + count * record_size;
    offset = (scan.records_end + sector - 1) / sector * sector;
    if (to_end || count == 0) {
      scan.intact = true;
      scan.next_segment = offset;
      return scan;
    }
  }
  scan.intact = !first_segment;
  scan.next_segment = offset;
  return scan;
}

JournalScan scan_journal(const std::filesystem::path& journal, const OnRecord& on_record = {}) {
  JournalScan scan = scan_journal_records(journal, on_record);
  sort_pages(scan.pages_written);
  return scan;
}

}  // namespace

JournalPlayback journal_playback(const std::filesystem::path& journal) {
  JournalPlayback playback;
  std::vector<std::pair<std::uint32_t, std::uint64_t>> records;
  const JournalScan scan = scan_journal(
      journal, [&records](std::uint32_t page, std::uint64_t at, std::span<const unsigned char>) {
        records.emplace_back(page, at);
      });
  playback.page_size = scan.page_size;
  playback.database_pages = scan.header_database_pages;
  // SQLite cuts the database to the first header's size and skips records past it; a page
  // journaled twice ends as its last record has it.
  for (const auto& [page, at] : records) {
    if (page <= scan.header_database_pages) playback.pages[page] = at;
  }
  return playback;
}

PagesWrittenBy pages_written_by(const std::vector<CommitJournal>& commits,
                                const SetState& first_look) {
  PagesWrittenBy written;
  const MemberState& database = first_look.database;
  // (Two bytes at 16; 1 stands for 65536.)
  const std::uint32_t size_field = big_endian_u32(database, 16) >> 16;
  written.page_size = size_field == 1 ? 65536 : size_field;
  if (written.page_size < 512) return PagesWrittenBy{};
  std::uint64_t smallest_pages = database.stat.size / written.page_size;
  // (SQLite trusts the header's size only when its version-valid-for number is the counter.)
  if (big_endian_u32(database, 92) == big_endian_u32(database, 24)) {
    smallest_pages = std::min<std::uint64_t>(smallest_pages, big_endian_u32(database, 28));
  }
  for (const CommitJournal& commit : commits) {
    // (A commit that changed the page size, VACUUM, numbers its pages otherwise: no list.)
    if (big_endian_u32(commit.header, 24) != written.page_size) return PagesWrittenBy{};
    smallest_pages = std::min<std::uint64_t>(
        {smallest_pages, commit.original_database_pages, big_endian_u32(commit.header, 16)});
    written.pages.insert(written.pages.end(), commit.pages_written.begin(),
                         commit.pages_written.end());
  }
  sort_pages(written.pages);
  written.tail_from = smallest_pages * written.page_size;
  return written;
}

bool journal_names_a_super_journal(const std::filesystem::path& journal) {
  const io::UniqueFd fd = io::open_source_file(journal);
  if (!fd) return false;
  const std::uint64_t size = io::stat_fd(fd.get(), journal).size;
  if (size < 16) return false;
  std::array<unsigned char, 8> tail{};
  return io::read_at(fd.get(), std::as_writable_bytes(std::span(tail)), size - 8, journal) ==
             tail.size() &&
         std::memcmp(tail.data(), kJournalMagic.data(), kJournalMagic.size()) == 0;
}

bool same_journal_transaction(const MemberState& a, const MemberState& b) noexcept {
  return journal_is_hot(a) && journal_is_hot(b) && same_bytes(a, b, 12, kJournalHeaderSize);
}

std::uint32_t change_counter(const MemberState& database) noexcept {
  return big_endian_u32(database, 24);
}

std::optional<PageOneOriginal> journal_in_commit_phase(
    const MemberState& database, const std::filesystem::path& staged_journal) {
  // Complete: every record its headers count is there and valid (it was synced for commit).
  JournalScan scan = scan_journal(staged_journal);
  if (!scan.intact || !scan.original_counter ||
      change_counter(database) != *scan.original_counter + 1 ||
      journal_names_a_super_journal(staged_journal)) {
    return std::nullopt;
  }
  return PageOneOriginal{*scan.original_counter, scan.original_freelist_pages,
                         scan.original_database_pages, std::move(scan.pages_written)};
}

namespace {

// The early journal of the copy `staged_journal`, scanned as `scan` (see EarlyJournal).
std::optional<EarlyJournal> early_journal(const MemberState& at_look,
                                          const std::filesystem::path& staged_journal,
                                          const JournalScan& scan) {
  if (!scan.counts_known || scan.segment_offsets.empty()) return std::nullopt;
  EarlyJournal early;
  early.staged = staged_journal;
  early.header = at_look;
  const io::UniqueFd fd = io::open_source_file(staged_journal);
  if (!fd) return std::nullopt;
  early.size = io::stat_fd(fd.get(), staged_journal).size;
  std::vector<std::uint64_t> offsets(scan.segment_offsets.begin() + 1, scan.segment_offsets.end());
  offsets.push_back(scan.records_end);
  offsets.push_back(scan.next_segment);
  std::sort(offsets.begin(), offsets.end());
  offsets.erase(std::unique(offsets.begin(), offsets.end()), offsets.end());
  offsets.push_back(0);  // the first header last: T had not ended when the others were read
  early.original_counter = scan.original_counter.value_or(0);
  early.original_freelist_pages = scan.original_freelist_pages;
  early.original_database_pages = scan.original_database_pages;
  early.pages_written = scan.pages_written;
  for (const std::uint64_t offset : offsets) {
    EarlyJournal::Mark mark;
    mark.offset = offset;
    mark.length = io::read_at(fd.get(), mark.bytes, offset, staged_journal);
    early.marks.push_back(mark);
  }
  return early;
}

}  // namespace

std::optional<CommitJournal> confirm_early_journal(const EarlyJournal& early,
                                                   const std::filesystem::path& source_journal,
                                                   const MemberState& database,
                                                   const MemberState& at_look,
                                                   const std::filesystem::path& staged) {
  if (!at_look.exists || !at_look.stat.same_file(early.header.stat) ||
      !same_bytes(at_look, early.header, 0, kJournalHeaderSize) || !journal_is_hot(at_look)) {
    return std::nullopt;
  }
  {
    const io::UniqueFd fd = io::open_source_file(source_journal);
    if (!fd) return std::nullopt;
    const io::FileStat now = io::stat_fd(fd.get(), source_journal);
    if (!now.same_file(early.header.stat) || now.size != early.size) return std::nullopt;
    for (const EarlyJournal::Mark& mark : early.marks) {
      std::array<std::byte, kJournalHeaderSize> bytes{};
      if (io::read_at(fd.get(), bytes, mark.offset, source_journal) != mark.length ||
          std::memcmp(bytes.data(), mark.bytes.data(), mark.length) != 0) {
        return std::nullopt;
      }
    }
  }
  // (The copy was scanned when it was made: whole, no super-journal, page 1 journaled.)
  if (change_counter(database) != early.original_counter + 1) return std::nullopt;
  if (::rename(early.staged.c_str(), staged.c_str()) != 0) {
    io::throw_errno(errno, "cannot rename the temporary file", early.staged);
  }
  return CommitJournal{staged,
                       at_look,
                       early.original_counter,
                       early.original_freelist_pages,
                       early.original_database_pages,
                       false,
                       early.pages_written};
}

bool journal_synced(const MemberState& journal) noexcept {
  const std::uint32_t records = big_endian_u32(journal, 8);
  return journal_is_hot(journal) && records != 0 && records != 0xffffffffU;
}

std::optional<CommitJournal> synced_commit_journal(const MemberState& at_look,
                                                   std::uint32_t change_counter,
                                                   const std::filesystem::path& staged_journal,
                                                   std::optional<EarlyJournal>* early) {
  if (!journal_synced(at_look)) return std::nullopt;
  const MemberState copied = capture_member(staged_journal, kJournalHeaderSize);
  if (!same_bytes(copied, at_look, 0, kJournalHeaderSize)) return std::nullopt;
  JournalScan scan = scan_journal(staged_journal);
  if (!scan.intact || journal_names_a_super_journal(staged_journal)) return std::nullopt;
  CommitJournal commit;
  commit.staged = staged_journal;
  commit.header = at_look;
  if (scan.original_counter) {
    // Not before it has written page 1 (in its commit, see journal_in_commit_phase()): a
    // journal synced for a spill holds only the records so far, and a transaction held open
    // after one would be taken for a commit that never comes (helper-37).
    if (change_counter != *scan.original_counter + 1) {
      if (early != nullptr) *early = early_journal(at_look, staged_journal, scan);
      return std::nullopt;
    }
    commit.original_counter = *scan.original_counter;
    commit.original_freelist_pages = scan.original_freelist_pages;
    commit.original_database_pages = scan.original_database_pages;
    commit.pages_written = std::move(scan.pages_written);
    return commit;
  }
  commit.original_counter = change_counter;
  commit.uncounted = true;
  commit.original_database_pages = scan.original_database_pages;
  commit.pages_written = std::move(scan.pages_written);
  return commit;
}

MemberState capture_member(const std::filesystem::path& path, std::size_t header_size) {
  MemberState member;
  const io::UniqueFd fd = io::open_source_file(path);
  if (!fd) return member;
  member.exists = true;
  member.stat = io::stat_fd(fd.get(), path);
  member.header_bytes =
      io::read_at(fd.get(), std::span(member.header.data(), header_size), 0, path);
  return member;
}

MemberState wal_as_read(const std::array<std::byte, kWalHeaderSize>& header) {
  MemberState member;
  member.exists = true;
  std::copy(header.begin(), header.end(), member.header.begin());
  member.header_bytes = header.size();
  return member;
}

SetState capture(const discover::DatabaseFiles& files) {
  SetState state;
  state.database = capture_member(files.database, kDatabaseHeaderSize);
  const std::optional<pid_t> holder = io::sqlite_exclusive_lock_holder(files.database);
  state.exclusive_lock_held = holder.has_value();
  state.wal = capture_member(files.wal, kWalHeaderSize);
  state.journal = capture_member(files.journal, kJournalHeaderSize);
  // (A WAL owner keeps no -journal by design: what it has open says nothing here.)
  if (holder && !state.wal.exists) {
    const std::optional<bool> open =
        state.journal.exists ? io::process_has_open(*holder, state.journal.stat) : false;
    state.journal_open_by_lock_holder = open.value_or(false);
    if (!open) {
      state.unreadable_lock_holder = holder;
    } else if (!*open) {
      state.journal_less_lock_holder = holder;
    }
  }
  return state;
}

bool next_cycle_began(Cycle cycle, const MemberState& seen, const SetState& at_start,
                      const SetState& now) noexcept {
  if (cycle == Cycle::wal_generation) {
    return now.wal.exists != seen.exists || now.wal.header_bytes != seen.header_bytes ||
           !same_bytes(now.wal, seen, 0, kWalHeaderSize);
  }
  return change_counter(now.database) != change_counter(at_start.database) &&
         !journal_is_hot(now.journal) && !now.exclusive_lock_held;
}

bool has_live_wal(const SetState& state) noexcept {
  const std::uint32_t magic = big_endian_u32(state.wal, 0);
  return state.wal.exists && state.wal.header_bytes >= kWalHeaderSize && io::is_wal_magic(magic);
}

// A journal is hot (SQLite will roll the database back from it when the copy is opened)
// when it starts with the journal magic and its header gives a sector size and a page size
// SQLite accepts: powers of two, 32..65536 and 512..65536 (readJournalHdr() in pager.c ends
// the playback at a header that does not, before touching the database, and deletes the
// journal). A PERSIST journal between transactions has a zeroed header and a TRUNCATE one is
// empty: neither is hot. Nor is a leftover with the magic followed by noise (a crashed or
// foreign writer's): SQLite reads the database as it is, so must we, and none of the
// header's other fields (nonce, original size) may be taken for a transaction's. SQLite
// writes the whole header, sizes included, before (sync mode) or with (no-sync mode) the
// magic, so a live writer's hot journal always passes.
bool journal_is_hot(const MemberState& journal) noexcept {
  if (!journal.exists || journal.header_bytes < kJournalHeaderSize ||
      std::memcmp(journal.header.data(), kJournalMagic.data(), kJournalMagic.size()) != 0) {
    return false;
  }
  const auto power_of_two_within = [](std::uint32_t value, std::uint32_t low, std::uint32_t high) {
    return value >= low && value <= high && (value & (value - 1)) == 0;
  };
  return power_of_two_within(big_endian_u32(journal, 20), 32, 65536) &&
         power_of_two_within(big_endian_u32(journal, 24), 512, 65536);
}

bool record_look(DuringCopy& during, const MemberState& database, const MemberState& journal) {
  const bool hot = journal_is_hot(journal);
  if (hot) {
    std::array<std::byte, 8> nonce{};
    std::memcpy(nonce.data(), journal.header.data() + 12, nonce.size());
    if (std::find(during.hot_journals.begin(), during.hot_journals.end(), nonce) ==
        during.hot_journals.end()) {
      during.hot_journals.push_back(nonce);
    }
  }
  // Every commit outside exclusive locking mode moves the counter with its first write to
  // the database file: an unmoved counter means no commit has begun writing since the last
  // look, so there is nothing new to capture.
  const std::uint32_t counter = change_counter(database);
  if (during.counter_seen) {
    if (counter == *during.counter_seen) return false;
    if (counter < *during.counter_seen) during.counter_went_back = true;
  }
  during.counter_seen = counter;
  return hot && (during.commits.empty() ||
                 !same_journal_transaction(during.commits.back().header, journal));
}

namespace {

// WAL mode with a live generation of frames.
Verdict judge_live_wal(const SetState& before, const SetState& after,
                       const MemberState& staged_wal) {
  Verdict verdict;
  // Writers only append frames to the WAL;
  // the database file is written only by checkpoints, which copy into it pages from
  // frames of the current generation that were committed before the checkpoint began.
  // The generation ends only when the WAL is restarted or truncated, and that rewrites
  // the WAL header with salt-1 incremented and a new checkpoint sequence: an identical
  // 32-byte header before and after means one generation throughout. We copy the
  // database first and the WAL second, to its end as it is then; so every page a
  // checkpoint wrote into the database while we copied it comes from a frame that was
  // already in the WAL when we started copying the WAL, and is in our copy of it.
  // Replaying our WAL (SQLite does, when the copy is opened) overwrites each such page
  // with that frame's version or a later committed one: the result is the state at the
  // last commit frame we copied. Frames after it (a transaction in flight, a torn tail)
  // fail the salt/checksum chain and SQLite ignores them. Sizes and times of both files
  // change all the time here and say nothing; they are not consulted.
  if (!same_bytes(before.wal, after.wal, 0, kWalHeaderSize)) {
    verdict.reason = fmt::format(
        "the WAL was restarted by a checkpoint during the copy (checkpoint sequence {} -> {})",
        big_endian_u32(before.wal, 12), big_endian_u32(after.wal, 12));
    return verdict;
  }
  if (!same_bytes(before.wal, staged_wal, 0, kWalHeaderSize)) {
    verdict.reason = "the copied WAL does not start with the header seen before the copy";
    return verdict;
  }
  if (before.journal.exists &&
      !(before.journal.stat.same_contents_hint(after.journal.stat) &&
        same_bytes(before.journal, after.journal, 0, kJournalHeaderSize))) {
    verdict.reason = "a -journal beside the WAL changed during the copy";
    return verdict;
  }
  verdict.consistent = true;
  return verdict;
}

// A write transaction T was in progress at the first look (or its owner died in it).
Verdict judge_hot_journal(const SetState& before, const SetState& after, const CopiedSet& copied,
                          const DuringCopy& during) {
  Verdict verdict;
  // Only the holder of
  // the RESERVED lock writes the database file, so while T lasts every change to the
  // database is T's, and SQLite journals each page's original before it overwrites the
  // page (in program order, which is what we see through the page cache). Same nonce
  // before and after: T neither committed nor was followed by another transaction. We
  // copied the journal after the database, so it holds the original of every page T
  // had written by then; opening our copy rolls T back, giving the state before T, which
  // is the last committed state. (Records past a torn journal tail fail their checksums
  // and end the rollback, as in crash recovery.)
  //
  // T may not end during the copy unless the watch saw it committing and copied its
  // journal then (judge_commit()): a journal that ended otherwise may be a rollback, and
  // the commit that followed (the counter moves just as if T had committed) would be half
  // in our copy with no journal of its own to undo it.
  if (!same_journal_transaction(before.journal, copied.journal)) {
    verdict.reason = "the copied journal is not the transaction seen before the copy";
    return verdict;
  }
  if (copied.journal_names_super_journal) {
    verdict.reason =
        "the transaction in progress spans several databases (its journal names a "
        "super-journal)";
    return verdict;
  }
  verdict.reason = rollback_obstacle(before, after, {&before.journal}, during);
  if (!verdict.reason.empty()) return verdict;
  if (!same_journal_transaction(before.journal, after.journal)) {
    verdict.reason =
        "the transaction in progress ended during the copy without being seen committing";
    return verdict;
  }
  verdict.consistent = true;
  return verdict;
}

// Rollback mode (or an empty WAL), no hot journal at the first look, no commit seen.
Verdict judge_quiet(const SetState& before, const SetState& after, const DuringCopy& during) {
  Verdict verdict;
  // No hot journal at either end. A transaction may have begun meanwhile and still be
  // journaling (with synchronous on, SQLite writes the journal magic only when it syncs the
  // journal, right before its first write to the database file; until then the header is
  // not hot): that changes the journal but not the database, so the journal's own bytes and
  // identity are not compared here. What rules the database writes out:
  // - A hot journal at the end would mean a transaction syncing or writing the database now.
  //   (Under our SHARED lock (io::ReaderLock) none turns hot: SQLite's writer takes EXCLUSIVE
  //   before it syncs its journal, and waits for us there.)
  if (journal_is_hot(after.journal) || !during.hot_journals.empty()) {
    verdict.reason = "a write transaction began writing the database during the copy";
    return verdict;
  }
  // - An owner that keeps no journal on disk (journal_mode=OFF or MEMORY) shows a commit in
  //   progress by nothing but SQLite's EXCLUSIVE lock, which it holds from before its first
  //   write to the database until after its last. Held at a look by a process that does not
  //   have the -journal open (a file of that name may still lie there, left by another
  //   connection), a commit may be half written: page 1 (the counter) before the first look,
  //   the pages we compared after the comparison; every check below would pass on a torn
  //   copy. An owner in locking_mode=EXCLUSIVE that journals keeps its journal open while it
  //   holds the lock, idle or not, and its writes show in it. (Under our SHARED lock no one
  //   holds EXCLUSIVE. In WAL mode, here with an empty WAL, only a checkpoint writes the
  //   database, and not with an empty WAL.) Not provable, so refused: a holder whose
  //   descriptors we may not read (another user's process, another PID namespace).
  const auto unjournaled_writer_possible = [](const SetState& state) {
    return state.exclusive_lock_held && !state.journal_open_by_lock_holder;
  };
  if ((unjournaled_writer_possible(before) || unjournaled_writer_possible(after)) &&
      !before.wal.exists) {
    verdict.reason =
        "another process held SQLite's EXCLUSIVE lock on the database without the -journal "
        "open (journal_mode=OFF or MEMORY, or a process we may not look into): a commit may "
        "have been half written";
    return verdict;
  }
  // - In rollback mode every commit increments the change counter (offset 24) with its first
  //   write of page 1, so a different counter proves a commit; the same counter does not
  //   prove the opposite (an owner in exclusive locking mode, or WAL mode, does not bump it
  //   for every transaction). A transaction that spilled pages and then rolled back within
  //   the copy leaves no header trace either. Timestamps cannot close those gaps: they tick
  //   as coarsely as the kernel's clock. So the caller compares contents, which can: every
  //   page of the copy must equal the source's page read afterwards, while no journal is hot
  //   at either end of that comparison. A commit (counted or not) that changed a page we
  //   had copied before it shows as a difference; an uncommitted spill cannot persist across
  //   a moment with no hot journal, so a page equal at both reads was not a spilled one.
  if (big_endian_u32(before.database, 24) != big_endian_u32(after.database, 24) ||
      before.database.stat.size != after.database.stat.size) {
    verdict.reason =
        fmt::format("a transaction committed during the copy (change counter {} -> {})",
                    big_endian_u32(before.database, 24), big_endian_u32(after.database, 24));
    return verdict;
  }
  // - With the kernel's record of writes begun before the first look (an owner in exclusive
  //   locking mode, see snapshot/copy_set.cpp), a record that holds no write to the database
  //   at all proves what the comparison would: every write that could reach the copy had
  //   returned, so was in the record, by the last look (the writer keeps its journal hot
  //   from before its first write until after its last, and none was hot then; one that keeps
  //   no journal was ruled out above).
  if (during.writes.from_first_look() && during.writes.complete() &&
      !during.writes.database_written_at_all()) {
    verdict.consistent = true;
    verdict.discard_staged_journal = true;
    return verdict;
  }
  switch (during.comparison) {
    case Comparison::differs:
      verdict.reason = "the database changed during the copy (contents differ)";
      return verdict;
    case Comparison::source_gone:
      verdict.reason = "the database was deleted";
      return verdict;
    case Comparison::not_made:
      verdict.need = Need::content_comparison;
      break;
    case Comparison::equal:
      break;
  }
  verdict.consistent = true;
  // The copy already is the committed state; a journal copied beside it (PERSIST's zeroed
  // one, or one a new transaction began after our database copy) must not be replayed.
  verdict.discard_staged_journal = true;
  return verdict;
}

}  // namespace

Verdict judge(const SetState& before, const SetState& after, const CopiedSet& copied,
              const DuringCopy& during) {
  Verdict verdict;
  // The set itself must be the same files: a deleted, created or renamed-over member means
  // the owner closed, changed journal mode, or someone replaced the database.
  if (!after.database.exists) {
    verdict.reason = "the database file was deleted during the copy";
    return verdict;
  }
  if (!same_identity(before.database, after.database)) {
    verdict.reason = describe("database file", before.database, after.database);
    return verdict;
  }
  if (!same_identity(before.wal, after.wal)) {
    verdict.reason = describe("-wal file", before.wal, after.wal);
    return verdict;
  }
  // The -journal comes and goes with every transaction in rollback mode (DELETE mode
  // creates and deletes it, TRUNCATE empties it, PERSIST zeroes its header): its identity
  // alone says nothing, and each case below reads what it needs from its header.

  if (has_live_wal(before)) return judge_live_wal(before, after, copied.wal);

  // No live WAL: rollback-journal mode, or WAL mode with an empty WAL (after a TRUNCATE
  // checkpoint, or with no connection open).
  if (has_live_wal(after) || (before.wal.exists && before.wal.stat.size != after.wal.stat.size)) {
    verdict.reason = "a writer started a new WAL during the copy";
    return verdict;
  }

  if (!during.commits.empty()) return judge_commit(before, after, during);

  if (journal_is_hot(before.journal)) {
    return judge_hot_journal(before, after, copied, during);
  }
  return judge_quiet(before, after, during);
}

}  // namespace sqlite_backup::validate
