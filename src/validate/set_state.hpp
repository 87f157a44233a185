// Stage 3 of the pipeline: deciding whether a copied set of files is one consistent state.
//
// We copy without locks while the owner keeps writing, so a copy can tear. Instead of
// preventing that (which needs locks that can fail the owner's commits) we detect it: the
// state of the source set is captured before the first byte is copied and again after the
// last, and judge() accepts the copy only when SQLite's own markers prove that whatever
// changed in between cannot be seen in the snapshot. The reasoning for each case is in
// set_state.cpp beside the check that relies on it.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "discover/database_files.hpp"
#include "io/file.hpp"

namespace sqlite_backup::validate {

// The first bytes of a file that SQLite uses as markers:
//   database: 100-byte header (change counter at 24, page size at 16, WAL/rollback at 18-19)
//   -wal:     32-byte WAL header (magic, checkpoint sequence at 12, salts at 16 and 20)
//   -journal: 28-byte journal header (magic, record count, nonce at 12, initial size, sizes)
struct MemberState {
  bool exists = false;
  io::FileStat stat;
  std::array<std::byte, 100> header{};
  std::size_t header_bytes = 0;  // how many of header[] the file had
};

struct SetState {
  MemberState database;
  MemberState wal;
  MemberState journal;
  // Another process held SQLite's EXCLUSIVE lock on the database at the look (see
  // io::sqlite_exclusive_lock_held).
  bool exclusive_lock_held = false;
  // ... and had the -journal open: it journals its writes (an owner in journal_mode=OFF or
  // MEMORY never opens it, whatever file of that name lies there).
  bool journal_open_by_lock_holder = false;
  // ... but which files it has open could not be read (see io::process_has_open): its pid as
  // the kernel gave it (0 or -1 from another PID namespace).
  std::optional<pid_t> unreadable_lock_holder;
  // ... or it was read, and it had no -journal open (or there was none): its pid.
  std::optional<pid_t> journal_less_lock_holder;
};

// Reads the markers of every member (stat + header) without opening anything for writing
// and without any lock. Members that do not exist are recorded as such.
SetState capture(const discover::DatabaseFiles& files);

// Reads the same markers from a staged copy (to check that what we copied is the generation
// the markers speak of).
MemberState capture_member(const std::filesystem::path& path, std::size_t header_size);

inline constexpr std::size_t kDatabaseHeaderSize = 100;
inline constexpr std::size_t kWalHeaderSize = 32;
inline constexpr std::size_t kJournalHeaderSize = 28;

// The markers of a WAL applied straight from the source rather than copied: its header as
// the application read it (recover::WalApplication::wal_header), to judge as the staged
// copy's.
MemberState wal_as_read(const std::array<std::byte, kWalHeaderSize>& header);

// content_comparison: consistent if the copy equals the source read again (see Comparison);
// the caller makes the comparison and asks again with its result in DuringCopy.
enum class Need { nothing_more, content_comparison };

struct Verdict {
  bool consistent = false;
  Need need = Need::nothing_more;       // when consistent: what must still be checked
  std::string reason;                   // why not (for the debug log and the final error)
  bool discard_staged_journal = false;  // when consistent: delete the copied -journal
  // When not consistent: every rule held but the chain's own (pages free or the database
  // shrinking between two commits, see judge()): the commits seen are every transaction that
  // wrote the database since the first look, and their journals name every page they wrote
  // (pages_written_by()). Reading those pages again brings the copy up to a later state.
  bool catch_up = false;
};

// Whether two journal headers are both hot and belong to the same transaction: SQLite writes
// a fresh random nonce (offset 12) and the database size at its start (16) into every new
// journal header. The record count at 8 may legitimately grow while the transaction spills
// more pages, so it is not compared.
bool same_journal_transaction(const MemberState& a, const MemberState& b) noexcept;

// A journal copied while its transaction T was in its commit phase (see
// journal_in_commit_phase()): it holds every record T will ever write.
struct CommitJournal {
  std::filesystem::path staged;        // our copy
  MemberState header;                  // T's journal header when copied (nonce at 12)
  std::uint32_t original_counter = 0;  // page 1's change counter before T
  // Page 1's count of freelist pages before T: the pages free when T began.
  std::uint32_t original_freelist_pages = 0;
  // The database's size in pages when T began: page 1's count where SQLite trusts it (it
  // does when the version-valid-for number equals the change counter), else the journal's
  // original size (the file's, which SQLite then uses). A file grown in chunks
  // (SQLITE_FCNTL_CHUNK_SIZE) is longer than its database.
  std::uint32_t original_database_pages = 0;
  // A commit of an owner in locking_mode=EXCLUSIVE that does not move the change counter,
  // copied once its journal was synced (synced_commit_journal()) rather than from page 1
  // in its commit: original_counter is then the counter it leaves unmoved.
  // Such a journal never holds page 1: original_freelist_pages is 0 and
  // original_database_pages the journal header's original size.
  bool uncounted = false;
  // The pages T may have written, as far as its journal tells (see pages_written_by()),
  // listed as the journal was checked: sorted, no duplicates.
  std::vector<std::uint32_t> pages_written{};
};

// What page 1 held when a transaction began, from the first record of page 1 in its journal,
// and the pages the transaction may have written (CommitJournal::pages_written).
struct PageOneOriginal {
  std::uint32_t change_counter = 0;
  std::uint32_t freelist_pages = 0;
  std::uint32_t database_pages = 0;  // see CommitJournal::original_database_pages
  std::vector<std::uint32_t> pages_written{};
};

// The content comparison judge() asks for in the quiet case (Need::content_comparison): the
// copy read against the source once more, page by page.
enum class Comparison {
  not_made,
  equal,    // every page of the copy equals the source's (also: a retry's refresh found so)
  differs,  // some page differs (the refresh has already brought the copy up to date)
  source_gone,
};

// The order in which the database and its journal were written during an attempt, as the
// kernel reported it (io::WriteWatch), read as transactions: each one writes its journal
// before the database (at least page 1, or the b-tree page it changes, is journaled first)
// and ends by deleting, cutting or zeroing the journal. So every transaction writes the
// database in one burst after journal activity (more than one if it spills pages), and a
// burst follows the journal's end only when another transaction began.
class WriteHistory {
 public:
  // Recording (from the first commit seen, see snapshot::CommitWatch), nothing lost since.
  [[nodiscard]] bool complete() const noexcept { return watched_ && !gap_; }
  void start() noexcept { watched_ = true; }
  // Recording since before the first look at the source, so before the first byte was copied:
  // every write that could reach the copy is in the record (the judgement of uncounted
  // commits needs that; see judge()). `journal_idle` (no journal hot at that look): then no
  // journaled transaction was writing the database, and writes before any journal activity
  // are counted too, as a transaction's that keeps no journal (journal_mode=OFF for a while).
  void start_before_first_look(bool journal_idle) noexcept {
    watched_ = true;
    from_first_look_ = true;
    journal_last_ = journal_idle;
  }
  [[nodiscard]] bool from_first_look() const noexcept { return from_first_look_; }
  void lost_some() noexcept { gap_ = true; }
  void journal_written() noexcept { journal_last_ = true; }
  void database_written() noexcept {
    if (journal_last_) ++bursts_after_journal_;
    journal_last_ = false;
    database_written_ = true;
  }
  // Whether the record holds any write to the database at all.
  [[nodiscard]] bool database_written_at_all() const noexcept { return database_written_; }
  // Bursts of database writes that began after journal activity the record saw. Writes
  // before any are not counted: they finish the commit in progress when the record began,
  // which may as well have written everything before it (then it leaves no burst at all).
  [[nodiscard]] int bursts_after_journal() const noexcept { return bursts_after_journal_; }
  // The last commit seen (not the first) was still in its commit, its journal hot after the
  // record was drained: its journal activity is all in the record (it returned before page 1
  // was written, which a look saw), and nobody else writes until it ends. Every earlier
  // transaction ended with journal activity (its journal deleted, cut or zeroed; a commit
  // that then cuts the database file only adds a burst), so a database write after the
  // record's last journal activity is this commit's. So if the record still ends with journal
  // activity, none of its database writes has come yet (their events are queued only once
  // each write returned): its burst is counted now, so that no other burst is taken for it.
  // (helper-30 reviewed this argument; the branch where the commit ends between the last
  // look and the second read of its journal has no test: nothing can stop the owner there.)
  void count_burst_in_flight() noexcept {
    if (journal_last_) ++bursts_after_journal_;
    journal_last_ = false;
  }

 private:
  bool watched_ = false;
  bool from_first_look_ = false;
  bool gap_ = false;
  bool journal_last_ = false;
  bool database_written_ = false;
  int bursts_after_journal_ = 0;
};

// What the snapshot stage saw while it copied the database, beyond the two looks.
struct DuringCopy {
  Comparison comparison = Comparison::not_made;
  // Journals of transactions seen committing, copied in their commit phase, oldest first
  // (rolled back newest first, so that each page ends as the oldest journal had it).
  std::vector<CommitJournal> commits;
  // Bytes 12-20 (nonce, original size) of every distinct hot journal seen between chunks.
  std::vector<std::array<std::byte, 8>> hot_journals;
  bool counter_went_back = false;             // the change counter was seen lower than before
  std::uint64_t staged_database_bytes = 0;    // the size of our copy of the database
  std::optional<std::uint32_t> counter_seen;  // at the last look (record_look())
  WriteHistory writes;                        // from the first commit seen to the last look
};

// A look at the source's database header and -journal before or between the chunks of a
// rollback-mode copy, recorded in `during` as evidence for judge(): every distinct hot
// journal, and a change counter that went back. Returns true when the look shows a commit
// under way that is not captured yet (the counter moved since the last look, or this is the
// first, and a hot journal of another transaction than the last captured one): snapshot/
// should copy that journal now, and journal_in_commit_phase() then says whether the copy
// holds the whole transaction (only then does it go into during.commits).
bool record_look(DuringCopy& during, const MemberState& database, const MemberState& journal);

// What our copies themselves show, read by snapshot/ once the copy is made: the evidence
// judge() holds against the source's looks.
struct CopiedSet {
  // The WAL's header as copied, or as read where its frames were applied straight from the
  // source (wal_as_read()).
  MemberState wal;
  MemberState journal;  // the copied journal's header
  // The copied journal ends with a super-journal name (journal_names_a_super_journal()).
  bool journal_names_super_journal = false;
};

// Judges a copy taken between `before` and `after`, from what was seen only: it reads no
// file. When `during.commits` holds a transaction seen committing, the copy is judged as that
// commit (the journal copied after the database is not used) and, when consistent, is the
// state before it once rolled back through its journal.
Verdict judge(const SetState& before, const SetState& after, const CopiedSet& copied,
              const DuringCopy& during = {});

// What SQLite plays back from a journal, read as it reads it (every segment, up to the first
// record that fails its checksum): each page number, up to the first header's original size,
// with the offset in the file of its last record's page bytes; and the page size. For checking
// a rollback afterwards (recover::roll_back).
struct JournalPlayback {
  std::uint32_t page_size = 0;
  std::uint32_t database_pages = 0;  // the first header's original size: the copy's, played
  std::map<std::uint32_t, std::uint64_t> pages;
};
JournalPlayback journal_playback(const std::filesystem::path& journal);

// The pages a chain of commits may have written (see Verdict::catch_up), to read again from
// the source: a superset, as reading a page again is harmless. A transaction writes a page
// without journaling it only where the page's bytes did not matter when it began: past the
// database's end then, or a leaf of the freelist, which it takes off a trunk page and so
// journals that trunk, the leaf listed in the trunk's original (allocateBtreePage() in
// btree.c; a page it freed itself and takes back, it journals). So: every page the journals
// hold, every page listed in a journaled page that reads as a freelist trunk (next trunk,
// count, leaves: a page that is not one but happens to read as one only adds pages), and
// every page from the smallest size the database had at the first look or when one of them
// began (`tail_from`, in bytes) to the end of the file. No list (page_size 0) when a
// journal's page size is not the first look's.
struct PagesWrittenBy {
  std::uint32_t page_size = 0;
  std::vector<std::uint32_t> pages;  // sorted, no duplicates
  std::uint64_t tail_from = 0;
};
PagesWrittenBy pages_written_by(const std::vector<CommitJournal>& commits,
                                const SetState& first_look);

// Whether the journal file ends with a super-journal name (a transaction over several
// attached databases): SQLite then plays it back only while that super-journal file exists,
// which it never does beside our copy, so the copy would silently not be rolled back. A
// missing or short file names none.
bool journal_names_a_super_journal(const std::filesystem::path& journal);

// Whether the transaction whose journal was copied to `staged_journal` had reached its commit
// when `database` (the source's header) was read, and if so what page 1 held before T
// (its counter and freelist count, from T's journal): page 1 then shows that counter plus one. Page
// 1 reaches the database file only in the commit: the b-tree keeps it referenced for the whole
// write transaction, so the page cache never spills it, and the commit writes the dirty pages in
// page order after syncing the journal for the last time. So a journal copied after that point
// holds every record of T. (Owners in exclusive locking mode do not bump the counter: never for
// them.)
std::optional<PageOneOriginal> journal_in_commit_phase(const MemberState& database,
                                                       const std::filesystem::path& staged_journal);

// Whether this -journal is hot with a header SQLite wrote when it synced the journal for the
// database writes to follow: the magic and a record count (offset 8) other than 0xffffffff,
// which is written at the start only by an owner that does not sync (synchronous=OFF).
// SQLite writes the header last, after every record of its segment (syncJournal() in
// pager.c), so such a segment is whole.
bool journal_synced(const MemberState& journal) noexcept;

// The journal of a counted transaction T, copied while its first segment was synced but
// before T wrote page 1 (synced_commit_journal()), to be taken for T's whole journal at a
// later look that finds T in its commit, without reading it again (confirm_early_journal()).
// Reading a journal of some hundred KiB takes long enough for T to end meanwhile (a commit
// phase lasts a database sync: a fraction of a millisecond) and for the next transaction to
// overwrite what was read; the confirmation reads a few bytes. It rests on how SQLite writes
// a journal within a transaction (pager.c): each record is written once, at the end; a
// segment's header gets its record count when the segment is synced, and a new segment
// header follows at the next sector boundary (syncJournal(), writeJournalHdr()); a
// super-journal name goes after the last record, or at the next sector boundary
// (writeSuperJournal()); nothing else is written until the transaction ends by zeroing,
// cutting or deleting the journal. So what T writes after the copy shows at the copy's
// marks: its segment headers, the end of its last record, the next sector boundary, and the
// file's size.
struct EarlyJournal {
  std::filesystem::path staged;  // our copy
  MemberState header;            // T's first segment header at the look, and the file
  std::uint64_t size = 0;        // the copy's size
  struct Mark {
    std::uint64_t offset = 0;
    std::array<std::byte, kJournalHeaderSize> bytes{};
    std::size_t length = 0;  // of bytes the copy holds there (less near its end)
  };
  std::vector<Mark> marks;  // the first segment header's last
  // What the copy's scan found, for the commit (see CommitJournal).
  std::uint32_t original_counter = 0;
  std::uint32_t original_freelist_pages = 0;
  std::uint32_t original_database_pages = 0;
  std::vector<std::uint32_t> pages_written;
};

// The journal of a transaction T copied to `staged_journal` after a look found its header
// `at_look` synced (journal_synced()), with the change counter at `change_counter`, as a
// commit to roll back through: when it is whole (every record the headers count there and
// valid, no super-journal) and begins with the header seen. Its records are every page T
// journaled up to that sync, and T writes the database only after syncing what it
// journaled; a commit that spilled pages before the sync and journals more after it writes
// the database in several bursts, which the record of writes shows (judge()). So it serves
// only where that record began before the first look (an owner in locking_mode=EXCLUSIVE).
// T is counted when it journaled page 1 (it will write it, and SQLite increments the counter
// whenever it writes page 1): its original is then page 1's, and it is taken only once it has
// written page 1, the counter one more (in its commit: its journal then holds every record).
// Otherwise T is uncounted: it leaves `change_counter` as it is. nullopt when it is not so.
// `early`, when given, is set where T is counted but has not written page 1 yet: the copy is
// then kept as T's early journal (see EarlyJournal), and nullopt is returned.
std::optional<CommitJournal> synced_commit_journal(const MemberState& at_look,
                                                   std::uint32_t change_counter,
                                                   const std::filesystem::path& staged_journal,
                                                   std::optional<EarlyJournal>* early = nullptr);

// T's early journal `early` as T's whole journal (moved to `staged`), when a look found T in
// its commit: `database` (read first) shows page 1 written, and `at_look` (read after it) is
// T's header unchanged. The source journal's marks are read again, its first header last, and
// must all be as the copy has them: T wrote nothing else, and had not ended by then, so no
// successor can have written over what was copied. nullopt otherwise. Throws Error when the
// source cannot be read or the copy cannot be moved.
std::optional<CommitJournal> confirm_early_journal(const EarlyJournal& early,
                                                   const std::filesystem::path& source_journal,
                                                   const MemberState& database,
                                                   const MemberState& at_look,
                                                   const std::filesystem::path& staged);

// The owner's cycles a rejected attempt may wait out before the next one, so that the next
// copy has a whole cycle to itself:
// - transaction (rollback mode): a copy validates for sure only when at most one transaction
//   commits while it is read (several only when no page is free between them), so start
//   right after a commit completed: the copy then has until the transaction after the next
//   one starts writing, about two of the owner's commit intervals;
// - wal_generation: a copy validates only within one WAL generation, so start right after a
//   checkpoint restarted the WAL.
enum class Cycle { transaction, wal_generation };

// Whether `now` shows the cycle after the one that spoiled the last attempt has begun:
// wal_generation: the WAL header differs from `seen` (the WAL as that attempt saw it);
// transaction: a commit has completed since `at_start` (the change counter moved, no journal
// is hot, and no one holds SQLite's EXCLUSIVE lock: an owner in exclusive locking mode never
// lets go, and then the caller's wait runs out). Reads only the members the cycle is told by.
bool next_cycle_began(Cycle cycle, const MemberState& seen, const SetState& at_start,
                      const SetState& now) noexcept;

// The change counter (offset 24) of a database header.
std::uint32_t change_counter(const MemberState& database) noexcept;

// Whether the WAL in this state has a valid header, i.e. holds a live generation of frames.
bool has_live_wal(const SetState& state) noexcept;

// Whether this -journal is hot: a write transaction is in progress (or died in progress).
bool journal_is_hot(const MemberState& journal) noexcept;

}  // namespace sqlite_backup::validate
