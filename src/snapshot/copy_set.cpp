#include "snapshot/copy_set.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include "error_internal.hpp"
#include "io/big_endian.hpp"
#include "io/copy.hpp"
#include "io/file.hpp"
#include "io/reader_lock.hpp"
#include "io/write_watch.hpp"
#include "log_internal.hpp"
#include "recover/apply_wal.hpp"
#include "snapshot/look_thread.hpp"
#include "validate/set_state.hpp"

namespace sqlite_backup::snapshot {
namespace {

using detail::log_debug;
using detail::quoted;
using detail::throw_error;

// Waits before attempt `attempt` (2, 3, ...). A checkpoint or commit that spoiled the last
// attempt is usually over within a millisecond, so the first retries come at once; later
// ones back off exponentially to 32 ms with jitter, so that a steadily writing owner is not
// met at the same phase of its cycle every time, and we never spin.
void back_off(int attempt) {
  if (attempt <= 3) return;
  thread_local std::minstd_rand random{std::random_device{}()};
  const int exponent = std::min(attempt - 3, 5);
  const int ceiling_us = 1000 << exponent;  // 2 ms .. 32 ms
  std::uniform_int_distribution<int> pick(ceiling_us / 4, ceiling_us);
  std::this_thread::sleep_for(std::chrono::microseconds(pick(random)));
}

// When attempts keep colliding with the owner, the best moment to start the next one is
// right after the marker that spoiled the last one has changed (validate::next_cycle_began
// says when). This waits for it: a look (read-only) every 0.2 ms, for 40 ms at most.
using validate::Cycle;

void await_next_cycle(const discover::DatabaseFiles& source, Cycle cycle,
                      const validate::MemberState& seen) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::milliseconds(40);
  // Only the members the cycle is told by are looked at.
  const auto look = [&] {
    validate::SetState now;
    if (cycle == Cycle::wal_generation) {
      now.wal = validate::capture_member(source.wal, validate::kWalHeaderSize);
    } else {
      now.database = validate::capture_member(source.database, validate::kDatabaseHeaderSize);
      now.journal = validate::capture_member(source.journal, validate::kJournalHeaderSize);
      now.exclusive_lock_held = io::sqlite_exclusive_lock_held(source.database);
    }
    return now;
  };
  const validate::SetState at_start = look();
  while (clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    if (validate::next_cycle_began(cycle, seen, at_start, look())) return;
  }
}

struct Member {
  const std::filesystem::path* source;
  std::filesystem::path staged;
  io::Clone clone = io::Clone::when_possible;  // see clone_of_database()
};

// What one member's copy did: a fresh copy, or a refresh of the copy an earlier attempt left
// (see io::refresh_file_contents).
struct MemberCopy {
  std::uint64_t bytes = 0;
  bool vanished = false;
  bool refreshed = false;
  std::uint64_t bytes_rewritten = 0;
};

// What a first look at a live WAL hands the database copy: ranges to leave out (a copy
// through the page cache alone: --no-sync, a stream), or pages to lay over its bytes (a
// durable file copy).
struct LookForCopy {
  const io::LateRanges* skip = nullptr;
  io::LateOverlay* overlay = nullptr;
};

// Our copy: a new staged file is created with O_EXCL (a leftover would mean a bug), mode
// 0600 until commit gives it the source's bits. With `refresh`, a staged file an earlier
// attempt left is brought up to date instead of written again.
MemberCopy copy_member(const std::filesystem::path& source, io::UniqueFd in,
                       const std::filesystem::path& staged, const Settings& settings,
                       std::uint64_t done_before, std::uint64_t total, int attempt, bool refresh,
                       io::WriteOut write_out, io::Clone clone,
                       const std::function<void(std::uint64_t)>& between_chunks = {},
                       const LookForCopy& look = {},
                       const io::PagesToReadAgain* read_again = nullptr,
                       std::size_t report_every = io::kReportEvery) {
  MemberCopy result;
  if (!in) in = io::open_source_file(source);
  if (!in) {
    result.vanished = true;
    return result;
  }
  // The caller hears of progress as if the looks did not come more often (`report_every`
  // below the default): every 1 MiB of a refresh, every 4 MiB of a copy, and at the end.
  const std::uint64_t progress_every = report_every >= io::kReportEvery ? 0
                                       : refresh                        ? io::kRefreshReportEvery
                                                                        : io::kReportEvery;
  std::uint64_t progress_told = 0;
  const auto tell_progress = [&](std::uint64_t done) {
    if (settings.on_progress) settings.on_progress({done_before + done, total, attempt});
    progress_told = done;
  };
  const auto observer = [&](std::uint64_t done) {
    if (detail::cancelled(settings.cancel)) return false;
    // (The looks between chunks first: the caller's progress callback may take its time.)
    if (between_chunks) between_chunks(done);
    if (done - progress_told >= progress_every) tell_progress(done);
    return true;
  };
  const auto tell_the_end = [&](std::uint64_t done) {
    if (done != progress_told) tell_progress(done);
  };
  if (refresh) {
    io::UniqueFd earlier(::open(staged.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
    if (earlier && read_again != nullptr) {
      const io::RefreshOutcome outcome =
          io::read_pages_again(in.get(), source, earlier.get(), staged, *read_again, observer);
      detail::throw_if_cancelled(settings.cancel, source);
      tell_the_end(outcome.bytes);
      earlier.close(staged);
      log_debug("caught the copy of {} up ({} pages and the {} bytes from {} read again)",
                quoted(source), read_again->pages.size(),
                outcome.bytes > read_again->tail_from ? outcome.bytes - read_again->tail_from : 0,
                read_again->tail_from);
      // (Not `refreshed`: the pages left alone were not compared.)
      result.bytes = outcome.bytes;
      return result;
    }
    if (earlier) {
      const io::RefreshOutcome outcome =
          io::refresh_file_contents(in.get(), source, earlier.get(), staged, observer,
                                    std::min(report_every, io::kRefreshReportEvery));
      detail::throw_if_cancelled(settings.cancel, source);
      tell_the_end(outcome.bytes);
      earlier.close(staged);  // with --no-sync, no fsync will report a failed write
      log_debug("refreshed the copy of {} ({} bytes read, {} rewritten)", quoted(source),
                outcome.bytes, outcome.bytes_rewritten);
      result.bytes = outcome.bytes;
      result.refreshed = true;
      result.bytes_rewritten = outcome.bytes_rewritten;
      return result;
    }
    if (errno != ENOENT) io::throw_errno(errno, "cannot open the temporary file", staged);
  }
  io::UniqueFd out(::open(staged.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!out) io::throw_errno(errno, "cannot create a temporary file for", staged);
  const io::CopyOutcome outcome =
      io::copy_file_contents(in.get(), source, out.get(), staged, observer, write_out, look.skip,
                             look.overlay, clone, report_every);
  detail::throw_if_cancelled(settings.cancel, source);
  tell_the_end(outcome.bytes);
  out.close(staged);  // with --no-sync, no fsync will report a failed write
  log_debug("copied {} ({} bytes, {})", quoted(source), outcome.bytes,
            io::to_string(outcome.method));
  result.bytes = outcome.bytes;
  return result;
}

// Copies T's journal (whose header at the look was `journal`) to `staged`, and keeps the copy
// when `whole` finds it holds every record T needs undone: T's identity and header unchanged
// once it was read, nothing of it was cut or reused meanwhile (a successor starts only after
// T's journal ended), so it stays valid however T's journal ends. Leaves nothing staged
// otherwise.
std::optional<validate::CommitJournal> copy_commit_journal(
    const discover::DatabaseFiles& source, const std::filesystem::path& staged,
    const validate::MemberState& journal, std::vector<std::byte>& buffer,
    const std::function<std::optional<validate::CommitJournal>()>& whole) {
  io::UniqueFd in = io::open_source_file(source.journal);
  if (!in) return std::nullopt;
  const io::FileStat opened = io::stat_fd(in.get(), source.journal);
  if (!opened.same_file(journal.stat)) return std::nullopt;
  // A small journal is read whole before anything is written: an owner's commit is hot for a
  // fraction of a millisecond, and only a copy read before it ends is kept. Into `buffer`,
  // kept from copy to copy: fresh memory costs a page fault per 4 KiB (13-15 µs each on a
  // virtual machine, most of a copy of 150 KiB).
  constexpr std::uint64_t kReadWholeUpTo = std::uint64_t{8} << 20;
  const bool read_whole = opened.size <= kReadWholeUpTo;
  std::span<const std::byte> contents;
  if (read_whole) {
    if (buffer.size() < opened.size) buffer.resize(opened.size);
    contents = std::span(buffer).first(
        io::read_at(in.get(), std::span(buffer).first(opened.size), 0, source.journal));
  }
  const auto look_again = [&] {
    return validate::capture_member(source.journal, validate::kJournalHeaderSize);
  };
  const auto still_the_transaction = [&](const validate::MemberState& now) {
    return now.exists && now.stat.same_file(journal.stat) &&
           validate::same_journal_transaction(journal, now);
  };
  validate::MemberState now = read_whole ? look_again() : validate::MemberState{};
  if (read_whole && !still_the_transaction(now)) return std::nullopt;
  {
    io::UniqueFd out(::open(staged.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!out) io::throw_errno(errno, "cannot create a temporary file for", staged);
    if (read_whole) {
      io::write_all(out.get(), contents, staged);
    } else {
      io::copy_file_contents(in.get(), source.journal, out.get(), staged);
    }
    out.close(staged);
  }
  if (!read_whole) now = look_again();
  if (still_the_transaction(now)) {
    if (auto commit = whole()) return commit;
  }
  ::unlink(staged.c_str());
  return std::nullopt;
}

// T has reached its commit, as the database header `database` (read before the journal's)
// shows (see validate::journal_in_commit_phase).
std::optional<validate::CommitJournal> copy_journal_in_commit_phase(
    const discover::DatabaseFiles& source, const std::filesystem::path& staged,
    const validate::MemberState& journal, const validate::MemberState& database,
    std::vector<std::byte>& buffer) {
  return copy_commit_journal(source, staged, journal, buffer,
                             [&]() -> std::optional<validate::CommitJournal> {
                               auto original = validate::journal_in_commit_phase(database, staged);
                               if (!original) return std::nullopt;
                               return validate::CommitJournal{staged,
                                                              journal,
                                                              original->change_counter,
                                                              original->freelist_pages,
                                                              original->database_pages,
                                                              false,
                                                              std::move(original->pages_written)};
                             });
}

// T's journal was synced at the look (see validate::synced_commit_journal). Where T is a
// counted commit that has not reached its commit yet, the copy is kept at `early_path` as
// `early` instead (see validate::EarlyJournal).
std::optional<validate::CommitJournal> copy_synced_commit_journal(
    const discover::DatabaseFiles& source, const std::filesystem::path& staged,
    const validate::MemberState& journal, const validate::MemberState& database,
    const std::filesystem::path& early_path, std::unique_ptr<validate::EarlyJournal>& early,
    std::vector<std::byte>& buffer) {
  return copy_commit_journal(source, staged, journal, buffer, [&] {
    std::optional<validate::EarlyJournal> found;
    auto commit = validate::synced_commit_journal(journal, validate::change_counter(database),
                                                  staged, &found);
    if (!commit && found && ::rename(staged.c_str(), early_path.c_str()) == 0) {
      found->staged = early_path;
      early = std::make_unique<validate::EarlyJournal>(std::move(*found));
    }
    return commit;
  });
}

void remove_staged(const std::vector<Member>& members) {
  for (const auto& member : members) ::unlink(member.staged.c_str());
}

struct SetCopy {
  bool settled = true;  // false when a member vanished or the caller's copy reported a change
  std::string unsettled_reason;
  std::uint64_t bytes = 0;
  // The WAL's header as read where its frames were applied to the database copy straight
  // from the source (no staged WAL to look at).
  std::optional<validate::MemberState> wal_as_read;
  // The database pass was a refresh that found the earlier copy equal throughout: it was a
  // content comparison too.
  bool database_proved_equal = false;
};

// The WAL member of a live WAL, read once: its committed frames go straight into the
// database copy `staged_database` (recover::apply_live_wal), so no staged WAL is written and
// read back, and each byte of the result is written once. Returns false, having written
// nothing, when the WAL is one SQLite should replay: it is then staged as it is.
bool apply_wal_member(const discover::DatabaseFiles& source,
                      const std::filesystem::path& staged_database, const Settings& settings,
                      const recover::WalPages* first_look, SetCopy& copy) {
  const io::UniqueFd wal = io::open_source_file(source.wal);
  if (!wal) {
    copy.settled = false;
    copy.unsettled_reason = "the WAL vanished while it was being copied";
    return true;
  }
  const recover::WalApplication applied = recover::apply_live_wal(
      staged_database, wal.get(), settings.cancel, source.database, first_look);
  if (applied.cut_while_read) {
    copy.settled = false;
    copy.unsettled_reason = applied.why_not;
    return true;
  }
  if (first_look && !(applied.applied && applied.wal_header == first_look->wal_header)) {
    // The copy of the database holds the first look's pages, which this application was to
    // prove still the WAL's.
    copy.settled = false;
    copy.unsettled_reason = applied.applied ? "the WAL was restarted between its two looks"
                                            : "the WAL is not one to apply: " + applied.why_not;
    return true;
  }
  if (!applied.applied) return false;
  copy.bytes += applied.wal_bytes;
  copy.wal_as_read = validate::wal_as_read(applied.wal_header);
  return true;
}

// Runs of pages shorter than this are copied all the same: leaving a range out costs two
// seeks and splits the copy, which costs more than copying a few pages (measured: 3600 runs of
// scattered rewritten pages made a 200 MiB copy 45% slower).
constexpr std::uint64_t kShortestLeftOut = std::uint64_t{64} << 10;

// The first look at a live WAL (recover::committed_pages_of_live_wal) as the byte ranges of
// the database that the copy may leave out: runs of at least kShortestLeftOut, within the
// database's size at the first look.
std::vector<io::ByteRange> pages_to_leave_out(const recover::WalPages& wal,
                                              std::uint64_t database_size) {
  std::vector<io::ByteRange> ranges;
  const auto close_run = [&ranges] {
    if (!ranges.empty() && ranges.back().end - ranges.back().begin < kShortestLeftOut) {
      ranges.pop_back();
    }
  };
  for (const std::uint32_t page : wal.pages) {
    const std::uint64_t begin = std::uint64_t{page - 1} * wal.page_size;
    const std::uint64_t end = std::min(begin + wal.page_size, database_size);
    if (begin >= end) break;
    if (!ranges.empty() && ranges.back().end == begin) {
      ranges.back().end = end;
    } else {
      close_run();
      ranges.push_back({begin, end});
    }
  }
  close_run();
  return ranges;
}

// The first look pays for its thread only where pages can be laid into or left out of a copy
// worth the name: below this, the application after the copy scans the WAL itself (measured on a 1
// MiB database with a 1 MiB WAL: 4% less time without the thread). The stress tests' 12 MiB
// databases take the first look.
constexpr std::uint64_t kFirstLookFrom = std::uint64_t{4} << 20;

// The first look at a live WAL (recover::committed_pages_of_live_wal), on a thread of its own
// while the database is copied. Once the look has found the pages, it hands them to the copy
// (for_copy()): a copy with early writeback or direct writes (`lay_over`) lays each page's
// latest frame into its own chunks (io::LateOverlay) from the next one on; a copy through
// the page cache alone (--no-sync, a stream) leaves their ranges out (io::LateRanges) from where it
// then is. The look then writes into the copy itself (recover::write_looked_pages, following
// copied()) the pages the copy did not lay: all of them when the copy left them out, else
// those it had passed by then, those past the look's database size, and all of them where
// the copy could not take them (a clone, no splice). So the application after the copy
// scans only the frames the look did not see and writes only the pages they changed
// (result()). The destructor stops the thread and waits for it.
// (Why two ways: laid into the chunks, the pages cost the copy's own thread calls of their own;
// left out, the look writes them on the second core, but as a second writer of the file it contends
// with the copy for its lock. Measured at 200 MiB: the durable copy took 0.10 s laying them against
// 0.12 s, --no-sync 80 ms against 71 ms with cp at 67 ms.)
class FirstLook {
 public:
  FirstLook(const discover::DatabaseFiles& source, std::uint64_t database_size,
            const std::filesystem::path& staged_database, const Settings& settings, bool lay_over)
      : lay_over_(lay_over),
        thread_(detail::with_callers_log_sink([this, &source, database_size, &staged_database,
                                               &settings, lay_over] {
          try {
            const io::UniqueFd wal = io::open_source_file(source.wal);
            if (wal) {
              pages_ =
                  recover::committed_pages_of_live_wal(wal.get(), settings.cancel, source.database);
            }
            if (pages_ && lay_over) publish_overlay(wal.get(), database_size);
            if (pages_ && !lay_over) ranges_.publish(pages_to_leave_out(*pages_, database_size));
            if (pages_) write_ahead(wal.get(), staged_database, source, settings);
          } catch (...) {
            failure_ = std::current_exception();
          }
        })) {}
  FirstLook(const FirstLook&) = delete;
  FirstLook& operator=(const FirstLook&) = delete;
  FirstLook(FirstLook&&) = delete;
  FirstLook& operator=(FirstLook&&) = delete;
  ~FirstLook() {
    stop_.store(true);
    copy_ended();
    // (thread_, destroyed first, then joins.)
  }

  [[nodiscard]] LookForCopy for_copy() noexcept {
    return lay_over_ ? LookForCopy{nullptr, &overlay_} : LookForCopy{&ranges_, nullptr};
  }

  // The copy of the database has passed `bytes` (skipped ranges included).
  void copied(std::uint64_t bytes) noexcept {
    copied_.store(bytes);
    copied_.notify_all();
  }
  // The copy of the database is over (done, or given up): nothing waits for it any more.
  void copy_ended() noexcept { copied(std::numeric_limits<std::uint64_t>::max()); }
  // The copy is done, `database_bytes` long: what the application after it is to take as
  // the database file's size, whatever the write-ahead adds past it.
  void copy_ended(std::uint64_t database_bytes) noexcept {
    database_bytes_copied_ = database_bytes;
    copy_ended();
  }

  // Waits for the look, and rethrows what it threw; nullptr when it found nothing to use.
  const recover::WalPages* result() {
    if (thread_.joinable()) thread_.join();
    if (failure_) std::rethrow_exception(failure_);
    if (!pages_) return nullptr;
    pages_->database_bytes_copied = database_bytes_copied_;
    // Every listed page is in the copy: written ahead, or laid over by the copy from pages
    // read whole (a page read short proves nothing: the application then writes them all).
    if (written_ahead_ && !overlay_.read_short()) {
      pages_->written_through_frame = static_cast<std::uint32_t>(pages_->page_of_frame.size());
    }
    return &*pages_;
  }

 private:
  // Waits until the copy has passed `end`; false when the look is to stop.
  [[nodiscard]] bool wait_for_copy(std::uint64_t end) const {
    for (std::uint64_t now = copied_.load(); now < end; now = copied_.load()) {
      copied_.wait(now);
    }
    return !stop_.load();
  }

  // The pages for the copy to lay over: each from its latest frame up to the look's last
  // commit, through a descriptor of the same WAL file (its own, as the copy may outlive this
  // thread's). Without one, the copy goes on without them and the write-ahead writes them.
  void publish_overlay(int wal_fd, std::uint64_t database_size) {
    io::UniqueFd fd(::fcntl(wal_fd, F_DUPFD_CLOEXEC, 0));
    if (!fd) return;
    const std::vector<std::uint64_t> offsets = recover::wal_offsets_of_looked_pages(*pages_);
    std::vector<io::LateOverlay::Page> pages;
    pages.reserve(offsets.size());
    for (std::size_t i = 0; i < offsets.size(); ++i) {
      const std::uint64_t at = std::uint64_t{pages_->pages[i] - 1} * pages_->page_size;
      if (at >= database_size) break;
      if (offsets[i] != 0) pages.push_back({at, offsets[i]});
    }
    overlay_limit_ = database_size;
    overlay_.publish(std::move(fd), pages_->page_size, std::move(pages));
  }

  // Whether the copy laid the page at `begin` over its own bytes: it took the overlay at or
  // before the page, and its bytes (as passed, or as they ended) hold the whole page.
  [[nodiscard]] bool laid_over_by_copy(std::uint64_t begin) const noexcept {
    // (A copy that left the ranges out laid nothing. Pages from the look's database size on
    // were never published: the copy did not lay them, even where the file grew meanwhile
    // and the copy passed them.)
    if (!lay_over_) return false;
    if (begin < overlay_.taken_from() || begin + pages_->page_size > overlay_limit_) return false;
    const std::uint64_t passed = copied_.load();
    const std::uint64_t copied =
        passed == std::numeric_limits<std::uint64_t>::max() ? database_bytes_copied_ : passed;
    return begin + pages_->page_size <= copied;
  }

  void write_ahead(int wal_fd, const std::filesystem::path& staged_database,
                   const discover::DatabaseFiles& source, const Settings& settings) {
    // The copy creates the staged file before its first chunk.
    if (!wait_for_copy(1)) return;
    io::UniqueFd database(::open(staged_database.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!database) return;  // the copy failed; the application writes every page
    const bool written = recover::write_looked_pages(
        *pages_, wal_fd, database.get(), [this](std::uint64_t end) { return wait_for_copy(end); },
        settings.cancel, source.database, staged_database,
        [this](std::uint64_t begin) { return laid_over_by_copy(begin); });
    // With --no-sync no fsync follows: a write the disk refused shows only here.
    database.close(staged_database);
    written_ahead_ = written;
  }

  std::optional<recover::WalPages> pages_;
  std::exception_ptr failure_;
  io::LateRanges ranges_;
  io::LateOverlay overlay_;
  bool lay_over_;
  std::uint64_t overlay_limit_ = 0;  // (set before the overlay is published)
  bool written_ahead_ = false;       // (read after the join)
  std::atomic<std::uint64_t> copied_{0};
  // (Read after the join, or once copied_ is max: it is set before.)
  std::uint64_t database_bytes_copied_ = 0;
  std::atomic<bool> stop_{false};
  std::jthread thread_;  // last: started once the rest is in place
};

// clone_of_database() for this set as the first look saw it (the WAL header's page size, at
// 8, is its frames' size).
io::Clone clone_of_database(const Settings& settings, const validate::SetState& before) {
  const std::uint32_t page_size =
      before.wal.header_bytes >= 12 ? io::load_be32(before.wal.header.data() + 8) : 0;
  return clone_of_database(settings, validate::has_live_wal(before), before.database.stat.size,
                           before.wal.stat.size, page_size);
}

// One member copied by the caller's copy function, which says itself whether the file changed
// under it; the whole-set judgement still applies on top.
void copy_with_callers_function(const Member& member, const Settings& settings,
                                const discover::DatabaseFiles& source, SetCopy& copy) {
  if (!settings.copy_function(*member.source, member.staged)) {
    copy.settled = false;
    copy.unsettled_reason = "the copy function reported a change";
  }
  detail::throw_if_cancelled(settings.cancel, source.database);
}

// Copies each member in order (refreshing the database copy when `refresh_database`).
// `while_copying_database` runs between chunks of the database, `after_copying_database` once
// it is copied (before the other members, even when it vanished); a journal member is skipped
// when `journal_already_copied` says so by then; a WAL is applied to the database copy
// instead of staged when `apply_wal` (see Settings::apply_live_wal), and then a fresh copy
// of the database takes in, or leaves out, the pages a first look at the WAL found (see
// FirstLook).
SetCopy copy_members(const std::vector<Member>& members, io::UniqueFd held_journal,
                     const discover::DatabaseFiles& source, const validate::SetState& before,
                     const Settings& settings, std::uint64_t total, int attempt,
                     bool refresh_database, bool apply_wal,
                     const std::function<void()>& while_copying_database,
                     const std::function<void()>& after_copying_database,
                     const bool& journal_already_copied,
                     const io::PagesToReadAgain* read_again = nullptr,
                     std::size_t report_every = io::kReportEvery) {
  SetCopy copy;
  std::optional<FirstLook> look;
  if (apply_wal && !refresh_database && !settings.copy_function &&
      before.database.stat.size >= kFirstLookFrom) {
    look.emplace(
        source, before.database.stat.size, members.front().staged, settings,
        write_out_of(settings, true, true, before.database.stat.size) != io::WriteOut::cached);
  }
  for (const auto& member : members) {
    if (settings.copy_function) {
      copy_with_callers_function(member, settings, source, copy);
      continue;
    }
    const bool is_database = member.source == &source.database;
    const bool is_journal = member.source == &source.journal;
    if (is_journal && journal_already_copied) continue;
    // (The database is always the first member.)
    if (member.source == &source.wal && apply_wal &&
        apply_wal_member(source, members.front().staged, settings, look ? look->result() : nullptr,
                         copy)) {
      continue;
    }
    // Only the journal member takes the descriptor held since before the first look.
    io::UniqueFd held = is_journal ? std::exchange(held_journal, io::UniqueFd()) : io::UniqueFd();
    const auto between_chunks = [&](std::uint64_t done) {
      if (while_copying_database) while_copying_database();
      if (look) look->copied(done);
    };
    const MemberCopy done = copy_member(
        *member.source, std::move(held), member.staged, settings, copy.bytes, total, attempt,
        is_database && refresh_database,
        write_out_of(settings, is_database, look.has_value(), before.database.stat.size),
        member.clone, is_database ? std::function<void(std::uint64_t)>(between_chunks) : nullptr,
        is_database && look ? look->for_copy() : LookForCopy{},
        read_again,  // (only a refresh reads it: the database's)
        report_every);
    if (is_database && look) look->copy_ended(done.bytes);
    if (is_database && after_copying_database) after_copying_database();
    copy.bytes += done.bytes;
    if (done.vanished) {
      copy.settled = false;
      copy.unsettled_reason = "a file vanished while it was being copied";
    }
    if (is_database) copy.database_proved_equal = done.refreshed && done.bytes_rewritten == 0;
  }
  if (look) look->result();  // (its failure, if the WAL member did not ask)
  return copy;
}

// Reads the copy against the source once more (the content comparison validate::judge asks
// for in the quiet case). The comparison is itself a refresh pass: when it finds differences
// it has already brought the copy up to date for the next attempt.
validate::Comparison compare_contents(const discover::DatabaseFiles& source,
                                      const std::filesystem::path& staged_database,
                                      const Settings& settings) {
  const io::UniqueFd source_fd = io::open_source_file(source.database);
  io::UniqueFd copy_fd(::open(staged_database.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
  if (!copy_fd) {
    io::throw_errno(errno, "cannot open the temporary file", staged_database);
  }
  if (!source_fd) return validate::Comparison::source_gone;
  const io::RefreshOutcome comparison =
      io::refresh_file_contents(source_fd.get(), source.database, copy_fd.get(), staged_database,
                                [&](std::uint64_t) { return !detail::cancelled(settings.cancel); });
  detail::throw_if_cancelled(settings.cancel, source.database);
  copy_fd.close(staged_database);
  return comparison.bytes_rewritten == 0 ? validate::Comparison::equal
                                         : validate::Comparison::differs;
}

// The second look at the source, and the evidence validate::judge asks for: the markers of the
// copies, and the content comparison where it needs one (made before a last look, so that the
// look also covers it). Decides nothing itself.
validate::Verdict judge_copy(const discover::DatabaseFiles& source,
                             const discover::DatabaseFiles& staged_files,
                             const validate::SetState& before, const SetCopy& copy,
                             validate::DuringCopy& during, const Settings& settings,
                             const std::function<void()>& after_each_look,
                             validate::SetState& last_look) {
  // A retry's refresh that rewrote nothing was itself a comparison.
  if (copy.database_proved_equal) during.comparison = validate::Comparison::equal;
  validate::CopiedSet copied;
  copied.wal = copy.wal_as_read
                   ? *copy.wal_as_read
                   : validate::capture_member(staged_files.wal, validate::kWalHeaderSize);
  copied.journal = validate::capture_member(staged_files.journal, validate::kJournalHeaderSize);
  copied.journal_names_super_journal =
      copied.journal.exists && validate::journal_names_a_super_journal(staged_files.journal);
  const auto staged_database = io::stat_path(staged_files.database);
  during.staged_database_bytes = staged_database ? staged_database->size : 0;
  const auto judge_against = [&](const validate::SetState& state) {
    after_each_look();
    last_look = state;
    return validate::judge(before, state, copied, during);
  };
  // The kernel queues a write's IN_MODIFY only once the write returned, after its data is
  // visible: a look may capture the last commit from its page 1 while its own burst is not
  // yet in the record, and an uncounted commit's burst would then take its place. When the
  // last look still finds that commit in its commit after the record was drained, its burst
  // is counted for it unless the record shows it begun (WriteHistory::count_burst_in_flight);
  // one that ended meanwhile had all its writes returned, and the record is drained again.
  // (The first commit seen writes before any journal activity, uncounted: its events may
  // come late.) No wait, so a slow commit (fsync) costs nothing.
  validate::Verdict verdict;
  {
    const validate::SetState after = validate::capture(source);
    after_each_look();
    // (Uncounted commits are counted from the first look on: there the first has a burst too.)
    const auto& commits = during.commits;
    // (From the first look with no journal hot then, the first commit has a burst too, counted
    // or not: helper-32.)
    const bool first_has_a_burst =
        during.writes.from_first_look() && !validate::journal_is_hot(before.journal);
    if ((commits.size() >= 2 ||
         (!commits.empty() && (commits.back().uncounted || first_has_a_burst))) &&
        validate::same_journal_transaction(commits.back().header, after.journal)) {
      if (validate::same_journal_transaction(
              commits.back().header,
              validate::capture_member(source.journal, validate::kJournalHeaderSize))) {
        during.writes.count_burst_in_flight();
      } else {
        after_each_look();
      }
    }
    last_look = after;
    verdict = validate::judge(before, after, copied, during);
  }
  if (verdict.need != validate::Need::content_comparison) return verdict;
  during.comparison = compare_contents(source, staged_files.database, settings);
  return judge_against(validate::capture(source));
}

// How often the thread of CommitWatch::start_looking() looks at the source. A look (two
// headers read) takes about 15 µs; an owner's commit phase (its database writes and sync)
// lasts some hundred µs, the least seen about 300 µs on a virtual machine's disk. Looks
// between 256 KiB chunks came every 250-350 µs on that machine, more when a look copied a
// journal, and missed whole commit phases. On two busy cores a sleep of 100 µs ends 100-300
// µs later. The looks cost the copy time: measured 2026-12-07 with bench/exclusive_owner.py
// (20 MiB), at 300 commits a second, where commits were mostly caught anyway, a median of
// 0.084-0.091 s with looks every 50 µs and 0.071 s every 100 µs, against 0.045-0.067 s with
// no thread; at 1000 a second 12 of 12 finished in a median of 0.49 s, against 10 of 12 in
// 1.5 s with no thread.
constexpr std::chrono::microseconds kLookInterval{100};

// Rollback mode: the looks at the source's database header and journal, before the copy and
// between its chunks, that let an attempt survive commits during the copy. Each look is
// handed to validate::record_look(), which keeps the evidence and says when a commit's
// journal is to be copied; the copy is kept only when validate::journal_in_commit_phase()
// finds it complete. The attempt is then judged as those commits and rolled back through them.
// Idle in WAL mode and when the caller's copy function copies.
class CommitWatch {
 public:
  // `from_first_look`: a record of writes begun before `before` was taken (an owner expected
  // to commit without moving the change counter, see expects_uncounted_commits(), or a retry
  // in rollback mode); nullptr otherwise. Only with it are such commits followed, and commits
  // caught from their synced journals.
  CommitWatch(const discover::DatabaseFiles& source, const discover::DatabaseFiles& staged_files,
              const validate::SetState& before, const Settings& settings,
              io::WriteWatch* from_first_look, LookThread& look_thread)
      : source_(source),
        staged_files_(staged_files),
        before_(before),
        look_thread_(look_thread),
        enabled_(settings.follow_commits && !settings.copy_function && !before.wal.exists) {
    if (enabled_ && from_first_look != nullptr) {
      writes_ = from_first_look;
      writes_started_ = true;
      follows_uncounted_ = true;
      during_.writes.start_before_first_look(!validate::journal_is_hot(before.journal));
    }
  }

  void look_before_copy() {
    if (enabled_) look(before_.database, before_.journal);
  }

  // Where commits are followed one by one (a record of writes from the first look), a thread
  // of its own looks too while the database is copied, every kLookInterval, from here until
  // stop_looking(). The looks between chunks go on all the same, one look at a time: each
  // sees the source as it is when the copy reaches that chunk (the tests rely on it to step
  // an owner between chunks).
  // (A thread that cannot be had only costs the extra looks.)
  void start_looking() {
    if (!looks_on_its_own()) return;
    stop_.store(false);
    try {
      start_looker();
    } catch (const std::system_error& error) {
      log_debug("looking between chunks only: cannot start a thread ({})",
                std::string(error.what()));
    }
  }

  // Stops the looks start_looking() began, and rethrows what they threw.
  void stop_looking() {
    join_looker();
    if (failure_) std::rethrow_exception(std::exchange(failure_, nullptr));
  }

  // Holds off every look while it is held.
  [[nodiscard]] std::mutex& pause_looks() noexcept { return looking_; }

  // Whether the looks come from a thread of their own (start_looking()).
  [[nodiscard]] bool looks_on_its_own() const noexcept { return follows_uncounted_; }

  void look_between_chunks() {
    if (!enabled_) return;
    const std::lock_guard one_at_a_time(looking_);
    look_now();
  }

  // Brings the record of writes up to now: after the last look, before the judgement.
  void record_writes() {
    if (!writes_) return;
    validate::WriteHistory& history = during_.writes;
    const bool whole = writes_->drain([&history](io::Written member) {
      if (member == io::Written::database) {
        history.database_written();
      } else {
        history.journal_written();
      }
    });
    if (!whole) history.lost_some();
  }

  // Whether a commit's journal was copied: then the journal is not copied after the database.
  [[nodiscard]] const bool& journal_covered() const noexcept { return journal_covered_; }
  validate::DuringCopy& during() noexcept { return during_; }

  void forget_commits() noexcept {
    for (const auto& commit : during_.commits) ::unlink(commit.staged.c_str());
    during_.commits.clear();
  }

  CommitWatch(const CommitWatch&) = delete;
  CommitWatch& operator=(const CommitWatch&) = delete;
  CommitWatch(CommitWatch&&) = delete;
  CommitWatch& operator=(CommitWatch&&) = delete;
  ~CommitWatch() {
    // (Still running only where stop_looking() was not reached: an exception is on its way,
    // and what the thread threw is dropped.)
    join_looker();
    drop_early();
  }

 private:
  // (At once when this watch never started the thread's work: wait() has nothing to wait
  // for, and only one watch at a time hands the thread work.)
  void join_looker() noexcept {
    stop_.store(true);
    look_thread_.wait();
  }

  void start_looker() {
    look_thread_.start([this] {
      // The kernel would otherwise let each sleep run 50 µs long (the default timer slack).
      ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
      try {
        while (!stop_.load()) {
          {
            const std::lock_guard one_at_a_time(looking_);
            look_now();
          }
          std::this_thread::sleep_for(kLookInterval);
        }
      } catch (...) {
        failure_ = std::current_exception();
      }
    });
  }

  void look_now() {
    // The database's header before the journal's (see copy_journal_in_commit_phase()).
    const validate::MemberState database =
        validate::capture_member(source_.database, validate::kDatabaseHeaderSize);
    look(database, validate::capture_member(source_.journal, validate::kJournalHeaderSize));
  }

  // Whether `journal` is the synced header of the transaction copied early, as it was then.
  [[nodiscard]] bool copied_early(const validate::MemberState& journal) const noexcept {
    return early_ && journal.exists && journal.stat.same_file(early_->header.stat) &&
           journal.header_bytes == early_->header.header_bytes &&
           std::memcmp(journal.header.data(), early_->header.header.data(), journal.header_bytes) ==
               0;
  }

  void drop_early() noexcept {
    if (early_) ::unlink(early_->staged.c_str());
    early_.reset();
  }

  void look(const validate::MemberState& database, const validate::MemberState& journal) {
    // Drained at every look, so that the kernel's queue does not overflow on a long copy.
    record_writes();
    const bool counted = validate::record_look(during_, database, journal);
    // An owner in exclusive locking mode leaves the counter where it is: its commits are
    // followed by their synced journals instead, each new transaction's once (a counted one's
    // only once it has written page 1, see validate::synced_commit_journal()).
    const bool synced = follows_uncounted_ && validate::journal_synced(journal) &&
                        (during_.commits.empty() || !validate::same_journal_transaction(
                                                        during_.commits.back().header, journal));
    // (A synced journal already copied early is not read again until its commit.)
    if (!counted && !(synced && !copied_early(journal))) return;
    // The kernel's record of writes starts at the first commit seen, before its journal is
    // copied: the copy is kept only if that journal is still the transaction's, still hot,
    // after it was read (copy_journal_in_commit_phase()), so the transaction ends, and anyone
    // else writes, only after the record began. What came before needs no record: a commit
    // the headers did not show needs a counted one before it under the same lock, which the
    // counter or the lock at the first look gives away (validate::judge). Started only here
    // because it is dear: closing an inotify instance waits for the kernel's reaper (4-10 ms
    // measured), and a first watch on a folder visits every name the kernel caches in it.
    if (!writes_started_) {
      writes_started_ = true;
      own_writes_ = io::WriteWatch::start(source_.database, source_.journal);
      if (own_writes_) {
        writes_ = &*own_writes_;
        during_.writes.start();
      }
    }
    const std::filesystem::path staged_commit =
        staged_files_.journal.string() + "." + std::to_string(during_.commits.size() + 1);
    std::optional<validate::CommitJournal> commit;
    // (Counted only for a predecessor's commit: the one copied early has not written page 1.)
    const bool early_awaits_commit =
        copied_early(journal) && validate::change_counter(database) != early_->original_counter + 1;
    if (counted && !early_awaits_commit) {
      // Its early copy, confirmed by a few bytes, before reading the whole journal again: the
      // commit may end while that is read (see validate::EarlyJournal).
      if (early_) {
        commit = validate::confirm_early_journal(*early_, source_.journal, database, journal,
                                                 staged_commit);
        if (commit) {
          log_debug(
              "took the journal of a commit, copied when it was synced, as whole at its commit "
              "(change counter {})",
              commit->original_counter);
        }
      }
      drop_early();
      if (!commit) {
        commit = copy_journal_in_commit_phase(source_, staged_commit, journal, database,
                                              journal_buffer_);
      }
    }
    if (!commit && synced && !copied_early(journal)) {
      drop_early();
      commit = copy_synced_commit_journal(source_, staged_commit, journal, database,
                                          staged_files_.journal.string() + ".early", early_,
                                          journal_buffer_);
    }
    if (commit) {
      during_.commits.push_back(std::move(*commit));
      journal_covered_ = true;
    }
  }

  const discover::DatabaseFiles& source_;
  const discover::DatabaseFiles& staged_files_;
  const validate::SetState& before_;
  LookThread& look_thread_;  // see start_looking()
  const bool enabled_;
  bool writes_started_ = false;
  bool follows_uncounted_ = false;
  io::WriteWatch* writes_ = nullptr;  // own_writes_, or the one from the first look
  std::optional<io::WriteWatch> own_writes_;
  validate::DuringCopy during_;
  bool journal_covered_ = false;
  // The journal of the transaction in progress, copied once synced, before its commit.
  // (Not an optional: GCC 12 takes its vector for uninitialised, -Wmaybe-uninitialized.)
  std::unique_ptr<validate::EarlyJournal> early_;
  std::vector<std::byte> journal_buffer_;  // see copy_commit_journal()
  std::atomic<bool> stop_{false};
  std::mutex looking_;          // held by each look while the thread runs
  std::exception_ptr failure_;  // (read once the thread's work returned)
};

// With SourceLock::when_needed, the attempts made without a lock before the lock is taken: an
// idle or WAL database validates at the first, and only an owner that collided with it is
// made to wait. (Measured with bench/owner_latency.py, 64 MiB, 2026-12-06: after one
// lock-free attempt the backups took a median of 121 ms and the owner's p99 commit was
// 5.7 ms; after three, 295 ms and 4.6 ms; its worst commit about 60 ms either way.)
constexpr int kLockFreeAttempts = 1;

bool locks_this_attempt(const Settings& settings, int attempt) noexcept {
  switch (settings.source_lock) {
    case SourceLock::never:
      return false;
    case SourceLock::always:
      return true;
    case SourceLock::when_needed:
      return attempt > kLockFreeAttempts;
  }
  return false;
}

// How long take_reader_lock() waits: longer than most commits hold SQLite's EXCLUSIVE lock.
// The same for every owner: one that seemed to hold the lock throughout may be an ordinary
// owner syncing its journal under it before the journal turns hot (on a slow disk, one commit
// looks so at both looks of an attempt: helper-40 measured it in 8 of 10 attempts).
constexpr std::chrono::milliseconds kLongestLockWait{250};

// The reader's lock the source's journal mode calls for (see io::ReaderLock): read-lock 0 of
// the -shm with a live WAL, SHARED on the database otherwise. A writer holds PENDING and then
// EXCLUSIVE only for the end of its commit, a checkpoint read-lock 0 only while it writes back:
// wait for them a little (polling: the kernel offers no timed wait for a record lock), then
// go without the lock for this attempt.
std::optional<io::ReaderLock> take_reader_lock(const discover::DatabaseFiles& source,
                                               const Settings& settings) {
  validate::SetState mode;
  mode.wal = validate::capture_member(source.wal, validate::kWalHeaderSize);
  const bool wal = validate::has_live_wal(mode);
  const std::filesystem::path shm = source.database.string() + "-shm";
  const auto deadline = std::chrono::steady_clock::now() + kLongestLockWait;
  auto pause = std::chrono::microseconds(250);
  for (;;) {
    detail::throw_if_cancelled(settings.cancel, source.database);
    std::optional<io::ReaderLock> taken = wal ? io::ReaderLock::try_wal_read_mark_zero(shm)
                                              : io::ReaderLock::try_shared(source.database);
    if (taken) {
      const std::string_view which = wal ? "read-lock 0 of the -shm" : "a SHARED lock";
      log_debug("holding {} for this attempt", which);
      return taken;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      log_debug("could not take a reader's lock within {} ms; copying without one",
                kLongestLockWait.count());
      return std::nullopt;
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(8000));
  }
}

// Whether the look shows an owner in locking_mode=EXCLUSIVE, whose commits may leave the change
// counter where it is (validate::judge follows them by the kernel's record of writes): one
// in rollback mode that holds SQLite's EXCLUSIVE lock and keeps its journal open, and either
// no transaction is under way (any other owner holds the lock only around a commit) or every
// first look so far found the lock held (`held_at_every_look`). Only a guess that decides
// where to look: judge() proves what it accepts either way.
bool expects_uncounted_commits(const validate::SetState& look, bool held_at_every_look) noexcept {
  return !look.wal.exists && look.exclusive_lock_held && look.journal_open_by_lock_holder &&
         (!validate::journal_is_hot(look.journal) || held_at_every_look);
}

// What the kernel's record of writes kept from the last attempt showed up to this first look.
struct WritesSinceLastAttempt {
  bool whole = false;  // recorded without a break since the last attempt's first look
  bool database_written = false;
};

// An attempt's first look at the source. Where it finds an owner that may commit without
// moving the change counter (expects_uncounted_commits(), `held_at_every_look` as there), or
// on any retry in rollback mode (`retry`: the owner is busy, and with the record its commits
// are followed from their synced journals and a refused chain caught up, see CatchUp), the
// kernel's record of writes must have begun before it: started here if need be (and the look
// taken again), kept for the attempts that follow (closing an inotify instance costs
// milliseconds), emptied of what came before, and started afresh when the files it watches
// were replaced.
validate::SetState first_look(const discover::DatabaseFiles& source, const Settings& settings,
                              bool held_at_every_look, bool retry,
                              std::optional<io::WriteWatch>& writes_from_first_look,
                              WritesSinceLastAttempt& since_last_attempt) {
  since_last_attempt = {};
  // (An overflow stops a drain where the kernel lost events: what it queued after them is
  // read again.)
  if (writes_from_first_look) {
    since_last_attempt.whole = true;
    const auto note = [&since_last_attempt](io::Written member) {
      if (member == io::Written::database) since_last_attempt.database_written = true;
    };
    for (int drains = 0; drains < 4 && !writes_from_first_look->drain(note);) {
      ++drains;
      since_last_attempt.whole = false;
    }
  }
  validate::SetState before = validate::capture(source);
  if (writes_from_first_look && !writes_from_first_look->watching(before.database.stat)) {
    writes_from_first_look.reset();
    since_last_attempt.whole = false;
  }
  const bool wanted =
      expects_uncounted_commits(before, held_at_every_look) || (retry && !before.wal.exists);
  if (wanted && !writes_from_first_look && settings.follow_commits && !settings.copy_function) {
    writes_from_first_look = io::WriteWatch::start(source.database, source.journal);
    if (writes_from_first_look) before = validate::capture(source);
  }
  return before;
}

// An attempt refused for its chain of commits alone (validate::Verdict::catch_up) leaves the
// next one a copy to catch up rather than read whole: those commits (their pages were listed
// as their journals were copied; the copies themselves are deleted), its first look and its
// last. Like the pre-copy rounds of a live migration, each round reads only what the last
// one saw written, so each is shorter and meets fewer commits; one that meets at most one,
// or none, is kept. The pages are merged only once the next attempt has taken its first
// look: the shorter the time between the two looks, the likelier nothing wrote in between.
struct CatchUp {
  std::vector<validate::CommitJournal> commits;
  validate::SetState first_look;
  validate::SetState last_look;
};

// Why the copy the last attempt left (see CatchUp) cannot be caught up at this attempt, whose
// first look is `before`; empty when it can. It can when nothing but the commits the last
// attempt saw wrote the database from its first look to this one: then every other page of
// the copy holds what it holds at this look, and the pages read again are read within this
// attempt. So the copy is as if read whole at this attempt, and the judgement applies as to
// any copy. Nothing wrote in between if the kernel's record, kept whole since, shows no write
// to the database and the change counter stayed. Or, with writes, the transaction the last
// look found in progress is still in progress, the same one: its writes are its own, and
// this attempt rolls it back as the transaction in progress at its first look.
std::string catch_up_obstacle(const CatchUp& catch_up, const validate::SetState& before,
                              const WritesSinceLastAttempt& since_last_attempt) {
  const validate::SetState& last = catch_up.last_look;
  if (!since_last_attempt.whole) {
    return "the record of writes since the last attempt is not whole";
  }
  if (!before.database.exists || !last.database.exists ||
      !before.database.stat.same_file(last.database.stat) || before.wal.exists) {
    return "the database was replaced, or a -wal appeared, since the last attempt";
  }
  if (validate::change_counter(before.database) != validate::change_counter(last.database)) {
    return "another commit since the last attempt";
  }
  // (The pages are numbered in the last attempt's first look's page size.)
  if (std::memcmp(before.database.header.data() + 16,
                  catch_up.first_look.database.header.data() + 16, 2) != 0) {
    return "the page size changed since the last attempt";
  }
  if (since_last_attempt.database_written &&
      !validate::same_journal_transaction(last.journal, before.journal)) {
    return "the database was written since the last attempt";
  }
  return {};
}

// The pages of the copy `last_round` left that the attempt `attempt` reads again (see
// CatchUp); nullopt when it reads the whole file.
std::optional<validate::PagesWrittenBy> pages_to_read_again(
    const std::optional<CatchUp>& last_round, const validate::SetState& before,
    const WritesSinceLastAttempt& since_last_attempt, int attempt) {
  if (!last_round) return std::nullopt;
  const std::string obstacle = catch_up_obstacle(*last_round, before, since_last_attempt);
  if (!obstacle.empty()) {
    log_debug("attempt {}: not catching the copy up: {}", attempt, obstacle);
    return std::nullopt;
  }
  validate::PagesWrittenBy written =
      validate::pages_written_by(last_round->commits, last_round->first_look);
  if (written.page_size == 0) return std::nullopt;
  log_debug(
      "attempt {}: reading again the {} pages the last attempt's commits may have "
      "written, and from byte {} on",
      attempt, written.pages.size(), written.tail_from);
  return written;
}

// Which cycle of the owner's to wait for before the next attempt, and the marker (journal or
// WAL header) the rejected attempt saw.
using LastSeen = std::optional<std::pair<Cycle, validate::MemberState>>;

// How often a copy (or a refresh) looks at the source where the owner is followed commit by
// commit (see CommitWatch): its commits are caught only at a look that falls within one. A
// look costs about 20 µs; 256 KiB take about 60 µs to copy from the page cache. (With the
// torture harness's exclusive-locking owner at 64 MiB, about 400 commits a second, retries
// that looked every 1 MiB finished 4 backups of 6, every 256 KiB 6 of 6.)
constexpr std::size_t kLookEveryWhileFollowing = std::size_t{256} << 10;

std::size_t look_every(bool following) noexcept {
  return following ? kLookEveryWhileFollowing : io::kReportEvery;
}

// Whether SQLite's lock was held, at every first look so far, by a process we may not look
// into, or by one without its journal open (for the message of a backup that gives up).
void note_lock_holder(const validate::SetState& before, int attempt, Outcome& outcome) noexcept {
  if (attempt == 1 || outcome.unreadable_lock_holder) {
    outcome.unreadable_lock_holder = before.unreadable_lock_holder;
  }
  if (attempt == 1 || outcome.journal_less_lock_holder) {
    outcome.journal_less_lock_holder = before.journal_less_lock_holder;
  }
}

// One whole-set attempt of copy_consistent_set(): the first look, the copy of every member,
// the judgement. On success sets outcome.validated (and the journals to roll back through);
// otherwise outcome.last_reason, and returns what to wait for before the next attempt
// (nothing when the attempt ended before the copy).
LastSeen copy_set_once(const discover::DatabaseFiles& source,
                       const discover::DatabaseFiles& staged_files, const Settings& settings,
                       int attempt, Outcome& outcome,
                       std::optional<io::WriteWatch>& writes_from_first_look,
                       std::optional<CatchUp>& catch_up, LookThread& look_thread) {
  // The journal is opened before the first look and read through this descriptor after
  // the database: should its transaction commit meanwhile and delete it, the descriptor
  // still reads the whole file (see judge()).
  io::UniqueFd held_journal = io::open_source_file(source.journal);
  const bool exclusive_so_far = attempt == 1 || outcome.exclusive_lock_at_every_attempt;
  WritesSinceLastAttempt since_last_attempt;
  const validate::SetState before =
      first_look(source, settings, attempt > 1 && exclusive_so_far, attempt > 1,
                 writes_from_first_look, since_last_attempt);
  // (Taken here, so that no return leaves it for a later attempt.)
  const std::optional<CatchUp> last_round = std::exchange(catch_up, std::nullopt);
  if (held_journal && !(before.journal.exists && before.journal.stat.same_file(io::stat_fd(
                                                     held_journal.get(), source.journal)))) {
    outcome.last_reason = "the journal changed as we opened it";
    log_debug("attempt {} of {}: {}; copying again", attempt, settings.attempts,
              outcome.last_reason);
    return std::nullopt;
  }
  outcome.exclusive_lock_at_every_attempt = exclusive_so_far && before.exclusive_lock_held;
  note_lock_holder(before, attempt, outcome);
  if (!before.database.exists) {
    throw_error(
        ErrorCause{.system_errno = ENOENT}, ErrorKind::io, source.database, "cannot read {}: {}",
        quoted(source.database),
        attempt == 1 ? "it does not exist" : "the database was deleted while it was being copied");
  }

  // A retry refreshes the database copy the last attempt left rather than writing it again
  // (a caller's copy function always copies afresh), or catches it up (see CatchUp).
  const bool refresh_database = attempt > 1 && !settings.copy_function;
  const std::optional<validate::PagesWrittenBy> written_last_round =
      pages_to_read_again(last_round, before, since_last_attempt, attempt);
  const std::optional<io::PagesToReadAgain> read_again =
      written_last_round && refresh_database
          ? std::optional(io::PagesToReadAgain{written_last_round->page_size,
                                               written_last_round->pages,
                                               written_last_round->tail_from})
          : std::nullopt;
  remove_staged({{&source.wal, staged_files.wal}, {&source.journal, staged_files.journal}});
  if (!refresh_database) remove_staged({{&source.database, staged_files.database}});

  // With the record begun before this look, commits are followed from their synced journals
  // (CommitWatch) and a refused chain is caught up (CatchUp); an owner that looks like one in
  // locking_mode=EXCLUSIVE is, besides, retried at once (it shows no cycle to wait for).
  const bool from_first_look = writes_from_first_look && !before.wal.exists;
  const bool follows_uncounted =
      from_first_look &&
      expects_uncounted_commits(before, attempt > 1 && outcome.exclusive_lock_at_every_attempt);
  CommitWatch watch(source, staged_files, before, settings,
                    from_first_look ? &*writes_from_first_look : nullptr, look_thread);
  watch.look_before_copy();
  watch.start_looking();

  // Database first, then the WAL, then the journal (unless already copied): judge()
  // relies on this order.
  std::vector<Member> members{
      {&source.database, staged_files.database, clone_of_database(settings, before)}};
  if (before.wal.exists) members.push_back({&source.wal, staged_files.wal});
  if (held_journal) members.push_back({&source.journal, staged_files.journal});

  std::uint64_t total = before.database.stat.size;
  if (before.wal.exists) total += before.wal.stat.size;
  if (before.journal.exists) total += before.journal.stat.size;

  const bool apply_wal =
      settings.apply_live_wal && validate::has_live_wal(before) && !before.journal.exists;
  // The caller's progress callback runs with the looks paused, the thread's too: what it does
  // to the source meanwhile is seen by the look at the next chunk, as without the thread (the
  // tests make an owner commit there, and so tell what a commit no look saw leaves).
  Settings copy_settings = settings;
  if (settings.on_progress && watch.looks_on_its_own()) {
    copy_settings.on_progress = [&settings, &watch](const CopyProgress& progress) {
      const std::lock_guard<std::mutex> paused(watch.pause_looks());
      settings.on_progress(progress);
    };
  }
  const SetCopy copy = copy_members(
      members, std::move(held_journal), source, before, copy_settings, total, attempt,
      refresh_database, apply_wal, [&watch] { watch.look_between_chunks(); },
      [&watch] { watch.stop_looking(); }, watch.journal_covered(),
      read_again ? &*read_again : nullptr, look_every(from_first_look));
  outcome.bytes = copy.bytes;
  // The sizes at the first look are only an estimate (a file grew, or a journal was copied
  // earlier, at its commit, and skipped here): the copy is complete, so say so.
  if (settings.on_progress && copy.settled) {
    settings.on_progress({copy.bytes, copy.bytes, attempt});
  }

  validate::SetState last_look;
  const validate::Verdict verdict =
      copy.settled ? judge_copy(
                         source, staged_files, before, copy, watch.during(), settings,
                         [&watch] { watch.record_writes(); }, last_look)
                   : validate::Verdict{false, validate::Need::nothing_more, copy.unsettled_reason};
  if (verdict.consistent) {
    if (verdict.discard_staged_journal) ::unlink(staged_files.journal.c_str());
    // Newest first: each playback leaves a page as that transaction found it, and the oldest
    // journal holding a page has it as it was before the first commit.
    const auto& commits = watch.during().commits;
    std::for_each(commits.rbegin(), commits.rend(), [&](const validate::CommitJournal& commit) {
      outcome.journals_to_roll_back.push_back(
          {commit.staged, commit.uncounted
                              ? std::nullopt
                              : std::optional<std::uint32_t>(commit.original_counter)});
    });
    if (!commits.empty()) {
      log_debug("attempt {}: {} commit(s) during the copy, each journal copied in its commit",
                attempt, commits.size());
    }
    outcome.validated = true;
    log_debug("attempt {}: the copy of {} is one consistent state", attempt,
              quoted(source.database));
    return std::nullopt;
  }
  outcome.last_reason = verdict.reason;
  if (verdict.catch_up && from_first_look) {
    catch_up = CatchUp{watch.during().commits, before, last_look};
    watch.forget_commits();
    log_debug("attempt {} of {}: {}; catching the copy up", attempt, settings.attempts,
              verdict.reason);
    return std::nullopt;
  }
  watch.forget_commits();
  log_debug("attempt {} of {}: {}; copying again", attempt, settings.attempts, verdict.reason);
  // An owner in exclusive locking mode never shows the end of a cycle (it never lets go of
  // the lock), and commits during the copy no longer spoil it: go again at once.
  if (follows_uncounted) return std::nullopt;
  // A -wal file (even an empty one) means WAL mode; without one, rollback mode.
  return before.wal.exists ? std::pair{Cycle::wal_generation, before.wal}
                           : std::pair{Cycle::transaction, before.journal};
}

}  // namespace

Outcome copy_consistent_set(const discover::DatabaseFiles& source,
                            const std::filesystem::path& staged, const Settings& settings) {
  const discover::DatabaseFiles staged_files(staged);
  Outcome outcome;
  LastSeen last_seen;                // set when an attempt is rejected
  bool reader_lock_refused = false;  // a reader's lock was tried and not had
  // The kernel's record of writes, once an owner that commits uncounted was seen (see
  // expects_uncounted_commits()), kept from attempt to attempt.
  std::optional<io::WriteWatch> writes_from_first_look;
  std::optional<CatchUp> catch_up;  // set by an attempt for the next (see CatchUp)
  LookThread look_thread;           // its thread made by the first attempt that follows commits
  for (int attempt = 1; attempt <= settings.attempts; ++attempt) {
    detail::throw_if_cancelled(settings.cancel, source.database);
    // (A copy to catch up goes at once: the longer the wait, the more the owner writes.)
    if (attempt > 1 && !catch_up) {
      if (last_seen) {
        await_next_cycle(source, last_seen->first, last_seen->second);
      } else {
        back_off(attempt);
      }
    }
    outcome.attempts = attempt;
    // Held from before the first look until the attempt is judged (content comparison
    // included), then released.
    // An owner that has held SQLite's EXCLUSIVE lock at every look (locking_mode=EXCLUSIVE)
    // and refused the lock once will refuse it again: trying would only cost each attempt the
    // wait (a quarter of a second), and the backup that then gives up would take 100 times
    // that. Tried again once a look finds the lock free. Given up on only once refused: an
    // attempt that followed the owner's commits as uncounted is no evidence, since an ordinary
    // owner syncing its journal under the lock (before the journal turns hot) looks the same,
    // a busy one on a slow disk at every look (such backups lost the lock for good).
    const bool wants_lock = locks_this_attempt(settings, attempt);
    const bool lock_is_futile = reader_lock_refused && outcome.exclusive_lock_at_every_attempt;
    if (wants_lock && lock_is_futile) {
      log_debug(
          "not trying a reader's lock: the owner has held SQLite's EXCLUSIVE lock at every "
          "look (locking_mode=EXCLUSIVE)");
    }
    const bool tries_lock = wants_lock && !lock_is_futile;
    const std::optional<io::ReaderLock> lock =
        tries_lock ? take_reader_lock(source, settings) : std::nullopt;
    if (tries_lock) reader_lock_refused = !lock;
    last_seen = copy_set_once(source, staged_files, settings, attempt, outcome,
                              writes_from_first_look, catch_up, look_thread);
    if (outcome.validated) return outcome;
  }
  return outcome;
}

io::Clone clone_of_database(const Settings& settings, bool wal_applied,
                            std::uint64_t database_bytes, std::uint64_t wal_bytes,
                            std::uint32_t page_size) {
  if (!settings.start_writeback || !wal_applied || page_size == 0) return io::Clone::when_possible;
  constexpr std::uint64_t kWalHeader = 32;
  constexpr std::uint64_t kFrameHeader = 24;
  const std::uint64_t frames =
      wal_bytes > kWalHeader ? (wal_bytes - kWalHeader) / (page_size + kFrameHeader) : 0;
  return frames * kClonePagesPerWalFrame > database_bytes / page_size ? io::Clone::never
                                                                      : io::Clone::when_possible;
}

io::WriteOut write_out_of(const Settings& settings, bool is_database, bool first_look,
                          std::uint64_t database_size) {
  if (!is_database || !settings.start_writeback) return io::WriteOut::cached;
  return first_look && database_size >= settings.direct_writes_from ? io::WriteOut::direct
                                                                    : io::WriteOut::early;
}

}  // namespace sqlite_backup::snapshot
