// Copying one open file into another by the cheapest means the filesystems allow.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <utility>
#include <vector>

#include "io/file.hpp"

namespace sqlite_backup::io {

// (splice and splice_direct: through a pipe, into the page cache or past it.)
enum class CopyMethod { reflink, splice, splice_direct, copy_file_range, sendfile, read_write };

// How a copy's writes reach the disk.
enum class WriteOut {
  // Through the page cache, written out whenever the kernel chooses (no fsync will follow).
  cached,
  // Through the page cache, each chunk handed to the disk as soon as it is written
  // (sync_file_range, asynchronous), so that a final fsync() has little left to wait for and
  // the copy does not stall behind the kernel's dirty-page throttling.
  early,
  // Around the page cache (O_DIRECT), from the source's cached pages without a copy in
  // between (splice): no memory is taken for the copy's pages, and a final fsync() has only
  // the metadata left. For a copy that is fsynced and then not read again; where the
  // filesystem refuses direct writes it is `early`.
  direct,
};

// Whether a copy may be a reflink clone where the filesystem makes one (btrfs, XFS).
enum class Clone { when_possible, never };

struct CopyOutcome {
  std::uint64_t bytes = 0;
  CopyMethod method = CopyMethod::read_write;
};

// How often, in bytes, a copy and a refresh report their progress (ChunkObserver) unless told
// otherwise.
inline constexpr std::size_t kReportEvery = std::size_t{4} << 20;
inline constexpr std::size_t kRefreshReportEvery = std::size_t{1} << 20;

// Called after each chunk with the bytes copied so far; returning false stops the copy
// (the caller then throws: this layer knows nothing about cancellation).
using ChunkObserver = std::function<bool(std::uint64_t bytes_done)>;

// Bytes [begin, end) of a file.
struct ByteRange {
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

// Ranges a copy may leave out, found by another thread while the copy runs: published once;
// the copy leaves out what of them it has not passed yet. Only the kernel's own copies
// (copy_file_range, sendfile, read/write) leave ranges out: a copy through a pipe (direct
// writes, an overlay) is not given any.
class LateRanges {
 public:
  LateRanges() = default;
  explicit LateRanges(std::vector<ByteRange> ranges) { publish(std::move(ranges)); }
  LateRanges(const LateRanges&) = delete;
  LateRanges& operator=(const LateRanges&) = delete;
  LateRanges(LateRanges&&) = delete;
  LateRanges& operator=(LateRanges&&) = delete;
  ~LateRanges() = default;

  // Sorted, not overlapping. Call at most once.
  void publish(std::vector<ByteRange> ranges) noexcept {
    ranges_ = std::move(ranges);
    published_.store(true, std::memory_order_release);
  }
  // nullptr until published.
  [[nodiscard]] const std::vector<ByteRange>* get() const noexcept {
    return published_.load(std::memory_order_acquire) ? &ranges_ : nullptr;
  }

 private:
  std::vector<ByteRange> ranges_;
  std::atomic<bool> published_{false};
};

// Pages to lay over the bytes of a copy, found by another thread while the copy runs:
// published once; the copy lays over its bytes those of the pages it has not passed yet, and
// records from where (taken_from()). A page's `size` bytes at `at` in the copy come from
// `from` in the file `fd` instead of the source.
class LateOverlay {
 public:
  struct Page {
    std::uint64_t at = 0;
    std::uint64_t from = 0;
  };

  LateOverlay() = default;
  LateOverlay(const LateOverlay&) = delete;
  LateOverlay& operator=(const LateOverlay&) = delete;
  LateOverlay(LateOverlay&&) = delete;
  LateOverlay& operator=(LateOverlay&&) = delete;
  ~LateOverlay() = default;

  // `pages` sorted by `at`, not overlapping. Call at most once (a copy that has ended by then
  // takes none of them).
  void publish(UniqueFd fd, std::size_t size, std::vector<Page> pages) noexcept {
    fd_ = std::move(fd);
    size_ = size;
    pages_ = std::move(pages);
    published_.store(true, std::memory_order_release);
  }
  [[nodiscard]] bool published() const noexcept {
    return published_.load(std::memory_order_acquire);
  }
  [[nodiscard]] int fd() const noexcept { return fd_.get(); }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] const std::vector<Page>& pages() const noexcept { return pages_; }

  // The copy's offset from which every page that lies wholly in the copied bytes was laid
  // over; max when the copy never took the pages. Set before the copy reports passing it.
  [[nodiscard]] std::uint64_t taken_from() const noexcept { return taken_from_.load(); }
  void take_from(std::uint64_t offset) noexcept { taken_from_.store(offset); }
  // A page read short (its file cut meanwhile), or a page the copy passed without laying it
  // (a chunk that began inside it): the pages laid over prove nothing then.
  [[nodiscard]] bool read_short() const noexcept { return read_short_.load(); }
  void note_read_short() noexcept { read_short_.store(true); }

 private:
  UniqueFd fd_;
  std::size_t size_ = 0;
  std::vector<Page> pages_;
  std::atomic<bool> published_{false};
  std::atomic<std::uint64_t> taken_from_{~std::uint64_t{0}};
  std::atomic<bool> read_short_{false};
};

// Copies everything from the start of `source_fd` to its end of file (the end as it
// is when reached, not a size taken earlier: a growing file is read to its new end) into the
// empty file `destination_fd`. Tries a reflink clone first (btrfs, XFS: the whole file
// shares extents, at once), then (for WriteOut::direct, or with an `overlay`) splice through
// a pipe, then copy_file_range, sendfile and read/write. `write_out` says how the writes
// reach the disk. Both descriptors must be at offset 0 (some methods use their positions,
// splice explicit offsets). `skip` (offsets from the start of the file) are ranges the
// caller will write itself: once published, what of them the copy has not passed is neither
// read nor written, and stays a hole in the copy, which still ends where the source ended.
// Callers give `skip` only to a cached or early copy without an overlay: with `skip`, the
// copy is the kernel's own (no pipe), so direct writes would silently go through the page
// cache and an overlay would go untaken. `overlay` are pages to lay over the copy's bytes
// (see LateOverlay); only the splice copy takes them (a clone, or a filesystem refusing
// splice, leaves them to their publisher, which sees so in LateOverlay::taken_from()). A
// clone ignores both; with Clone::never none is tried. `observer` is called about every
// `report_every` bytes (the splice copy: every 1 MiB), and once more at the end.
CopyOutcome copy_file_contents(int source_fd, const std::filesystem::path& source_path,
                               int destination_fd, const std::filesystem::path& destination_path,
                               const ChunkObserver& observer = {},
                               WriteOut write_out = WriteOut::cached,
                               const LateRanges* skip = nullptr, LateOverlay* overlay = nullptr,
                               Clone clone = Clone::when_possible,
                               std::size_t report_every = kReportEvery);

struct RefreshOutcome {
  std::uint64_t bytes = 0;            // bytes of the source read (its size as it ended)
  std::uint64_t bytes_rewritten = 0;  // bytes of the copy that differed and were rewritten
};

// Brings an earlier copy up to date: reads the whole source to its end of file, compares it
// chunk by chunk with `copy_fd`, rewrites in place only the chunks that differ, and cuts the
// copy to the source's length. Afterwards every byte of the copy is what the source held
// when that byte was read, exactly as after a fresh copy; and when nothing had to be
// rewritten, the pass also proved the earlier copy equal to the source at each point it
// read. Costs two reads instead of a write of the whole file.
RefreshOutcome refresh_file_contents(int source_fd, const std::filesystem::path& source_path,
                                     int copy_fd, const std::filesystem::path& copy_path,
                                     const ChunkObserver& observer = {},
                                     std::size_t report_every = kRefreshReportEvery);

// Pages of a database file to read again (numbered from 1, `page_size` bytes each, sorted),
// and the offset from which everything to the end of the file is read again.
struct PagesToReadAgain {
  std::uint32_t page_size = 0;
  std::span<const std::uint32_t> pages;
  std::uint64_t tail_from = 0;
};

// Brings an earlier copy up to date where only `again` may differ: reads those pages and the
// tail from the source into the same places of `copy_fd` (pages at or past the source's end
// are left out), and cuts the copy to the source's length as the tail's read found it. The
// rest of the copy is left as it was. `outcome.bytes` is the source's length; the bytes read
// go to `observer` every 128 KiB or so. Nothing is compared: every byte read is written.
RefreshOutcome read_pages_again(int source_fd, const std::filesystem::path& source_path,
                                int copy_fd, const std::filesystem::path& copy_path,
                                const PagesToReadAgain& again, const ChunkObserver& observer = {});

const char* to_string(CopyMethod method) noexcept;

}  // namespace sqlite_backup::io
