#include "recover/apply_wal.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <climits>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include "error_internal.hpp"
#include "io/big_endian.hpp"
#include "io/file.hpp"
#include "io/sqlite_magic.hpp"
#include "log_internal.hpp"
#include "recover/wal_checksum.hpp"

// The WAL format (https://www.sqlite.org/fileformat2.html#walformat), as SQLite reads it
// when it recovers a WAL that has no -shm index (ours never has one: the -shm is not copied):
//   header (32 bytes): magic 0x377f0682 or 0x377f0683 (low bit: checksum words big-endian),
//     version 3007000, page size, checkpoint sequence, salt-1, salt-2, checksum of bytes 0-23;
//   frames: a 24-byte header (page number, database size in pages after commit on a commit
//     frame and 0 otherwise, the two salts, the cumulative checksum) and one page.
// A frame counts while its salts match the header's and the checksum chain, seeded by the
// header's checksum and running over each frame's first 8 header bytes and its page, holds.
// Only frames up to the last valid commit frame are part of the database.

namespace sqlite_backup::recover {
namespace {

using detail::log_debug;
using detail::quoted;

constexpr std::size_t kWalHeader = 32;
constexpr std::size_t kFrameHeader = 24;
constexpr std::uint32_t kWalVersion = 3007000;
// The WAL is looked at through one window of about this size at a time, so memory stays flat
// however large the WAL is. The window is fresh memory, and each of its pages costs a fault
// the first time it is filled: 13-15 µs each where this virtual machine has handed its free
// memory back to the host (measured 2026-12-07). With 256 KiB those 64 faults were a tenth of
// a 1 MiB backup (--no-sync: 9.7 ms against 11.3, median of 41, `cp` 6.3); the four times as
// many reads a 20 MiB WAL then takes cost less than that (200 MiB: no difference measured).
constexpr std::size_t kWindow = std::size_t{64} << 10;

using io::load_be32;
using io::store_be32;

// The staged files are private: errors name the source the user asked to back up.
std::size_t read_database(int fd, std::span<std::byte> buffer, std::uint64_t offset,
                          const std::filesystem::path& source) {
  return io::read_at(fd, buffer, offset, source, "cannot read the snapshot of");
}

// The staged database file. Reads name the source (what the user knows); writes name the
// staged file (where a full disk is: the caller names it as the destination it becomes).
class FileImage final : public DatabaseImage {
 public:
  FileImage(const std::filesystem::path& database, const std::filesystem::path& source)
      : fd_(::open(database.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW)),
        source_(source),
        written_(database) {
    if (!fd_) io::throw_errno(errno, "cannot open the snapshot of", source_);
  }
  std::uint64_t size() override { return io::stat_fd(fd_.get(), source_).size; }
  std::size_t read(std::span<std::byte> buffer, std::uint64_t offset) override {
    return read_database(fd_.get(), buffer, offset, source_);
  }
  void write(std::span<const std::byte> bytes, std::uint64_t offset) override {
    io::write_all_at(fd_.get(), bytes, offset, written_);
  }
  void write_pages(std::uint32_t first_page, std::span<const std::byte* const> pages,
                   std::size_t page_size) override {
    vectors_.resize(IOV_MAX);
    write_run(fd_.get(), first_page, pages, page_size, vectors_, written_);
  }
  void finish() override { fd_.close(written_); }
  void resize(std::uint64_t size) override {
    // Only when it differs: XFS marks a file truncated even to its own size, and then writes
    // all its dirty pages out when it is closed (measured: 0.65 s of a 1.1 GiB backup whose
    // WAL had grown the file to exactly that size).
    if (this->size() != size && ::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) {
      io::throw_errno(errno, "cannot write", written_);
    }
  }

 private:
  io::UniqueFd fd_;
  const std::filesystem::path& source_;
  const std::filesystem::path& written_;  // the staged database
  std::vector<iovec> vectors_;
};

struct WalHeader {
  std::uint32_t page_size = 0;
  std::array<std::byte, 8> salts{};
  Checksum seed;
};

// The database header, the first 100 bytes of page 1 (https://www.sqlite.org/fileformat.html).
using DatabaseHeader = std::array<std::byte, 100>;

std::uint32_t page_size_of(const DatabaseHeader& header) noexcept {
  const std::uint32_t stored = (std::to_integer<std::uint32_t>(header[16]) << 8) |
                               std::to_integer<std::uint32_t>(header[17]);
  return stored == 1 ? 65536 : stored;  // 65536 does not fit in the two bytes
}

struct FrameScan {
  std::vector<std::uint32_t> page_of_frame;  // index i: frame i + 1
  std::uint64_t committed_frames = 0;
  std::uint32_t pages_after_commit = 0;  // database size, in pages, at the last commit
  DatabaseHeader page1{};                // as page 1 starts after the last commit
  bool page1_from_wal = false;           // a committed frame rewrote page 1
  Checksum chain_at_commit;              // the chain after the last committed frame
};

class WalApplier {
 public:
  // `wal` is read through `wal_fd`; `live`: it is the source's own WAL, which its owner may
  // append to, restart or cut while we read it (see apply_live_wal()).
  WalApplier(DatabaseImage& database, int wal_fd, bool live, const std::atomic<bool>* cancel,
             const std::filesystem::path& source, const WalPages* first_look = nullptr)
      : first_look_(first_look),
        db_(database),
        wal_(wal_fd),
        live_(live),
        read_failure_(live ? "cannot read the WAL of" : "cannot read the WAL of the snapshot of"),
        cancel_(cancel),
        source_(source) {}

  WalApplication run() {
    wal_size_ = io::stat_fd(wal_, source_).size;
    if (!read_database_header()) return result_;
    // SQLite's recovery reads nothing of a WAL no longer than its header (one a checkpoint
    // truncated, or one just created): it holds no frames, whatever its bytes are.
    FrameScan scan;
    scan.page1 = database_header_;
    if (wal_size_ > kWalHeader) {
      if (!read_header() || !page_sizes_match()) return result_;
      scan = scan_frames();
      result_.committed_frames = scan.committed_frames;
      // A WAL full of frames none of which is valid is legal (a restarted WAL whose first
      // frame was not written yet), but it is also what a file in another format looks like
      // (a VFS that encrypts pages): SQLite decides.
      if (result_.valid_frames == 0 && wal_size_ >= kWalHeader + frame_size()) {
        return leave_for_sqlite_result("no frame of the WAL is valid");
      }
    }
    const std::uint64_t final_size =
        scan.committed_frames > 0
            ? std::uint64_t{scan.pages_after_commit} * page_size_of(scan.page1)
            : database_size_;
    if (!page1_as_sqlite_writes_it(scan.page1, final_size)) return result_;
    if (scan.committed_frames > 0 && !apply(scan, final_size)) return result_;
    leave_wal_mode(scan.page1);
    db_.finish();
    result_.applied = true;
    log_debug(
        "applied the WAL of the snapshot of {}: {} valid frames, {} up to the last commit, "
        "{} pages written",
        quoted(source_), result_.valid_frames, result_.committed_frames, result_.pages_written);
    return result_;
  }

  // The first look (committed_pages_of_live_wal()): the frames are scanned, nothing is
  // written.
  std::optional<WalPages> look() {
    wal_size_ = io::stat_fd(wal_, source_).size;
    if (wal_size_ <= kWalHeader || !read_header() ||
        (wal_size_ - kWalHeader) / frame_size() > std::numeric_limits<std::uint32_t>::max()) {
      return std::nullopt;
    }
    const FrameScan scan = scan_frames();
    if (scan.committed_frames == 0) return std::nullopt;
    WalPages pages;
    pages.wal_header = result_.wal_header;
    pages.page_size = header_.page_size;
    pages.page_of_frame = scan.page_of_frame;
    pages.pages_after_commit = scan.pages_after_commit;
    if (scan.page1_from_wal) {
      pages.page1.emplace();
      std::memcpy(pages.page1->data(), scan.page1.data(), pages.page1->size());
    }
    pages.checksum = {scan.chain_at_commit.s0, scan.chain_at_commit.s1};
    for (const std::uint32_t page : scan.page_of_frame) {
      // (apply() never writes page 2^32 - 1: neither is it listed for the copy.)
      if (page != 1 && page <= scan.pages_after_commit &&
          page != std::numeric_limits<std::uint32_t>::max()) {
        pages.pages.push_back(page);
      }
    }
    std::sort(pages.pages.begin(), pages.pages.end());
    pages.pages.erase(std::unique(pages.pages.begin(), pages.pages.end()), pages.pages.end());
    return pages;
  }

 private:
  WalApplication leave_for_sqlite_result(std::string why) {
    leave_for_sqlite(std::move(why));
    return result_;
  }

  bool leave_for_sqlite(std::string why) {
    result_.why_not = std::move(why);
    log_debug("leaving the WAL of the snapshot of {} for SQLite to replay: {}", quoted(source_),
              result_.why_not);
    return false;
  }

  bool read_header() {
    std::array<std::byte, kWalHeader> bytes{};
    if (io::read_at(wal_, bytes, 0, source_, read_failure_) < bytes.size()) {
      return leave_for_sqlite("the WAL is shorter than its header");
    }
    const std::uint32_t magic = load_be32(bytes.data());
    if (!io::is_wal_magic(magic)) return leave_for_sqlite("no WAL magic");
    header_.page_size = load_be32(bytes.data() + 8);
    const std::uint32_t size = header_.page_size;
    if (size < 512 || size > 65536 || (size & (size - 1)) != 0) {
      return leave_for_sqlite("the WAL header names no valid page size");
    }
    header_.seed.big_endian_words = (magic & 1U) != 0;
    header_.seed.add(std::span(bytes).first(24));
    if (!header_.seed.matches(bytes.data() + 24)) {
      return leave_for_sqlite("the WAL header's checksum does not match");
    }
    if (load_be32(bytes.data() + 4) != kWalVersion) return leave_for_sqlite("unknown WAL version");
    std::memcpy(header_.salts.data(), bytes.data() + 16, header_.salts.size());
    std::memcpy(result_.wal_header.data(), bytes.data(), bytes.size());
    return true;
  }

  bool read_database_header() {
    database_size_ = db_.size();
    if (first_look_ != nullptr && first_look_->database_bytes_copied > 0) {
      database_size_ = std::min(database_size_, first_look_->database_bytes_copied);
    }
    std::array<std::byte, 100> bytes{};
    if (database_size_ < bytes.size() || db_.read(bytes, 0) < bytes.size()) {
      return leave_for_sqlite("the database file is shorter than its header");
    }
    database_header_ = bytes;
    return true;
  }

  bool page_sizes_match() {
    if (page_size_of(database_header_) != header_.page_size) {
      return leave_for_sqlite("the WAL's page size differs from the database's");
    }
    // Frame numbers are 32-bit in SQLite's index (and in ours).
    if ((wal_size_ - kWalHeader) / frame_size() > std::numeric_limits<std::uint32_t>::max()) {
      return leave_for_sqlite("the WAL holds more frames than SQLite can number");
    }
    return true;
  }

  // Page 1 as the last commit leaves it must be one SQLite itself writes in WAL mode: its
  // page size the WAL's (else SQLite's checkpoint refuses the WAL as corrupt), and its format
  // bytes both 2 (WAL), or both 1, which the switch to DELETE leaves alone. With mixed bytes
  // SQLite's switch and ours (leave_wal_mode) would not write the same header.
  //
  // And when the header is to leave WAL mode (leave_wal_mode()), our switch must write what
  // SQLite's write transaction would: that transaction trusts the in-header database size
  // (28) only when the header is valid for the change counter (92 equal to 24), and rewrites
  // it otherwise; with auto_vacuum=FULL (52 set, 64 clear) its commit also vacuums away any
  // free pages (36). Ours keeps all of these as they are, so they must be what SQLite keeps.
  bool page1_as_sqlite_writes_it(const DatabaseHeader& page1, std::uint64_t final_size) {
    if (page_size_of(page1) != header_.page_size && wal_size_ > kWalHeader) {
      return leave_for_sqlite("page 1 names another page size than the WAL's");
    }
    const auto write_version = std::to_integer<int>(page1[18]);
    const auto read_version = std::to_integer<int>(page1[19]);
    if (write_version != read_version || (write_version != 1 && write_version != 2)) {
      return leave_for_sqlite("page 1's file format bytes are not SQLite's");
    }
    if (write_version == 2) {
      if (load_be32(page1.data() + 24) != load_be32(page1.data() + 92) ||
          std::uint64_t{load_be32(page1.data() + 28)} * page_size_of(page1) != final_size) {
        return leave_for_sqlite("page 1's database size is not the file's");
      }
      if (load_be32(page1.data() + 52) != 0 && load_be32(page1.data() + 64) == 0 &&
          load_be32(page1.data() + 36) != 0) {
        return leave_for_sqlite("free pages that auto_vacuum=FULL would remove");
      }
    }
    return true;
  }

  // The WAL's bytes [offset, offset + length), or fewer at its end. Valid until the next
  // call.
  std::span<const std::byte> view(std::uint64_t offset, std::size_t length) {
    if (!windows_) {
      // A live WAL is read, never mapped: its owner may cut it under a mapping (SIGBUS).
      windows_.emplace(wal_, wal_size_, window_bytes(), source_, read_failure_,
                       live_ ? io::FileWindows::Access::read : io::FileWindows::Access::map);
    }
    return windows_->view(offset, length);
  }

  [[nodiscard]] std::size_t frame_size() const noexcept { return kFrameHeader + header_.page_size; }
  [[nodiscard]] std::size_t frames_per_window() const noexcept {
    return std::max<std::size_t>(1, kWindow / frame_size());
  }
  [[nodiscard]] std::size_t window_bytes() const noexcept {
    return frames_per_window() * frame_size();
  }
  [[nodiscard]] std::uint64_t frame_offset(std::uint64_t frame) const noexcept {
    return kWalHeader + (frame - 1) * frame_size();
  }

  // Walks the frames from the first, as SQLite's recovery does, up to the first that breaks
  // the chain (a salt from another generation of the WAL, a torn or stale frame).
  FrameScan scan_frames() {
    FrameScan scan;
    scan.page1 = database_header_;
    DatabaseHeader pending = database_header_;  // page 1 as the frames so far leave it
    bool pending_from_wal = false;
    Checksum chain = header_.seed;
    const PageChecksum page_checksum(header_.page_size);
    std::uint64_t frame = 1;
    // Frames committed in this generation are never rewritten: where a first look scanned
    // them, go on from its last committed frame.
    if (first_look_ != nullptr && first_look_->wal_header == result_.wal_header &&
        !first_look_->page_of_frame.empty()) {
      look_used_ = true;
      scan.page_of_frame = first_look_->page_of_frame;
      scan.committed_frames = scan.page_of_frame.size();
      scan.pages_after_commit = first_look_->pages_after_commit;
      if (first_look_->page1) {
        std::memcpy(pending.data(), first_look_->page1->data(), pending.size());
        pending_from_wal = true;
      }
      scan.page1 = pending;
      scan.page1_from_wal = pending_from_wal;
      chain.s0 = first_look_->checksum[0];
      chain.s1 = first_look_->checksum[1];
      scan.chain_at_commit = chain;
      frame = scan.committed_frames + 1;
    }
    for (;;) {
      detail::throw_if_cancelled(cancel_, source_);
      const std::span<const std::byte> window = view(frame_offset(frame), window_bytes());
      const std::size_t whole = window.size() / frame_size();
      for (std::size_t i = 0; i < whole; ++i, ++frame) {
        const std::byte* header = window.data() + i * frame_size();
        const std::uint32_t page = load_be32(header);
        if (page == 0 || std::memcmp(header + 8, header_.salts.data(), header_.salts.size()) != 0) {
          return finish_scan(scan);
        }
        chain.add(std::span(header, 8));
        page_checksum.add_page(chain, header + kFrameHeader);
        if (!chain.matches(header + 16)) return finish_scan(scan);
        scan.page_of_frame.push_back(page);
        if (page == 1) {
          std::memcpy(pending.data(), header + kFrameHeader, pending.size());
          pending_from_wal = true;
        }
        if (const std::uint32_t pages_after = load_be32(header + 4); pages_after != 0) {
          scan.committed_frames = frame;
          scan.pages_after_commit = pages_after;
          scan.page1 = pending;
          scan.page1_from_wal = pending_from_wal;
          scan.chain_at_commit = chain;
        }
      }
      if (whole < frames_per_window()) return finish_scan(scan);
    }
  }

  FrameScan& finish_scan(FrameScan& scan) {
    result_.valid_frames = scan.page_of_frame.size();
    result_.wal_bytes = kWalHeader + result_.valid_frames * frame_size();
    scan.page_of_frame.resize(scan.committed_frames);
    return scan;
  }

  // The latest committed frame of a page.
  struct Latest {
    std::uint32_t page;
    std::uint32_t frame;
  };

  // Frames from this many on are read on two threads.
  static constexpr std::size_t kTwoThreadsFrom = 1024;

  // The frames `latest` lists (in frame order) read straight into their pages in `memory`
  // (the image's own bytes, long enough for each): one preadv per run of consecutive frames,
  // each frame's header into a scratch buffer, so no window is filled and copied again. A
  // WAL cut under the reads ends it (false, result_.cut_while_read).
  bool read_frames_into_pages(std::byte* memory, std::span<const Latest> latest) {
    const std::size_t page_size = header_.page_size;
    const auto read_part = [this, memory, page_size](std::span<const Latest> part) {
      std::array<std::byte, kFrameHeader> header_sink{};
      // (IOV_MAX is 1024 on Linux: two vectors a frame.)
      constexpr std::size_t kFramesPerCall = 512;
      std::vector<iovec> vectors;
      vectors.reserve(2 * kFramesPerCall);
      for (std::size_t next = 0; next < part.size();) {
        detail::throw_if_cancelled(cancel_, source_);
        vectors.clear();
        const std::uint64_t first_frame = part[next].frame;
        std::size_t frames = 0;
        do {
          vectors.push_back({header_sink.data(), kFrameHeader});
          vectors.push_back({memory + (std::uint64_t{part[next].page} - 1) * page_size, page_size});
          ++frames;
          ++next;
        } while (next < part.size() && part[next].frame == first_frame + frames &&
                 frames < kFramesPerCall);
        if (io::read_vectors_at(wal_, vectors, frame_offset(first_frame), source_, read_failure_) <
            frames * frame_size()) {
          return false;
        }
      }
      return true;
    };
    bool complete = true;
    if (latest.size() >= kTwoThreadsFrom && std::thread::hardware_concurrency() > 1) {
      // The pages are distinct: the two halves never write the same bytes.
      const std::span<const Latest> upper = latest.subspan(latest.size() / 2);
      bool upper_complete = false;
      std::exception_ptr failure;
      std::thread helper(detail::with_callers_log_sink([&] {
        try {
          upper_complete = read_part(upper);
        } catch (...) {
          failure = std::current_exception();
        }
      }));
      try {
        complete = read_part(latest.first(latest.size() / 2));
      } catch (...) {
        helper.join();
        throw;
      }
      helper.join();
      if (failure) std::rethrow_exception(failure);
      complete = complete && upper_complete;
    } else {
      complete = read_part(latest);
    }
    if (!complete) {
      // The scan read these frames a moment ago: a checkpoint truncated the WAL since. The
      // caller drops the image.
      result_.cut_while_read = true;
      return leave_for_sqlite("the WAL was cut while it was read");
    }
    result_.pages_written += latest.size();
    return true;
  }

  bool apply(const FrameScan& scan, std::uint64_t final_size) {
    const std::uint64_t page_size = header_.page_size;
    // SQLite's checkpoint refuses (SQLITE_CORRUPT) a WAL whose database would outgrow
    // everything the file and the WAL could fill; let it say so.
    if (database_size_ < final_size &&
        database_size_ + 65536 + scan.committed_frames * page_size < final_size) {
      return leave_for_sqlite("the last commit's database size cannot be filled");
    }
    // The latest committed frame of each page, pages past the final size left out, in the
    // order of the frames: the WAL is then read front to back once more.
    std::vector<Latest> latest;
    latest.reserve(scan.page_of_frame.size());
    // Page 2^32 - 1 is the end marker of SQLite's checkpoint iterator: it never writes it.
    constexpr std::uint32_t kIteratorEnd = std::numeric_limits<std::uint32_t>::max();
    for (std::size_t i = 0; i < scan.page_of_frame.size(); ++i) {
      if (scan.page_of_frame[i] <= scan.pages_after_commit &&
          scan.page_of_frame[i] != kIteratorEnd) {
        latest.push_back({scan.page_of_frame[i], static_cast<std::uint32_t>(i + 1)});
      }
    }
    // In place (std::sort needs no buffer, where stable_sort would take another copy).
    std::sort(latest.begin(), latest.end(), [](const Latest& a, const Latest& b) {
      return a.page < b.page || (a.page == b.page && a.frame < b.frame);
    });
    // Of equal pages, the last one is the latest.
    const auto last_of_each =
        std::unique(latest.rbegin(), latest.rend(),
                    [](const Latest& a, const Latest& b) { return a.page == b.page; });
    latest.erase(latest.begin(), last_of_each.base());
    if (look_used_ && first_look_->written_through_frame > 0) {
      // Written ahead, during the database copy, from this same frame (write_looked_pages()):
      // frames of one generation are never rewritten, and the header is the look's.
      std::erase_if(latest, [look = first_look_](const Latest& entry) {
        return entry.frame <= look->written_through_frame &&
               std::binary_search(look->pages.begin(), look->pages.end(), entry.page);
      });
    }
    std::sort(latest.begin(), latest.end(),
              [](const Latest& a, const Latest& b) { return a.frame < b.frame; });

    std::uint32_t last_page = 0;
    for (const Latest& entry : latest) last_page = std::max(last_page, entry.page);
    if (std::byte* memory = live_ && !latest.empty()
                                ? db_.bytes_extended_to(std::uint64_t{last_page} * page_size)
                                : nullptr) {
      if (!read_frames_into_pages(memory, latest)) return false;
      db_.resize(final_size);
      return true;
    }

    std::vector<const std::byte*> run;
    std::size_t next = 0;
    while (next < latest.size()) {
      detail::throw_if_cancelled(cancel_, source_);
      // One window covers the frames from latest[next] on, as many as fit.
      const std::uint64_t first_frame = latest[next].frame;
      const std::uint64_t window_frames =
          std::min<std::uint64_t>(frames_per_window(), scan.committed_frames - first_frame + 1);
      const auto want = static_cast<std::size_t>(window_frames * frame_size());
      const std::span<const std::byte> window = view(frame_offset(first_frame), want);
      if (window.size() < want) {
        // The scan read these frames a moment ago. Our private file cannot have shrunk; the
        // source's WAL can (a checkpoint truncated it): the pages written so far are then of
        // no use, and the caller drops the image.
        if (live_) {
          result_.cut_while_read = true;
          return leave_for_sqlite("the WAL was cut while it was read");
        }
        io::throw_errno(EIO, read_failure_, source_);
      }
      std::size_t end = next;
      while (end < latest.size() && latest[end].frame < first_frame + window_frames) ++end;
      // Pages at consecutive page numbers go out in one pwritev (a transaction's new pages
      // usually are).
      for (std::size_t i = next; i < end;) {
        run.clear();
        const std::uint32_t first_page = latest[i].page;
        do {
          run.push_back(window.data() + (latest[i].frame - first_frame) * frame_size() +
                        kFrameHeader);
          ++i;
        } while (i < end && latest[i].page == first_page + run.size());
        db_.write_pages(first_page, run, header_.page_size);
      }
      result_.pages_written += end - next;
      next = end;
    }
    // As the checkpoint does: the file ends where the last commit says the database ends.
    db_.resize(final_size);
    return true;
  }

  // What `PRAGMA journal_mode=DELETE` would then do to the checkpointed file: a rollback-mode
  // commit of page 1 with the format bytes (18, 19) set from 2 (WAL) to 1, which, as every
  // such commit, increments the change counter (24), marks the header valid for it (92) and
  // stamps the writing library's version (96). Done here, SQLite finds a rollback-mode file
  // when it opens the copy, and skips creating a -wal, a -shm and a -journal to get there.
  // `header` is page 1's as the file now starts (the last committed page-1 frame, or the
  // database's own when no frame rewrote page 1).
  void leave_wal_mode(DatabaseHeader header) {
    if (header[18] != std::byte{2} || header[19] != std::byte{2}) return;
    header[18] = header[19] = std::byte{1};
    const std::uint32_t counter = load_be32(header.data() + 24) + 1;
    store_be32(header.data() + 24, counter);
    store_be32(header.data() + 92, counter);
    store_be32(header.data() + 96, static_cast<std::uint32_t>(sqlite3_libversion_number()));
    db_.write(header, 0);
    result_.left_wal_mode = true;
  }

  const WalPages* first_look_;
  bool look_used_ = false;  // the scan went on from first_look_ (same generation)
  DatabaseImage& db_;
  int wal_;
  bool live_;
  const char* read_failure_;
  const std::atomic<bool>* cancel_;
  const std::filesystem::path& source_;
  WalHeader header_;
  std::uint64_t database_size_ = 0;
  DatabaseHeader database_header_{};
  std::uint64_t wal_size_ = 0;
  std::optional<io::FileWindows> windows_;  // made once the page size (the window) is known
  WalApplication result_;
};

}  // namespace

void write_run(int fd, std::uint32_t first_page, std::span<const std::byte* const> pages,
               std::size_t page_size, std::span<iovec> vectors,
               const std::filesystem::path& written) {
  std::size_t next = 0;
  while (next < pages.size()) {
    const std::size_t batch = std::min(pages.size() - next, vectors.size());
    for (std::size_t i = 0; i < batch; ++i) {
      // iovec wants a non-const pointer; pwritev only reads through it.
      // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast)
      vectors[i] = {const_cast<std::byte*>(pages[next + i]), page_size};
    }
    const auto offset =
        static_cast<off_t>((std::uint64_t{first_page} + next - 1) * std::uint64_t{page_size});
    const ssize_t n = ::pwritev(fd, vectors.data(), static_cast<int>(batch), offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      io::throw_errno(errno, "cannot write", written);
    }
    // A short write ends inside some page: carry on from the first page not fully written.
    const std::size_t whole_pages = static_cast<std::size_t>(n) / page_size;
    if (whole_pages == 0) {
      io::write_all_at(fd, std::span(pages[next], page_size), static_cast<std::uint64_t>(offset),
                       written);
      next += 1;
    } else {
      next += whole_pages;
    }
  }
}

WalApplication apply_wal(const std::filesystem::path& database, const std::filesystem::path& wal,
                         const std::atomic<bool>* cancel, const std::filesystem::path& source) {
  FileImage image(database, source);
  const io::UniqueFd fd(::open(wal.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) io::throw_errno(errno, "cannot open the WAL of the snapshot of", source);
  WalApplication result = WalApplier(image, fd.get(), false, cancel, source).run();
  // Only once the database is written in full (FileImage::finish() reports a write error
  // some filesystems report only at close) does the WAL that holds the same pages go.
  if (result.applied && ::unlink(wal.c_str()) != 0) {
    io::throw_errno(errno, "cannot remove the WAL of the snapshot of", source);
  }
  return result;
}

WalApplication apply_live_wal(DatabaseImage& database, int wal_fd, const std::atomic<bool>* cancel,
                              const std::filesystem::path& source, const WalPages* first_look) {
  return WalApplier(database, wal_fd, true, cancel, source, first_look).run();
}

WalApplication apply_live_wal(const std::filesystem::path& database, int wal_fd,
                              const std::atomic<bool>* cancel, const std::filesystem::path& source,
                              const WalPages* first_look) {
  FileImage image(database, source);
  return WalApplier(image, wal_fd, true, cancel, source, first_look).run();
}

std::vector<std::uint64_t> wal_offsets_of_looked_pages(const WalPages& look) {
  const std::uint64_t frame_size = kFrameHeader + std::uint64_t{look.page_size};
  // The latest frame of each listed page, up to the look's last commit (as apply() picks).
  std::vector<std::uint64_t> offsets(look.pages.size(), 0);
  for (std::size_t i = 0; i < look.page_of_frame.size(); ++i) {
    const auto at = std::lower_bound(look.pages.begin(), look.pages.end(), look.page_of_frame[i]);
    if (at != look.pages.end() && *at == look.page_of_frame[i]) {
      offsets[static_cast<std::size_t>(at - look.pages.begin())] =
          kWalHeader + i * frame_size + kFrameHeader;
    }
  }
  return offsets;
}

bool write_looked_pages(const WalPages& look, int wal_fd, int database_fd,
                        const std::function<bool(std::uint64_t end)>& copied_through,
                        const std::atomic<bool>* cancel, const std::filesystem::path& source,
                        const std::filesystem::path& database,
                        const std::function<bool(std::uint64_t begin)>& written_by_copy) {
  const std::uint64_t page_size = look.page_size;
  const std::vector<std::uint64_t> offsets = wal_offsets_of_looked_pages(look);
  constexpr std::size_t kRunPages = 64;
  std::vector<std::byte> run(kRunPages * page_size);
  std::size_t next = 0;
  while (next < look.pages.size()) {
    detail::throw_if_cancelled(cancel, source);
    std::size_t count = 1;
    while (next + count < look.pages.size() && count < kRunPages &&
           look.pages[next + count] == look.pages[next] + count) {
      ++count;
    }
    const std::uint64_t begin = (std::uint64_t{look.pages[next]} - 1) * page_size;
    if (!copied_through(begin + count * page_size)) return false;
    // (The pages the copy wrote itself are left out; what remains is written in sub-runs.)
    std::size_t held = 0;
    const auto write_held = [&](std::size_t end) {
      if (held > 0) {
        io::write_all_at(database_fd, std::span(run.data(), held * page_size),
                         begin + (end - held) * page_size, database);
      }
      held = 0;
    };
    for (std::size_t i = 0; i < count; ++i) {
      if (written_by_copy && written_by_copy(begin + i * page_size)) {
        write_held(i);
        continue;
      }
      const std::span<std::byte> page(run.data() + held * page_size, page_size);
      if (offsets[next + i] == 0 || io::read_at(wal_fd, page, offsets[next + i], source,
                                                "cannot read the WAL of") < page_size) {
        return false;
      }
      ++held;
    }
    write_held(count);
    next += count;
  }
  return true;
}

std::optional<WalPages> committed_pages_of_live_wal(int wal_fd, const std::atomic<bool>* cancel,
                                                    const std::filesystem::path& source) {
  // The look writes nothing: no image is touched.
  class NoImage final : public DatabaseImage {
   public:
    std::uint64_t size() override { return 0; }
    std::size_t read(std::span<std::byte> /*buffer*/, std::uint64_t /*offset*/) override {
      return 0;
    }
    void write(std::span<const std::byte> /*bytes*/, std::uint64_t /*offset*/) override {}
    void write_pages(std::uint32_t /*first_page*/, std::span<const std::byte* const> /*pages*/,
                     std::size_t /*page_size*/) override {}
    void resize(std::uint64_t /*size*/) override {}
    void finish() override {}
  } none;
  return WalApplier(none, wal_fd, true, cancel, source).look();
}

}  // namespace sqlite_backup::recover
