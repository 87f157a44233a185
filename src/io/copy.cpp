#include "io/copy.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <span>
#include <utility>
#include <vector>

#include "error_internal.hpp"
#include "io/file.hpp"

namespace sqlite_backup::io {
namespace {

// Large enough that the syscall overhead vanishes, small enough that progress, cancellation
// and the caller's look at the source between chunks (the snapshot stage watches for a
// commit) come every millisecond or so from the page cache.
constexpr std::size_t kChunk = kReportEvery;

bool is_unsupported(int error) noexcept {
  // Errors that mean "this method does not apply here", not "the data cannot be read".
  return error == ENOSYS || error == EXDEV || error == EINVAL ||
         error == EOPNOTSUPP ||  // (ENOTSUP is the same value on Linux)
         error == ETXTBSY || error == EPERM || error == EBADF;
}

bool report(const ChunkObserver& observer, std::uint64_t done) {
  return !observer || observer(done);
}

// Best effort: a filesystem without it (or an error) only means the final fsync waits longer.
void start_writeback_of(int fd, std::uint64_t from, std::uint64_t to) {
  if (to > from) {
    ::sync_file_range(fd, static_cast<off64_t>(from), static_cast<off64_t>(to - from),
                      SYNC_FILE_RANGE_WRITE);
  }
}

// A destination the caller opened non-blocking (a pipe it shares with a process that set
// O_NONBLOCK, say) refuses a write while it is full. Waits until it takes one, a tenth of a
// second at most, so that the caller's progress callback (and cancellation) still runs while
// the reader is slow.
void wait_until_writable(int fd) noexcept {
  pollfd entry{fd, POLLOUT, 0};
  (void)::poll(&entry, 1, 100);
}

// The read/write error can come from either side; tell which by retrying the read alone.
[[noreturn]] void throw_copy_error(int error, const std::filesystem::path& source,
                                   const std::filesystem::path& destination) {
  // (A closed pipe or a full non-blocking one, too: reading a regular file gives neither.)
  if (error == ENOSPC || error == EDQUOT || error == EFBIG || error == EROFS || error == EPIPE ||
      error == EAGAIN) {
    throw_errno(error, "cannot write", destination);
  }
  throw_errno(error, "cannot copy " + quoted(source) + " to", destination);
}

}  // namespace

const char* to_string(CopyMethod method) noexcept {
  switch (method) {
    case CopyMethod::reflink:
      return "reflink";
    case CopyMethod::splice:
      return "splice";
    case CopyMethod::splice_direct:
      return "splice to direct writes";
    case CopyMethod::copy_file_range:
      return "copy_file_range";
    case CopyMethod::sendfile:
      return "sendfile";
    case CopyMethod::read_write:
      return "read/write";
  }
  return "?";
}

namespace {

// Where a copy stands in its source (`done`, skipped bytes included), moving both descriptors
// past the ranges it leaves out (see copy_file_contents). Every method copies at the
// descriptors' positions.
class CopyCursor {
 public:
  CopyCursor(int source_fd, const std::filesystem::path& source_path, int destination_fd,
             const std::filesystem::path& destination_path, const LateRanges* skip)
      : source_fd_(source_fd),
        source_path_(source_path),
        destination_fd_(destination_fd),
        destination_path_(destination_path),
        late_(skip) {}

  // The bytes the next chunk may take at done(), at most `limit`, after moving past any range
  // to leave out that starts there.
  std::size_t next_chunk(std::size_t limit) {
    if (late_ != nullptr) {
      if (const std::vector<ByteRange>* published = late_->get()) {
        late_ = nullptr;
        skip_ = *published;
        // What the copy has passed stays copied.
        while (next_skip_ < skip_.size() && skip_[next_skip_].end <= done_) ++next_skip_;
      }
    }
    bool moved = false;
    while (next_skip_ < skip_.size() && skip_[next_skip_].begin <= done_) {
      done_ = std::max(done_, skip_[next_skip_++].end);
      moved = true;
    }
    if (moved) {
      skipped_to_ = done_;
      seek(source_fd_, source_path_);
      seek(destination_fd_, destination_path_);
    }
    if (next_skip_ == skip_.size()) return limit;
    return static_cast<std::size_t>(
        std::min<std::uint64_t>(limit, skip_[next_skip_].begin - done_));
  }
  std::uint64_t advance(std::uint64_t copied) { return done_ += copied; }
  [[nodiscard]] std::uint64_t done() const noexcept { return done_; }

  // A last range left out up to the source's end leaves the copy short: it is extended (as a
  // hole) to where the source ended.
  void finish() {
    if (skipped_to_ > 0 && stat_fd(destination_fd_, destination_path_).size < skipped_to_ &&
        ::ftruncate(destination_fd_, static_cast<off_t>(skipped_to_)) != 0) {
      throw_errno(errno, "cannot write", destination_path_);
    }
  }

 private:
  void seek(int fd, const std::filesystem::path& path) const {
    if (::lseek(fd, static_cast<off_t>(done_), SEEK_SET) < 0) {
      throw_errno(errno, "cannot seek", path);
    }
  }

  int source_fd_;
  const std::filesystem::path& source_path_;
  int destination_fd_;
  const std::filesystem::path& destination_path_;
  const LateRanges* late_;  // until its ranges are published
  std::span<const ByteRange> skip_;
  std::size_t next_skip_ = 0;
  std::uint64_t done_ = 0;
  std::uint64_t skipped_to_ = 0;
};

// The last resort: read() and write() through a buffer. `after_chunk` is called about every
// `report_every` bytes, and once more at the end.
std::uint64_t copy_by_read_write(CopyCursor& cursor, int source_fd,
                                 const std::filesystem::path& source_path, int destination_fd,
                                 const std::filesystem::path& destination_path,
                                 const std::function<bool(std::uint64_t)>& after_chunk,
                                 std::size_t report_every) {
  constexpr std::size_t kBuffer = std::size_t{1} << 20;
  std::vector<std::byte> buffer(kBuffer);
  std::uint64_t since_report = 0;
  for (;;) {
    const ssize_t n = ::read(source_fd, buffer.data(), cursor.next_chunk(kBuffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, "cannot read", source_path);
    }
    if (n == 0) break;
    write_all(destination_fd, std::span(buffer.data(), static_cast<std::size_t>(n)),
              destination_path);
    cursor.advance(static_cast<std::uint64_t>(n));
    since_report += static_cast<std::uint64_t>(n);
    if (since_report >= report_every) {
      since_report = 0;
      if (!after_chunk(cursor.done())) break;
    }
  }
  cursor.finish();
  // The last, partial chunk is reported too: callers look at the source between chunks.
  if (since_report > 0) after_chunk(cursor.done());
  return cursor.done();
}

// Puts a descriptor's status flags back as they were, however the scope ends: restore() on
// the way out that can report a failure, the destructor (which cannot) on every other.
class RestoredFlags {
 public:
  RestoredFlags(int fd, int flags) noexcept : fd_(fd), flags_(flags) {}
  RestoredFlags(const RestoredFlags&) = delete;
  RestoredFlags& operator=(const RestoredFlags&) = delete;
  RestoredFlags(RestoredFlags&&) = delete;
  RestoredFlags& operator=(RestoredFlags&&) = delete;
  ~RestoredFlags() {
    if (fd_ >= 0) ::fcntl(fd_, F_SETFL, flags_);
  }

  // Throws (naming `path`) when the flags cannot be put back: a descriptor left with O_DIRECT
  // would refuse the unaligned writes that follow the copy.
  void restore(const std::filesystem::path& path) {
    const int fd = std::exchange(fd_, -1);
    if (::fcntl(fd, F_SETFL, flags_) != 0) throw_errno(errno, "cannot write", path);
  }

 private:
  int fd_;
  int flags_;
};

// A buffer aligned as direct I/O wants it, for the chunks that pages are laid over.
struct AlignedFree {
  void operator()(std::byte* bytes) const noexcept {
    ::operator delete (bytes, std::align_val_t{kDirectAlignment});
  }
  static constexpr std::size_t kDirectAlignment = 4096;
};
using AlignedBuffer = std::unique_ptr<std::byte, AlignedFree>;

AlignedBuffer aligned_buffer(std::size_t size) {
  return AlignedBuffer(static_cast<std::byte*>(
      ::operator new (size, std::align_val_t{AlignedFree::kDirectAlignment})));
}

// The copy through a pipe: the source's pages go from its page cache into a pipe (as
// references, not copies) and from there to the destination, in 1 MiB chunks.
// With `direct` (WriteOut::direct) the writes go past the destination's page cache
// (O_DIRECT). So the copy copies nothing in memory and takes no memory for pages nobody
// reads again, and the disk is written during the copy rather than at the fsync. On a
// 1 GiB file: 0.38-0.41 s with 50-70 ms of CPU, against 0.6-0.7 s for a copy through the
// page cache and its fsync (up to 3 s where the page cache's new pages had first to come
// back from the virtual machine's host). Without it they go into the page cache, as
// copy_file_range's would; the pipe is then there for `overlay`.
// Once `overlay` is published, its pages are laid into the chunks: a page written apart
// afterwards would be one small write at the fsync (26,000 of them for a 104 MiB WAL), and a
// second writer of the file, where laid over it rides in the chunk's write.
// (Into the page cache, the WAL's pages are spliced from its file too. A direct write does not
// take them so: they sit at offsets no direct write accepts as memory; each is read into
// aligned memory and put into the pipe from there.)
class PipeCopy {
 public:
  // Chunks of 1 MiB: the most a pipe may hold for an unprivileged process (fs.pipe-max-size).
  // A direct copy writes each in one write (smaller direct writes were slower than the page
  // cache: 1.3 s per GiB with the default 64 KiB); a cached one in 64 KiB pieces (write_size).
  static constexpr std::size_t kChunk = std::size_t{1} << 20;

  PipeCopy(int source_fd, const std::filesystem::path& source_path, int destination_fd,
           const std::filesystem::path& destination_path, LateOverlay* overlay, int flags,
           bool direct)
      : source_fd_(source_fd),
        source_path_(source_path),
        destination_fd_(destination_fd),
        destination_path_(destination_path),
        overlay_(overlay),
        flags_(flags),
        direct_(direct) {}

  // false where a pipe of kChunk cannot be had.
  bool open_pipe() {
    std::array<int, 2> ends{};
    if (::pipe2(ends.data(), O_CLOEXEC) != 0) return false;
    pipe_read_ = UniqueFd(ends[0]);
    pipe_write_ = UniqueFd(ends[1]);
    return ::fcntl(pipe_write_.get(), F_SETPIPE_SZ, static_cast<int>(kChunk)) >=
           static_cast<int>(kChunk);
  }

  // Copies up to `want` bytes at `offset`; returns the count (0 at end of file), or -1 when
  // splice is refused on the first chunk.
  ssize_t chunk(std::uint64_t offset, std::size_t want, bool first) {
    // (Never on the first chunk: it proves that the source can be spliced at all, and the
    // copy falls back otherwise. An empty overlay is not taken.)
    if (!first && overlay_ != nullptr && overlay_->taken_from() == kNotTaken &&
        overlay_->published() && !overlay_->pages().empty()) {
      overlay_->take_from(offset);
      const auto& pages = overlay_->pages();
      next_page_ =
          static_cast<std::size_t>(std::lower_bound(pages.begin(), pages.end(), offset,
                                                    [](const LateOverlay::Page& page,
                                                       std::uint64_t at) { return page.at < at; }) -
                                   pages.begin());
    }
    if (overlay_ != nullptr && overlay_->taken_from() != kNotTaken) {
      const std::size_t n = overlay_->size() % memory_page_ == 0
                                ? spliced_laid_over_chunk(offset, want)
                                : laid_over_chunk(offset, want);
      // Pages are laid only where they start within a chunk, so a chunk that starts inside a
      // page (the previous one ended at the source's end, mid-page, and the file grew) passes
      // one without laying it: the copy's claim to have laid every page from taken_from() on
      // is then void, as after a short read.
      if (n > 0 && offset % overlay_->size() != 0) overlay_->note_read_short();
      return static_cast<ssize_t>(n);
    }
    return spliced_chunk(offset, want, first);
  }

 private:
  static constexpr std::uint64_t kNotTaken = ~std::uint64_t{0};

  ssize_t spliced_chunk(std::uint64_t offset, std::size_t want, bool first) {
    auto in = static_cast<loff_t>(offset);
    ssize_t n = 0;
    do {
      n = ::splice(source_fd_, &in, pipe_write_.get(), nullptr, want, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (first && is_unsupported(errno)) return -1;
      throw_errno(errno, "cannot read", source_path_);
    }
    auto out = static_cast<loff_t>(offset);
    for (auto left = static_cast<std::size_t>(n); left > 0;) {
      const ssize_t m =
          ::splice(pipe_read_.get(), nullptr, destination_fd_, &out, write_size(left), 0);
      if (m < 0) {
        if (write_may_retry(errno)) continue;
        // A destination that takes no splice at all: nothing is written yet, so the next
        // method copies the file instead.
        if (first && static_cast<ssize_t>(left) == n && is_unsupported(errno)) return -1;
        throw_copy_error(errno, source_path_, destination_path_);
      }
      if (m == 0) wrote_nothing();
      left -= static_cast<std::size_t>(m);
    }
    return n;
  }

  // A splice into the destination that moved nothing from a pipe holding bytes: repeating it
  // would never end.
  [[noreturn]] void wrote_nothing() const {
    throw_copy_error(EIO, source_path_, destination_path_);
  }

  // A chunk with pages laid over, still without copying the source's bytes: the runs between
  // the pages are spliced from the source's page cache, each page is read into memory of its
  // own that then goes into the pipe as it is (vmsplice), and the pipe goes out in one
  // write. For pages of whole memory pages (SQLite's default 4096 bytes), which keep every
  // piece of the pipe aligned for a direct write and a chunk within the pipe's slots.
  // (If the pipe fills all the same, what it holds goes out first.)
  std::size_t spliced_laid_over_chunk(std::uint64_t offset, std::size_t want) {
    if (!buffer_) buffer_ = aligned_buffer(kChunk);
    const auto& pages = overlay_->pages();
    const std::size_t size = overlay_->size();
    // Pages are laid only within the source as it is now: a copy never grows past its source.
    const std::uint64_t end = std::min(offset + want, stat_fd(source_fd_, source_path_).size);
    while (next_page_ < pages.size() && pages[next_page_].at < offset) ++next_page_;
    out_ = offset;
    at_ = offset;
    std::size_t used = 0;  // of buffer_, handed to the pipe (it reads the memory only later)
    while (at_ < end) {
      // (A page reaching past `end` is not laid: the source's bytes go there.)
      if (next_page_ < pages.size() && pages[next_page_].at == at_ && at_ + size <= end) {
        const LateOverlay::Page& page = pages[next_page_++];
        if (!direct_) {
          // Into the page cache, the WAL's cached page goes into the pipe as it is: one call,
          // no copy (alignment matters only to direct writes). A page read short is then
          // completed from the source below.
          if (splice_into_pipe(overlay_->fd(), page.from, size, "cannot read the WAL of") == size) {
            continue;
          }
          overlay_->note_read_short();
          continue;
        }
        const std::span<std::byte> memory(buffer_.get() + used, size);
        if (read_at(overlay_->fd(), memory, page.from, source_path_, "cannot read the WAL of") ==
            size) {
          put_into_pipe(memory);
          used += size;
          continue;
        }
        // (The source's bytes then; what the overlay proves is void, see LateOverlay.)
        overlay_->note_read_short();
      }
      while (next_page_ < pages.size() && pages[next_page_].at <= at_) ++next_page_;
      const std::uint64_t until =
          next_page_ < pages.size() ? std::min(end, pages[next_page_].at) : end;
      const auto bytes = static_cast<std::size_t>(until - at_);
      if (splice_from_source(bytes) < bytes) break;
    }
    drain_pipe();
    return static_cast<std::size_t>(at_ - offset);
  }

  // Splices `bytes` of the source at at_ into the pipe; fewer only at its end of file.
  std::size_t splice_from_source(std::size_t bytes) {
    return splice_into_pipe(source_fd_, at_, bytes, "cannot read");
  }

  // Splices `bytes` of `fd` from `from` into the pipe, as the copy's bytes from at_; fewer
  // only at the file's end. Errors name the source, after `operation`.
  std::size_t splice_into_pipe(int fd, std::uint64_t from, std::size_t bytes,
                               const char* operation) {
    std::size_t done = 0;
    unsigned flags = SPLICE_F_NONBLOCK;
    while (done < bytes) {
      auto in = static_cast<loff_t>(from + done);
      const ssize_t n = ::splice(fd, &in, pipe_write_.get(), nullptr, bytes - done, flags);
      flags = SPLICE_F_NONBLOCK;
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
          flags = make_room();
          continue;
        }
        throw_errno(errno, operation, source_path_);
      }
      if (n == 0) break;
      done += static_cast<std::size_t>(n);
      at_ += static_cast<std::uint64_t>(n);
    }
    return done;
  }

  // (vmsplice only reads `memory`; iovec's pointer is not const.)
  void put_into_pipe(std::span<std::byte> memory) {
    unsigned flags = SPLICE_F_NONBLOCK;
    while (!memory.empty()) {
      iovec vector{memory.data(), memory.size()};
      const ssize_t n = ::vmsplice(pipe_write_.get(), &vector, 1, flags);
      flags = SPLICE_F_NONBLOCK;
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
          flags = make_room();
          continue;
        }
        throw_errno(errno, "cannot write", destination_path_);
      }
      memory = memory.subspan(static_cast<std::size_t>(n));
      at_ += static_cast<std::uint64_t>(n);
    }
  }

  // After EAGAIN: a pipe holding bytes is written out and the next try stays non-blocking.
  // An empty pipe cannot have been full, so that EAGAIN came from elsewhere (the source, on
  // some kernels): the next try blocks, which waits only for the source. Returns its flags.
  unsigned make_room() {
    if (at_ > out_) {
      drain_pipe();
      return SPLICE_F_NONBLOCK;
    }
    return 0;
  }

  // Writes what the pipe holds, bytes [out_, at_) of the copy.
  void drain_pipe() {
    auto out = static_cast<loff_t>(out_);
    while (static_cast<std::uint64_t>(out) < at_) {
      const ssize_t m =
          ::splice(pipe_read_.get(), nullptr, destination_fd_, &out,
                   write_size(static_cast<std::size_t>(at_ - static_cast<std::uint64_t>(out))), 0);
      if (m < 0) {
        if (write_may_retry(errno)) continue;
        throw_copy_error(errno, source_path_, destination_path_);
      }
      if (m == 0) wrote_nothing();
    }
    out_ = at_;
  }

  std::size_t laid_over_chunk(std::uint64_t offset, std::size_t want) {
    if (!buffer_) buffer_ = aligned_buffer(kChunk);
    const std::size_t n = read_at(source_fd_, std::span(buffer_.get(), want), offset, source_path_);
    const auto& pages = overlay_->pages();
    const std::size_t size = overlay_->size();
    // (Pages reaching past the bytes read are not laid over: whoever published them writes
    // them apart.)
    while (next_page_ < pages.size() && pages[next_page_].at < offset) ++next_page_;
    for (; next_page_ < pages.size() && pages[next_page_].at + size <= offset + n; ++next_page_) {
      const LateOverlay::Page& page = pages[next_page_];
      const std::span<std::byte> into(buffer_.get() + (page.at - offset), size);
      if (read_at(overlay_->fd(), into, page.from, source_path_, "cannot read the WAL of") < size) {
        overlay_->note_read_short();
      }
    }
    write_at(std::span<const std::byte>(buffer_.get(), n), offset);
    return n;
  }

  void write_at(std::span<const std::byte> bytes, std::uint64_t offset) {
    while (!bytes.empty()) {
      const ssize_t n = ::pwrite(destination_fd_, bytes.data(), write_size(bytes.size()),
                                 static_cast<off_t>(offset));
      if (n < 0) {
        if (write_may_retry(errno)) continue;
        throw_copy_error(errno, source_path_, destination_path_);
      }
      bytes = bytes.subspan(static_cast<std::size_t>(n));
      offset += static_cast<std::uint64_t>(n);
    }
  }

  // How much of `bytes` one write takes: all of it directly; 64 KiB through the page cache,
  // as the kernel's own copy (copy_file_range, sendfile) writes. A larger write has the
  // filesystem take larger folios for it (ext4), which this virtual machine served from
  // memory returned to its host: 1 MiB writes copied 1 GiB in 1.1-1.5 s, 64 KiB ones in 0.3 s.
  [[nodiscard]] std::size_t write_size(std::size_t bytes) const noexcept {
    constexpr std::size_t kCachedWrite = std::size_t{64} << 10;
    return direct_ ? bytes : std::min(bytes, kCachedWrite);
  }

  // After a failed write into the destination: whether to try again, as after an interrupt,
  // or after a length or offset the device cannot take directly (the rest then goes through
  // the page cache).
  bool write_may_retry(int error) {
    if (error == EINTR) return true;
    if (error != EINVAL || !direct_) return false;
    leave_direct();
    return true;
  }

  // A length or offset the device cannot take directly (a file that does not end on a
  // sector boundary): the rest goes through the page cache.
  void leave_direct() {
    direct_ = false;
    if (::fcntl(destination_fd_, F_SETFL, flags_) != 0) {
      throw_errno(errno, "cannot write", destination_path_);
    }
  }

  int source_fd_;
  const std::filesystem::path& source_path_;
  int destination_fd_;
  const std::filesystem::path& destination_path_;
  LateOverlay* overlay_;
  int flags_;
  bool direct_;
  UniqueFd pipe_read_;
  UniqueFd pipe_write_;
  AlignedBuffer buffer_;
  std::size_t next_page_ = 0;
  std::uint64_t out_ = 0;  // (spliced_laid_over_chunk: where the pipe's bytes begin in the copy,
  std::uint64_t at_ = 0;   // and where they end)
  const std::size_t memory_page_ = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
};

// The copy through a pipe (PipeCopy); false, with nothing copied and the destination's
// descriptor as it came, where the filesystems or limits refuse it.
bool copy_through_pipe(int source_fd, const std::filesystem::path& source_path, int destination_fd,
                       const std::filesystem::path& destination_path,
                       const std::function<bool(std::uint64_t)>& after_chunk, LateOverlay* overlay,
                       bool direct, CopyOutcome& outcome) {
  const int flags = ::fcntl(destination_fd, F_GETFL);
  if (flags < 0 || (direct && ::fcntl(destination_fd, F_SETFL, flags | O_DIRECT) != 0)) {
    return false;
  }
  // However this ends, the descriptor leaves as it came.
  RestoredFlags restore(destination_fd, flags);
  PipeCopy copy(source_fd, source_path, destination_fd, destination_path, overlay, flags, direct);
  if (!copy.open_pipe()) return false;
  std::uint64_t done = 0;
  for (bool first = true;; first = false) {
    const ssize_t n = copy.chunk(done, PipeCopy::kChunk, first);
    if (n < 0) return false;
    done += static_cast<std::uint64_t>(n);
    if (n == 0 || !after_chunk(done)) break;
  }
  restore.restore(destination_path);
  // (Splice takes explicit offsets; the other methods leave the position at the end.)
  if (::lseek(destination_fd, static_cast<off_t>(done), SEEK_SET) < 0) {
    throw_errno(errno, "cannot seek", destination_path);
  }
  outcome.method = direct ? CopyMethod::splice_direct : CopyMethod::splice;
  outcome.bytes = done;
  return true;
}

}  // namespace

CopyOutcome copy_file_contents(int source_fd, const std::filesystem::path& source_path,
                               int destination_fd, const std::filesystem::path& destination_path,
                               const ChunkObserver& observer, WriteOut write_out,
                               const LateRanges* skip, LateOverlay* overlay, Clone clone,
                               std::size_t report_every) {
  CopyOutcome outcome;
  std::uint64_t written_back = 0;
  const std::function<bool(std::uint64_t)> after_chunk = [&](std::uint64_t done) {
    // (After direct writes there is nothing to start; only a tail written through the page
    // cache, or a direct copy the filesystem refused, leaves pages to write out.)
    if (write_out != WriteOut::cached) {
      start_writeback_of(destination_fd, written_back, done);
      written_back = done;
    }
    return report(observer, done);
  };

  // A clone shares the source's extents as they are at this instant: the cheapest copy there
  // is, and a point-in-time one, since the kernel locks both inodes while it clones.
  if (clone == Clone::when_possible && ::ioctl(destination_fd, FICLONE, source_fd) == 0) {
    outcome.method = CopyMethod::reflink;
    outcome.bytes = stat_fd(destination_fd, destination_path).size;
    if (::lseek(destination_fd, 0, SEEK_END) < 0) {
      throw_errno(errno, "cannot seek", destination_path);
    }
    report(observer, outcome.bytes);
    return outcome;
  }

  // (With pages to lay over, the pipe even where the writes go through the page cache: they
  // ride in the copy's own writes, where written apart by another thread they would contend
  // with the copy for the file's lock, and on ext4 the spinning waiter burned a core; at
  // 200 MiB the durable copy took 0.12 s that way against 0.08 s.)
  if (skip == nullptr && (write_out == WriteOut::direct || overlay != nullptr) &&
      copy_through_pipe(source_fd, source_path, destination_fd, destination_path, after_chunk,
                        overlay, write_out == WriteOut::direct, outcome)) {
    return outcome;
  }
  // The two in-kernel methods share one loop: chunk by chunk to end of file; a method the
  // filesystems refuse on the first chunk hands over to the next one.
  CopyCursor cursor(source_fd, source_path, destination_fd, destination_path, skip);
  const auto in_kernel = [&](CopyMethod method, auto&& copy_chunk) -> bool {
    const auto finish = [&] {
      cursor.finish();
      outcome.method = method;
      outcome.bytes = cursor.done();
      return true;
    };
    for (bool first = true;; first = false) {
      const ssize_t n = copy_chunk(cursor.next_chunk(std::min(kChunk, report_every)));
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
          // (Only the destination can be full: the source is a regular file.)
          wait_until_writable(destination_fd);
          if (!after_chunk(cursor.done())) return finish();
          continue;
        }
        if (first && is_unsupported(errno)) return false;
        throw_copy_error(errno, source_path, destination_path);
      }
      if (n == 0 || !after_chunk(cursor.advance(static_cast<std::uint64_t>(n)))) return finish();
    }
  };
  if (in_kernel(CopyMethod::copy_file_range, [&](std::size_t chunk) {
        return ::copy_file_range(source_fd, nullptr, destination_fd, nullptr, chunk, 0);
      })) {
    return outcome;
  }
  if (in_kernel(CopyMethod::sendfile, [&](std::size_t chunk) {
        return ::sendfile(destination_fd, source_fd, nullptr, chunk);
      })) {
    return outcome;
  }
  outcome.method = CopyMethod::read_write;
  outcome.bytes = copy_by_read_write(cursor, source_fd, source_path, destination_fd,
                                     destination_path, after_chunk, report_every);
  return outcome;
}

RefreshOutcome refresh_file_contents(int source_fd, const std::filesystem::path& source_path,
                                     int copy_fd, const std::filesystem::path& copy_path,
                                     const ChunkObserver& observer, std::size_t report_every) {
  // A small buffer keeps peak memory flat whatever the database size and limits what one
  // difference costs to rewrite; the observer is told after each.
  const std::size_t kBuffer = report_every;
  std::vector<std::byte> source_buffer(kBuffer);
  const std::uint64_t copy_size = stat_fd(copy_fd, copy_path).size;
  // What the copy holds is mapped rather than read into a buffer first (that read was a
  // third of a refresh's time); rewrites only touch blocks already compared.
  FileWindows copy(copy_fd, copy_size, kBuffer, copy_path);
  RefreshOutcome outcome;
  for (;;) {
    const std::uint64_t offset = outcome.bytes;
    const std::size_t n =
        read_at(source_fd, std::span(source_buffer.data(), kBuffer), offset, source_path);
    const std::span<const std::byte> held = copy.view(offset, n);
    const std::size_t m = held.size();
    // (An empty window has no address: memcmp may not be given it, even for no bytes.)
    if (m != n || (n != 0 && std::memcmp(source_buffer.data(), held.data(), n) != 0)) {
      // A writer changes a few pages here and there: rewrite only the runs of 4 KiB blocks
      // that differ (SQLite pages are 512 B to 64 KiB and aligned, so 4 KiB blocks hold
      // whole small pages or parts of large ones; either way only changed bytes move).
      constexpr std::size_t kBlock = 4096;
      const auto differs = [&](std::size_t from) {
        const std::size_t len = std::min(kBlock, n - from);
        return from + len > m ||
               std::memcmp(source_buffer.data() + from, held.data() + from, len) != 0;
      };
      std::size_t at = 0;
      while (at < n) {
        if (!differs(at)) {
          at += kBlock;
          continue;
        }
        std::size_t end = at;
        while (end < n && differs(end)) end += kBlock;
        end = std::min(end, n);
        write_all_at(copy_fd, std::span<const std::byte>(source_buffer.data() + at, end - at),
                     offset + at, copy_path);
        outcome.bytes_rewritten += end - at;
        at = end;
      }
    }
    outcome.bytes += n;
    if (n < kBuffer) break;
    if (!report(observer, outcome.bytes)) return outcome;
  }
  if (copy_size > outcome.bytes) {
    if (::ftruncate(copy_fd, static_cast<off_t>(outcome.bytes)) != 0) {
      throw_errno(errno, "cannot truncate", copy_path);
    }
    outcome.bytes_rewritten += copy_size - outcome.bytes;
  }
  report(observer, outcome.bytes);
  return outcome;
}

RefreshOutcome read_pages_again(int source_fd, const std::filesystem::path& source_path,
                                int copy_fd, const std::filesystem::path& copy_path,
                                const PagesToReadAgain& again, const ChunkObserver& observer) {
  constexpr std::size_t kBuffer = std::size_t{1} << 20;
  // Often, as the caller looks at the source at each report: these pages were written by a
  // busy owner, whose next commit is caught only if a look falls within it.
  constexpr std::size_t kReportAfter = std::size_t{128} << 10;
  std::vector<std::byte> buffer(std::max<std::size_t>(kBuffer, again.page_size));
  RefreshOutcome outcome;  // (bytes: what was read, until the source's length is known)
  std::uint64_t read = 0;
  std::uint64_t reported = 0;
  const auto report_now = [&] {
    if (read - reported < kReportAfter) return true;
    reported = read;
    return report(observer, read);
  };
  // Runs of consecutive pages are read in one call each, up to the buffer's size.
  const std::uint64_t page_size = again.page_size;
  const std::span<const std::uint32_t> pages = again.pages;
  for (std::size_t i = 0; i < pages.size();) {
    const std::uint64_t begin = std::uint64_t{pages[i] - 1} * page_size;
    if (pages[i] == 0 || begin >= again.tail_from) break;
    std::size_t run = 1;
    while (i + run < pages.size() && pages[i + run] == pages[i] + run &&
           (run + 1) * page_size <= buffer.size() &&
           std::uint64_t{pages[i + run] - 1} * page_size < again.tail_from) {
      ++run;
    }
    const std::span<std::byte> into(buffer.data(), run * page_size);
    const std::size_t n = read_at(source_fd, into, begin, source_path);
    if (n != 0) write_all_at(copy_fd, into.first(n), begin, copy_path);
    read += n;
    outcome.bytes_rewritten += n;
    if (n < into.size()) break;  // the source's end
    i += run;
    if (!report_now()) return outcome;
  }
  std::uint64_t end = again.tail_from;
  for (;;) {
    const std::size_t n = read_at(source_fd, std::span(buffer.data(), kBuffer), end, source_path);
    if (n != 0) write_all_at(copy_fd, std::span<const std::byte>(buffer.data(), n), end, copy_path);
    end += n;
    read += n;
    outcome.bytes_rewritten += n;
    if (n < kBuffer) break;
    if (!report_now()) return outcome;
  }
  // A source now shorter than the tail's start: its length is its own.
  if (end == again.tail_from) end = std::min(end, stat_fd(source_fd, source_path).size);
  if (::ftruncate(copy_fd, static_cast<off_t>(end)) != 0) {
    throw_errno(errno, "cannot truncate", copy_path);
  }
  outcome.bytes = end;
  report(observer, read);
  return outcome;
}

}  // namespace sqlite_backup::io
