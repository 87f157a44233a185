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

namespace sqlite_backup::io {
namespace {

// Chunks of the read: the caller looks at cancellation between them, and each is faulted in
// just before it is read (1 MiB measured best of 256 KiB to 4 MiB).
constexpr std::size_t kChunk = std::size_t{1} << 20;

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
    detail::throw_error(ErrorKind::io, source,
                        "cannot load the snapshot of {} into memory: out of memory ({} bytes)",
                        detail::quoted(source), capacity);
  }
  data_ = grown;
  capacity_ = capacity;
}

void SqliteMemory::resize(std::uint64_t size, const std::filesystem::path& source) {
  reserve(size, source);
  if (size > size_) std::memset(data_ + size_, 0, size - size_);
  size_ = size;
}

void SqliteMemory::set_filled(std::uint64_t size) noexcept { size_ = std::min(size, capacity_); }

std::byte* SqliteMemory::release() noexcept {
  size_ = capacity_ = 0;
  return std::exchange(data_, nullptr);
}

namespace {

// From this size on a second thread reads the upper half at the same time: the first touch
// of fresh memory (a page fault, the kernel zeroing the page) and the kernel's copy happen in
// the reading thread, so two threads on two cores load a large file in about half the time.
constexpr std::uint64_t kParallelFrom = std::uint64_t{32} << 20;
// The halves meet on a 2 MiB boundary: a huge page, where the kernel uses them, is never
// faulted in by both threads.
constexpr std::uint64_t kHugePage = std::uint64_t{2} << 20;

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

// Reads [from, to) of the file into base + from, in chunks; adds each chunk to `progress`;
// stops early when `stop` is set or the file ends. Returns where it stopped.
std::uint64_t read_range(int fd, const std::filesystem::path& path, std::byte* base,
                         std::uint64_t from, std::uint64_t to, std::atomic<std::uint64_t>& progress,
                         const std::atomic<bool>& stop,
                         const std::function<bool()>& after_chunk = {}) {
  std::uint64_t done = from;
  while (done < to && !stop.load(std::memory_order_relaxed)) {
    const std::size_t want = std::min<std::uint64_t>(kChunk, to - done);
    populate_for_writing(base + done, want);
    const std::size_t got = read_at(fd, std::span(base + done, want), done, path);
    done += got;
    progress += got;
    if (got < want) break;
    if (after_chunk && !after_chunk()) break;
  }
  return done;
}

}  // namespace

std::uint64_t read_file_into(int fd, const std::filesystem::path& path, SqliteMemory& memory,
                             const std::function<bool(std::uint64_t)>& keep_going) {
  const std::uint64_t size = stat_fd(fd, path).size;
  memory.reserve(std::max<std::uint64_t>(size, 1), path);
  std::uint64_t done = 0;
  if (size >= kParallelFrom && std::thread::hardware_concurrency() > 1) {
    const std::uint64_t half = size / 2 / kHugePage * kHugePage;
    std::atomic<std::uint64_t> progress{0};
    std::atomic<bool> stop{false};
    std::exception_ptr failure;
    std::uint64_t upper_end = half;
    std::thread upper([&] {
      try {
        upper_end = read_range(fd, path, memory.data(), half, size, progress, stop);
      } catch (...) {
        failure = std::current_exception();
        stop = true;
      }
    });
    std::uint64_t lower_end = 0;
    try {
      lower_end = read_range(fd, path, memory.data(), 0, half, progress, stop, [&] {
        if (keep_going && !keep_going(progress.load())) stop = true;
        return !stop.load();
      });
    } catch (...) {
      stop = true;
      upper.join();
      throw;
    }
    upper.join();
    if (failure) std::rethrow_exception(failure);
    if (stop || lower_end < half || upper_end < size) {
      // Cancelled, or the file shrank while it was read: what follows its end is not the file.
      done = lower_end < half ? lower_end : upper_end;
      memory.set_filled(done);
      return done;
    }
    done = size;
    if (keep_going && !keep_going(done)) {
      memory.set_filled(done);
      return done;
    }
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
    if (keep_going && !keep_going(done)) break;
  }
  memory.set_filled(done);
  return done;
}

}  // namespace sqlite_backup::io
