#include "io/sqlite_memory.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <system_error>
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

// Room a memory file's mapping is given beyond what is asked, for the database a connection
// is handed to grow into: a mapping cannot grow in place once SQLite points into it.
// Reserving it costs address space only (the file is sparse: a page takes memory once
// written). A ":memory:" database grows without a limit; this one stops there (SQLITE_FULL),
// 4 GiB past the snapshot. Where the address space is limited (ulimit -v) and the room cannot
// be had, the image takes heap memory instead (up to kLargestHeapImage; see reserve_image()),
// which grows as the database does, rather than a smaller room that would leave it none and
// use up what the process has.
constexpr std::uint64_t kGrowthRoom = std::uint64_t{4} << 30;

std::atomic<bool> g_memory_files_allowed{true};
std::atomic<std::uint64_t> g_largest_heap_image{kLargestHeapImage};

// Heap memory never grows past largest_heap_image() (see ImageOutgrewHeapMemory).
void throw_if_past_heap_limit(const std::filesystem::path& source, std::uint64_t capacity) {
  const std::uint64_t limit = largest_heap_image();
  if (capacity <= limit) return;
  throw ImageOutgrewHeapMemory(
      ErrorKind::io,
      fmt::format(
          "cannot load the snapshot of {} into memory: it grew to at least {} bytes while it was "
          "read, past the {} bytes it may take in heap memory where no memory file can be had",
          detail::quoted(source), capacity, limit),
      source, ErrorCause{.system_errno = ENOMEM});
}

// Whether a memory file may be `length` bytes under the process's file size limit (ulimit -f):
// the kernel checks a memory file's size against it too, and past it sends SIGXFSZ, which
// ends a process that does not ignore it.
bool fits_file_size_limit(std::uint64_t length) noexcept {
  rlimit limit{};
  return ::getrlimit(RLIMIT_FSIZE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY ||
         length <= limit.rlim_cur;
}

[[noreturn]] void throw_out_of_memory(const std::filesystem::path& source, std::uint64_t bytes) {
  detail::throw_error(ErrorCause{.system_errno = ENOMEM}, ErrorKind::io, source,
                      "cannot load the snapshot of {} into memory: out of memory ({} bytes)",
                      detail::quoted(source), bytes);
}

std::uint64_t whole_pages(std::uint64_t bytes) noexcept {
  static const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  return (bytes + page - 1) / page * page;
}

// What a connection handed a memory file's mapping holds to unmap it when it closes: the
// client data of a virtual-table module registered on the connection, which SQLite destroys
// after it has closed the connection's databases (sqlite3_close releases modules last), or
// when the module is registered again, which hand_to() does only once the database no
// longer points into the old mapping. (SQLite 3.40 has no other destructor hook on a
// connection; sqlite3_set_clientdata came in 3.44. A module, not a function, because Python
// code can replace a function by its name, and the mapping would go with it; it cannot
// register or drop a module.)
struct MappingOwner {
  void* base = nullptr;
  std::size_t length = 0;
};

constexpr const char* kOwnerModule = "sqlite_backup_snapshot_memory";

void unmap_owned(void* owner) noexcept {
  auto* const mapping = static_cast<MappingOwner*>(owner);
  if (mapping->base != nullptr) ::munmap(mapping->base, mapping->length);
  delete mapping;  // NOLINT(cppcoreguidelines-owning-memory): SQLite hands it back once
}

// The module is no table: creating or reading one fails.
int refuse_table(sqlite3* /*db*/, void* /*aux*/, int /*argc*/, const char* const* /*argv*/,
                 sqlite3_vtab** /*table*/, char** error) {
  *error = sqlite3_mprintf("%s is not a table", kOwnerModule);
  return SQLITE_ERROR;
}

// (Two functions, so that SQLite does not take the module for an eponymous table.)
int refuse_new_table(sqlite3* db, void* aux, int argc, const char* const* argv,
                     sqlite3_vtab** table, char** error) {
  return refuse_table(db, aux, argc, argv, table, error);
}

const sqlite3_module& owner_module() noexcept {
  static const sqlite3_module module = [] {
    sqlite3_module methods{};
    methods.iVersion = 1;
    methods.xCreate = &refuse_new_table;
    methods.xConnect = &refuse_table;
    return methods;
  }();
  return module;
}

}  // namespace

void set_memory_files_allowed(bool allowed) noexcept { g_memory_files_allowed.store(allowed); }

void set_largest_heap_image(std::uint64_t bytes) noexcept {
  g_largest_heap_image.store(bytes == 0 ? kLargestHeapImage : bytes);
}
std::uint64_t largest_heap_image() noexcept { return g_largest_heap_image.load(); }

SqliteMemory::SqliteMemory(SqliteMemory&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      capacity_(std::exchange(other.capacity_, 0)),
      memory_file_(std::exchange(other.memory_file_, -1)),
      mapped_(std::exchange(other.mapped_, false)) {}

SqliteMemory& SqliteMemory::operator=(SqliteMemory&& other) noexcept {
  if (this != &other) {
    free();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    capacity_ = std::exchange(other.capacity_, 0);
    memory_file_ = std::exchange(other.memory_file_, -1);
    mapped_ = std::exchange(other.mapped_, false);
  }
  return *this;
}

SqliteMemory::~SqliteMemory() { free(); }

void SqliteMemory::free() noexcept {
  if (mapped_) {
    ::munmap(data_, capacity_);
  } else {
    sqlite3_free(data_);
  }
  if (memory_file_ >= 0) ::close(memory_file_);
  forget();
}

void SqliteMemory::forget() noexcept {
  data_ = nullptr;
  size_ = capacity_ = 0;
  memory_file_ = -1;
  mapped_ = false;
}

bool SqliteMemory::map_memory_file(std::uint64_t capacity) noexcept {
  // Always with the room to grow: without it the database could not grow at all, where heap
  // memory grows with it.
  const std::uint64_t length = whole_pages(capacity) + kGrowthRoom;
  if (!g_memory_files_allowed.load() || !fits_file_size_limit(length) ||
      length > std::numeric_limits<std::size_t>::max()) {
    return false;
  }
  const int file = ::memfd_create("sqlite_backup snapshot", MFD_CLOEXEC);
  if (file < 0) {
    detail::log_debug("no memory file for the snapshot ({})",
                      std::generic_category().message(errno));
    return false;
  }
  if (::ftruncate(file, static_cast<off_t>(length)) == 0) {
    void* const mapped = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, file, 0);
    if (mapped != MAP_FAILED) {
      data_ = static_cast<std::byte*>(mapped);
      capacity_ = length;
      memory_file_ = file;
      mapped_ = true;
      return true;
    }
  }
  detail::log_debug("no room for a memory file of {} bytes ({})", length,
                    std::generic_category().message(errno));
  ::close(file);
  return false;
}

void SqliteMemory::grow_mapping(std::uint64_t capacity, const std::filesystem::path& source) {
  const std::uint64_t length = whole_pages(capacity);
  void* const moved = length <= std::numeric_limits<std::size_t>::max() &&
                              fits_file_size_limit(length) &&
                              ::ftruncate(memory_file_, static_cast<off_t>(length)) == 0
                          ? ::mremap(data_, capacity_, length, MREMAP_MAYMOVE)
                          : MAP_FAILED;
  if (moved == MAP_FAILED) {
    throw_out_of_memory(source, capacity);
  }
  data_ = static_cast<std::byte*>(moved);
  capacity_ = length;
}

void SqliteMemory::reserve(std::uint64_t capacity, const std::filesystem::path& source) {
  if (capacity <= capacity_) return;
  if (mapped_ && memory_file_ >= 0) {
    grow_mapping(capacity, source);
    return;
  }
  if (mapped_) {
    // A mapping whose memory file is closed cannot grow, and past its room (4 GiB more than
    // the image) heap memory could not hold the image either. (Not reached: the snapshot paths
    // close the file only when the image is whole.)
    throw_out_of_memory(source, capacity);
  }
  if (data_ == nullptr && map_memory_file(capacity)) return;
  throw_if_past_heap_limit(source, capacity);
  auto* grown = static_cast<std::byte*>(sqlite3_realloc64(data_, capacity));
  if (grown == nullptr) {
    throw_out_of_memory(source, capacity);
  }
  data_ = grown;
  capacity_ = capacity;
}

void SqliteMemory::grow_for(std::uint64_t needed, const std::filesystem::path& source) {
  if (needed <= capacity_) return;
  std::uint64_t room = capacity_ + std::max<std::uint64_t>(capacity_ / 4, kChunk);
  if (!mapped_) room = std::min(room, largest_heap_image());
  reserve(std::max(needed, room), source);
}

bool SqliteMemory::reserve_image(std::uint64_t capacity, const std::filesystem::path& source) {
  if (capacity > largest_heap_image()) return data_ == nullptr && map_memory_file(capacity);
  reserve(capacity, source);
  return true;
}

void SqliteMemory::resize(std::uint64_t size, const std::filesystem::path& source) {
  reserve(size, source);
  if (size > size_ && memory_file_ >= 0 &&
      ::fallocate(memory_file_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  static_cast<off_t>(size_), static_cast<off_t>(size - size_)) == 0) {
    // (Zeros without touching the pages: a hole in the memory file reads as zeros.)
    size_ = size;
    return;
  }
  if (size > size_) {
    // (Fresh memory, as a WAL that grows the database needs: faulted in with one call.)
    populate_for_writing(data_ + size_, size - size_);
    std::memset(data_ + size_, 0, size - size_);
  }
  size_ = size;
}

void SqliteMemory::set_filled(std::uint64_t size) noexcept { size_ = std::min(size, capacity_); }

void SqliteMemory::close_memory_file() noexcept {
  if (memory_file_ >= 0) ::close(std::exchange(memory_file_, -1));
}

int SqliteMemory::hand_to(sqlite3* target) noexcept {
  // SQLite 3.40 replaces a database under a statement still reading it (the documentation
  // says it refuses; later versions do), and a replaced memory file would then be unmapped
  // under it: refused here instead, the connection keeping its database.
  for (sqlite3_stmt* statement = sqlite3_next_stmt(target, nullptr); statement != nullptr;
       statement = sqlite3_next_stmt(target, statement)) {
    if (sqlite3_stmt_busy(statement) != 0) {
      free();
      return SQLITE_BUSY;
    }
  }
  if (!mapped_) {
    // (sqlite3_deserialize frees memory given with FREEONCLOSE also when it fails.)
    const int rc = sqlite3_deserialize(
        target, "main", static_cast<unsigned char*>(static_cast<void*>(data_)),
        static_cast<sqlite3_int64>(size_), static_cast<sqlite3_int64>(capacity_),
        SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE);
    forget();
    if (rc == SQLITE_OK) {
      // An earlier snapshot's mapping, no longer in use, goes with its owner (best effort:
      // out of memory, it stays until `target` closes).
      if (auto* const empty = new (std::nothrow) MappingOwner{}) {  // NOLINT(*-owning-memory)
        sqlite3_create_module_v2(target, kOwnerModule, &owner_module(), empty, &unmap_owned);
      }
    }
    return rc;
  }
  // The mapping keeps the file; its descriptor is no longer needed.
  ::close(std::exchange(memory_file_, -1));
  auto* const owner = new (std::nothrow) MappingOwner{};  // NOLINT(cppcoreguidelines-owning-memory)
  if (owner == nullptr) {
    free();
    return SQLITE_NOMEM;
  }
  // Not RESIZEABLE: SQLite would realloc (and free) the mapping as heap memory; the image
  // grows within the mapping's capacity instead.
  int rc = sqlite3_deserialize(
      target, "main", static_cast<unsigned char*>(static_cast<void*>(data_)),
      static_cast<sqlite3_int64>(size_), static_cast<sqlite3_int64>(capacity_), 0);
  if (rc != SQLITE_OK) {
    delete owner;  // NOLINT(cppcoreguidelines-owning-memory)
    free();
    return rc;
  }
  // The owner is empty while it is registered: SQLite destroys it at once when registering
  // fails, and a previous snapshot's owner (same name) when it succeeds, which unmaps that
  // snapshot's mapping, no longer in use since the deserialize above.
  rc = sqlite3_create_module_v2(target, kOwnerModule, &owner_module(), owner, &unmap_owned);
  if (rc == SQLITE_OK) {
    owner->base = data_;
    owner->length = capacity_;
    forget();
    return SQLITE_OK;
  }
  // Nothing would unmap this mapping when the connection closes: an empty database takes its
  // place first. Where even that fails (out of memory) the mapping is left mapped rather
  // than unmapped under SQLite.
  void* const empty = sqlite3_malloc64(8);
  if (empty != nullptr &&
      sqlite3_deserialize(target, "main", static_cast<unsigned char*>(empty), 0, 8,
                          SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE) ==
          SQLITE_OK) {
    free();
  } else {
    forget();
  }
  return rc;
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

// The chunks the kernel copies into a memory file in one call: the caller looks at
// cancellation between them.
constexpr std::size_t kSendChunk = std::size_t{4} << 20;

// One sendfile() of up to `want` bytes of `fd` from `from` on into `memory_file` (at its
// position): the bytes copied, 0 at the file's end. nullopt when the kernel refuses to copy
// from this file and `first` says nothing was copied yet (the caller then reads it itself).
std::optional<std::size_t> send_chunk(int memory_file, int fd, off_t& from, std::size_t want,
                                      bool first, const std::filesystem::path& path) {
  for (;;) {
    const ssize_t sent = ::sendfile(memory_file, fd, &from, want);
    if (sent >= 0) return static_cast<std::size_t>(sent);
    const int error = errno;
    if (error == EINTR) continue;
    if (first && (error == EINVAL || error == ENOSYS || error == EOPNOTSUPP)) return std::nullopt;
    if (error == ENOMEM || error == ENOSPC) {
      detail::throw_error(ErrorCause{.system_errno = error}, ErrorKind::io, path,
                          "cannot load the snapshot of {} into memory: out of memory",
                          detail::quoted(path));
    }
    throw_errno(error, "cannot read", path);
  }
}

// read_file_into() for an image in a memory file: the kernel copies the file into it
// (sendfile), on this thread; one thread measured as fast as two, which contend for the
// memory file. nullopt, having read nothing and run nothing, when the kernel will not copy
// from this file: the caller reads it instead.
std::optional<std::uint64_t> send_file_into(int fd, const std::filesystem::path& path,
                                            SqliteMemory& memory, std::uint64_t size,
                                            const std::function<bool(std::uint64_t)>& keep_going,
                                            const std::function<void()>& alongside) {
  if (::lseek(memory.memory_file(), 0, SEEK_SET) != 0) return std::nullopt;
  off_t from = 0;
  std::uint64_t done = 0;
  // The next chunk: its bytes, 0 at the file's end.
  const auto next_chunk = [&]() -> std::optional<std::size_t> {
    if (done == memory.capacity()) {
      // Full: one more byte tells whether the file goes on (it grew past the mapping's room
      // since we began) before the mapping is grown for it.
      std::byte next{};
      if (read_at(fd, std::span(&next, 1), static_cast<std::uint64_t>(from), path) == 0) {
        return std::size_t{0};
      }
      memory.grow_for(memory.capacity() + 1, path);
    }
    const std::size_t want = std::min<std::uint64_t>(kSendChunk, memory.capacity() - done);
    return send_chunk(memory.memory_file(), fd, from, want, done == 0, path);
  };
  const std::optional<std::size_t> first = next_chunk();
  if (!first) return std::nullopt;
  done = *first;

  std::exception_ptr failure;
  std::atomic<bool> failed{false};
  std::thread helper;
  if (alongside) {
    if (size >= kParallelFrom && std::thread::hardware_concurrency() > 1) {
      helper = std::thread(detail::with_callers_log_sink([&] {
        try {
          alongside();
        } catch (...) {
          failure = std::current_exception();
          failed.store(true);
        }
      }));
    } else {
      alongside();
    }
  }
  const auto join = [&] {
    if (helper.joinable()) helper.join();
  };
  bool stopped = false;
  try {
    for (std::size_t sent = *first; sent > 0; done += sent) {
      if (failed.load() || (keep_going && !keep_going(done))) {
        stopped = true;
        break;
      }
      sent = *next_chunk();  // (only the first chunk may be refused)
    }
  } catch (...) {
    join();
    throw;
  }
  join();
  if (failure) std::rethrow_exception(failure);
  memory.set_filled(stopped ? 0 : done);
  return stopped ? 0 : done;
}

}  // namespace

std::uint64_t read_file_into(int fd, const std::filesystem::path& path, SqliteMemory& memory,
                             const std::function<bool(std::uint64_t)>& keep_going,
                             const std::function<void()>& alongside) {
  const std::uint64_t size = stat_fd(fd, path).size;
  memory.reserve(std::max<std::uint64_t>(size, 1), path);
  if (memory.memory_file() >= 0) {
    if (const auto sent = send_file_into(fd, path, memory, size, keep_going, alongside)) {
      return *sent;
    }
  }
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
      memory.grow_for(memory.capacity() + 1, path);
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
