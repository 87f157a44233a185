#include "io/sqlite_memory.hpp"

#include <sqlite3.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <span>
#include <thread>
#include <utility>

#include "error_internal.hpp"
#include "io/file.hpp"
#include "log_internal.hpp"

namespace sqlite_backup::io {
namespace {

// Chunks of the one-thread read: the caller looks at cancellation between them, and each is
// faulted in just before it is read (1 MiB measured best of 256 KiB to 4 MiB).
constexpr std::size_t kChunk = std::size_t{1} << 20;

// Older kernels (before 5.14) and headers without it: the copy faults the pages in instead.
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

// Faults in the whole pages of [data, data + size) for writing, in one system call, before
// a read copies into them. Letting the kernel's copy take one page fault per 4 KiB page
// instead was measured 10-15% slower for 200 MiB of fresh memory (65 ms against 55-59 ms,
// two threads, chunk by chunk so the zeroed pages are still in the cache when the copy
// overwrites them). Best effort: on a kernel without MADV_POPULATE_WRITE (EINVAL) it is not
// tried again, and any other failure (no memory) is left for the copy to meet and report.
void populate_for_writing(std::byte* data, std::size_t size) noexcept {
  static std::atomic<bool> unsupported{false};
  if (unsupported.load(std::memory_order_relaxed)) return;
  static const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  // madvise wants whole pages: from the first boundary in the range to the last.
  void* begin = data;
  std::size_t space = size;
  if (std::align(page, page, begin, space) == nullptr) return;  // not one whole page
  if (::madvise(begin, space / page * page, MADV_POPULATE_WRITE) != 0 && errno == EINVAL) {
    unsupported.store(true, std::memory_order_relaxed);
  }
}

}  // namespace

SqliteMemory::SqliteMemory(SqliteMemory&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      capacity_(std::exchange(other.capacity_, 0)) {}

SqliteMemory& SqliteMemory::operator=(SqliteMemory&& other) noexcept {
  if (this != &other) {
    sqlite3_free(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    capacity_ = std::exchange(other.capacity_, 0);
  }
  return *this;
}

SqliteMemory::~SqliteMemory() { sqlite3_free(data_); }

void SqliteMemory::reserve(std::uint64_t capacity, const std::filesystem::path& source) {
  if (capacity <= capacity_) return;
  auto* grown = static_cast<std::byte*>(sqlite3_realloc64(data_, capacity));
  if (grown == nullptr) {
    detail::throw_error(ErrorCause{.system_errno = ENOMEM}, ErrorKind::io, source,
                        "cannot load the snapshot of {} into memory: out of memory ({} bytes)",
                        detail::quoted(source), capacity);
  }
  data_ = grown;
  capacity_ = capacity;
}

void SqliteMemory::resize(std::uint64_t size, const std::filesystem::path& source) {
  reserve(size, source);
  if (size > size_) {
    // (Fresh memory, as a WAL that grows the database needs: faulted in with one call.)
    populate_for_writing(data_ + size_, size - size_);
    std::memset(data_ + size_, 0, size - size_);
  }
  size_ = size;
}

void SqliteMemory::set_filled(std::uint64_t size) noexcept { size_ = std::min(size, capacity_); }

std::byte* SqliteMemory::release() noexcept {
  size_ = capacity_ = 0;
  return std::exchange(data_, nullptr);
}

namespace {

// From this size on a second thread reads chunks too: the first touch of fresh memory (a
// page fault, the kernel zeroing the page) and the kernel's copy happen in the reading
// thread, so two threads on two cores load a large file in about half the time.
constexpr std::uint64_t kParallelFrom = std::uint64_t{32} << 20;

// The file's chunks, handed out front to back to whichever thread asks next: a thread that
// began late (it ran the caller's other job first) or whose core is busier simply reads
// fewer of them, and neither waits for the other at the end.
class ChunkReader {
 public:
  ChunkReader(int fd, const std::filesystem::path& path, std::byte* base, std::uint64_t size)
      : fd_(fd),
        path_(path),
        base_(base),
        size_(size),
        first_(to_next_table_span(base)),
        end_(size) {}

  // Reads chunks until none is left, stop() was called, or `after_chunk` returns false.
  void read(const std::function<bool()>& after_chunk) {
    while (!stopped_.load(std::memory_order_relaxed)) {
      const std::uint64_t chunk = next_.fetch_add(1);
      const std::uint64_t begin = chunk == 0 ? 0 : first_ + (chunk - 1) * kTableSpan;
      if (begin >= size_) return;
      const std::size_t want =
          std::min<std::uint64_t>(chunk == 0 ? first_ : kTableSpan, size_ - begin);
      populate_for_writing(base_ + begin, want);
      const std::size_t got = read_at(fd_, std::span(base_ + begin, want), begin, path_);
      progress_ += got;
      if (got < want) {
        // The file shrank while it was read: it ends at the first short read's end (every
        // chunk after that one reads short too).
        std::uint64_t end = end_.load();
        while (begin + got < end && !end_.compare_exchange_weak(end, begin + got)) {
        }
        return;
      }
      if (after_chunk && !after_chunk()) return;
    }
  }

  void stop() noexcept { stopped_.store(true); }
  [[nodiscard]] bool stopped() const noexcept { return stopped_.load(); }
  [[nodiscard]] std::uint64_t progress() const noexcept { return progress_.load(); }
  // Where the file ended (its size when we began, unless a read found it shorter).
  [[nodiscard]] std::uint64_t end() const noexcept { return end_.load(); }

 private:
  int fd_;
  const std::filesystem::path& path_;
  // Chunk n > 0 is the memory from the (n-1)th 2 MiB boundary after base_ on: the kernel
  // keeps one page table, and one lock, per 2 MiB, so two threads faulting in the halves of
  // one such span wait for each other (measured: a sixth of a 200 MiB read spent spinning on
  // that lock with 1 MiB chunks). Chunk 0 reaches the first boundary.
  static constexpr std::uint64_t kTableSpan = std::uint64_t{2} << 20;

  // From `base` to the next 2 MiB boundary after it (1 byte to 2 MiB): only the address is
  // computed, nothing is touched.
  static std::uint64_t to_next_table_span(std::byte* base) noexcept {
    void* at = base + 1;
    std::size_t space = 2 * kTableSpan;
    std::align(kTableSpan, 1, at, space);
    return static_cast<std::uint64_t>(static_cast<std::byte*>(at) - base);
  }

  std::byte* base_;
  std::uint64_t size_;
  std::uint64_t first_;                 // chunk 0's length
  std::atomic<std::uint64_t> next_{0};  // the next chunk's number
  std::atomic<std::uint64_t> progress_{0};
  std::atomic<std::uint64_t> end_;
  std::atomic<bool> stopped_{false};
};

}  // namespace

std::uint64_t read_file_into(int fd, const std::filesystem::path& path, SqliteMemory& memory,
                             const std::function<bool(std::uint64_t)>& keep_going,
                             const std::function<void()>& alongside) {
  const std::uint64_t size = stat_fd(fd, path).size;
  memory.reserve(std::max<std::uint64_t>(size, 1), path);
  std::uint64_t done = 0;
  if (size >= kParallelFrom && std::thread::hardware_concurrency() > 1) {
    ChunkReader reader(fd, path, memory.data(), size);
    std::exception_ptr failure;
    std::thread helper(detail::with_callers_log_sink([&] {
      try {
        if (alongside) alongside();
        reader.read({});
      } catch (...) {
        failure = std::current_exception();
        reader.stop();
      }
    }));
    try {
      // Only this thread calls keep_going: the caller's callbacks stay on the caller's thread.
      reader.read([&] {
        if (keep_going && !keep_going(reader.progress())) reader.stop();
        return !reader.stopped();
      });
    } catch (...) {
      reader.stop();
      helper.join();
      throw;
    }
    helper.join();
    if (failure) std::rethrow_exception(failure);
    if (reader.stopped()) {
      memory.set_filled(0);
      return 0;
    }
    done = reader.end();
    if (keep_going && !keep_going(done)) {
      memory.set_filled(0);
      return 0;
    }
    if (done < size) {
      // (A file that shrank: what follows its end is not the file.)
      memory.set_filled(done);
      return done;
    }
  } else if (alongside) {
    alongside();
  }
  for (;;) {
    if (done == memory.capacity()) {
      // At the size the file had when we began: one more byte tells whether it grew since.
      std::byte next{};
      if (read_at(fd, std::span(&next, 1), done, path) == 0) break;
      memory.reserve(memory.capacity() + std::max<std::uint64_t>(memory.capacity() / 4, kChunk),
                     path);
      memory.data()[done++] = next;
      continue;
    }
    const std::size_t want = std::min<std::uint64_t>(kChunk, memory.capacity() - done);
    populate_for_writing(memory.data() + done, want);
    const std::size_t got = read_at(fd, std::span(memory.data() + done, want), done, path);
    done += got;
    if (got < want) break;
    if (keep_going && !keep_going(done)) {
      memory.set_filled(0);
      return 0;
    }
  }
  memory.set_filled(done);
  return done;
}

}  // namespace sqlite_backup::io
