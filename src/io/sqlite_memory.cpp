#include "io/sqlite_memory.hpp"

#include <sqlite3.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <span>
#include <utility>

#include "error_internal.hpp"
#include "io/file.hpp"

namespace sqlite_backup::io {
namespace {

// Chunks of the read: the caller looks at cancellation between them.
constexpr std::size_t kChunk = std::size_t{4} << 20;

void advise_huge_pages(std::byte* from, std::byte* to) noexcept {
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  void* begin = from;
  auto space = static_cast<std::size_t>(to - from);
  // madvise() takes whole pages: from the first page boundary on, whole pages only.
  if (std::align(page, page, begin, space) == nullptr) return;
  ::madvise(begin, space / page * page, MADV_HUGEPAGE);
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
  // The new part is untouched: advise it before anything writes there. A realloc of a large
  // block moves it with mremap, which keeps the pages already touched.
  auto* grown = static_cast<std::byte*>(sqlite3_realloc64(data_, capacity));
  if (grown == nullptr) {
    detail::throw_error(ErrorKind::io, source,
                        "cannot load the snapshot of {} into memory: out of memory ({} bytes)",
                        detail::quoted(source), capacity);
  }
  advise_huge_pages(grown + capacity_, grown + capacity);
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

std::uint64_t read_file_into(int fd, const std::filesystem::path& path, SqliteMemory& memory,
                             const std::function<bool(std::uint64_t)>& keep_going) {
  std::uint64_t done = 0;
  memory.reserve(std::max<std::uint64_t>(stat_fd(fd, path).size, 1), path);
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
    const std::size_t got = read_at(fd, std::span(memory.data() + done, want), done, path);
    done += got;
    if (got < want) break;
    if (keep_going && !keep_going(done)) break;
  }
  memory.set_filled(done);
  return done;
}

}  // namespace sqlite_backup::io
