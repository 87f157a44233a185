// Memory that SQLite will own: the image of a database loaded for sqlite3_deserialize().
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <sqlite_backup/sqlite_backup.hpp>

struct sqlite3;

namespace sqlite_backup::io {

// SQLite 3.40's allocator refuses a block of this size or more (sqlite3Realloc), which bounds
// an image in heap memory and how far SQLite can grow one.
inline constexpr std::uint64_t kLargestHeapBlock = 0x7fffff00;

// The largest image kept in heap memory: SQLite grows a database in heap memory only up to
// kLargestHeapBlock, so a larger image would leave a snapshot less than 0.5 GiB to grow (and
// one past that block cannot be held at all). A larger image takes a memory file with its room
// to grow, or nothing (reserve_image()).
inline constexpr std::uint64_t kLargestHeapImage = std::uint64_t{3} << 29;  // 1.5 GiB

// Thrown where heap memory would grow past largest_heap_image() (kLargestHeapImage outside
// tests): the file being read grew past what reserve_image() allowed it without a memory file
// (past about 2 GiB it could not be held at all, and short of that it would leave the snapshot
// little room to grow). A caller that has another way (snapshot::copy_live_wal_set_into_memory)
// catches it; anywhere else it is the io error it says.
class ImageOutgrewHeapMemory : public SqliteBackupError {
 public:
  using SqliteBackupError::SqliteBackupError;
};

// A growable image of a database, handed to a connection with hand_to(). Growing it may move
// it: reserve what is needed up front; memory reserved but never touched costs nothing.
//
// Where it can, the image lives in a memory file (memfd_create) mapped into this process
// (shared: a child forked with a connection on it writes the parent's image too, and SQLite
// forbids using a connection across fork() anyway), so
// that read_file_into() fills it inside the kernel (sendfile) and the process's own page
// faults never touch the bytes on their way in. On the virtual machines this is built on a
// page fault taken for a process costs several microseconds (the hypervisor keeps its page
// tables), while the kernel filling a file's pages does not pay it: 201 MiB read into fresh
// process memory took 230-850 ms there, copied into a memory file 60-100 ms. Elsewhere
// (memfd_create refused, or a mapping refused) it is memory from sqlite3_malloc64.
//
// Not advised MADV_HUGEPAGE, by measurement on the same machines: writing 200 MiB of fresh
// memory once took 25 ms with huge pages right after another process had freed some, but
// 196-445 ms after a pause of a second or two, against a steady 106-157 ms with 4 KiB pages.
// Move-only; frees what it still owns. Not thread-safe.
class SqliteMemory {
 public:
  SqliteMemory() noexcept = default;
  SqliteMemory(SqliteMemory&& other) noexcept;
  SqliteMemory& operator=(SqliteMemory&& other) noexcept;
  SqliteMemory(const SqliteMemory&) = delete;
  SqliteMemory& operator=(const SqliteMemory&) = delete;
  ~SqliteMemory();

  // Makes room for `capacity` bytes, keeping the first size() bytes. A memory file's mapping
  // is given room to grow beyond it (see kGrowthRoom in the source): the database a
  // connection is handed can grow only within it. Throws SqliteBackupError(io) naming
  // `source` when memory runs out, ImageOutgrewHeapMemory when heap memory would grow past
  // largest_heap_image().
  void reserve(std::uint64_t capacity, const std::filesystem::path& source);
  // reserve() for at least `needed` bytes, with room for a quarter more (at least 1 MiB) at
  // once, so that growing step by step does not move the image each time; heap memory's room
  // stops at largest_heap_image(). Throws as reserve() does (ImageOutgrewHeapMemory only when
  // `needed` itself is past that bound).
  void grow_for(std::uint64_t needed, const std::filesystem::path& source);
  // reserve() for a database image of up to `capacity` bytes, on an empty SqliteMemory: one
  // larger than largest_heap_image() only in a memory file with its room to grow. Returns false,
  // having reserved nothing, when that cannot be had (memory files refused or unsupported,
  // the address space or the file size limited); the caller then takes another way. Throws as
  // reserve() does.
  [[nodiscard]] bool reserve_image(std::uint64_t capacity, const std::filesystem::path& source);
  // Sets the size, zero-filling bytes past the old size (as a file grows; a memory file
  // punches a hole there instead of touching the pages); grows the capacity as needed.
  void resize(std::uint64_t size, const std::filesystem::path& source);

  // The caller wrote the first `size` bytes itself (size <= capacity()).
  void set_filled(std::uint64_t size) noexcept;

  [[nodiscard]] std::byte* data() const noexcept { return data_; }
  [[nodiscard]] std::uint64_t size() const noexcept { return size_; }
  [[nodiscard]] std::uint64_t capacity() const noexcept { return capacity_; }
  // The memory file behind data(), open from the reserve() that maps it until
  // close_memory_file(); -1 when the memory is sqlite3_malloc64's, none yet, or closed.
  [[nodiscard]] int memory_file() const noexcept { return memory_file_; }
  // Closes the memory file's descriptor; the mapping stays. Called on the thread that
  // reserved the memory, before the image leaves it (hand_to() does): one with a descriptor
  // table of its own (io::with_private_descriptor_table) must not leave a descriptor to be
  // closed by another thread, where its number is another file's. The image cannot grow
  // past the mapping's room afterwards (reserve() then throws, out of memory).
  void close_memory_file() noexcept;

  // Hands the image (size() bytes) to the main database of `target` with
  // sqlite3_deserialize, writable and able to grow (heap memory without a limit of its own,
  // SQLite's allocator capping it; a memory file within its capacity). SQLite owns the
  // memory from then on: heap memory is freed with sqlite3_free when the database is closed
  // or replaced, a memory file when `target` closes (or is replaced by a later hand_to() to
  // the same connection), through the destructor of the virtual-table module
  // "sqlite_backup_snapshot_memory" registered on `target`: a caller that drops modules
  // (sqlite3_drop_modules) or registers one of that name unmaps the database under SQLite.
  // A database the caller puts in its place otherwise keeps the memory file until `target`
  // closes. Returns SQLite's result (SQLITE_BUSY while a statement of `target`
  // is still running, before anything is replaced): on failure the memory is freed and
  // `target`'s main database is as it was, or (when even that could not be restored, out of
  // memory) an empty one. Empty afterwards either way. Thread safety: as `target`'s.
  [[nodiscard]] int hand_to(sqlite3* target) noexcept;

 private:
  void free() noexcept;
  void forget() noexcept;  // (what it held is someone else's now)
  bool map_memory_file(std::uint64_t capacity) noexcept;
  void grow_mapping(std::uint64_t capacity, const std::filesystem::path& source);

  std::byte* data_ = nullptr;
  std::uint64_t size_ = 0;
  std::uint64_t capacity_ = 0;
  int memory_file_ = -1;  // open while the image is filled
  bool mapped_ = false;   // data_ is memory_file_'s mapping, not sqlite3_malloc64's
};

// kLargestHeapImage, unless a test set another bound (0 restores it): tests reach the bound
// with a file of a few MiB.
void set_largest_heap_image(std::uint64_t bytes) noexcept;
[[nodiscard]] std::uint64_t largest_heap_image() noexcept;

// Whether new SqliteMemory images may live in memory files (the default, true); false
// keeps them in sqlite3_malloc64's memory. For tests of both kinds.
void set_memory_files_allowed(bool allowed) noexcept;

// Reads the whole file behind `fd` (to its end as it is then) into `memory`, in chunks,
// calling `keep_going(bytes so far)` on the calling thread after its chunks; false stops the
// read, even after the last chunk (0 is then returned and the memory holds nothing; the
// caller throws). Returns the bytes read. Into a memory file the kernel copies the chunks
// (sendfile); into heap memory a large file is read on two threads.
// `alongside`, when given, runs once on a second thread for a large file (on the calling
// thread otherwise: before the read into heap memory, after the first chunk into a memory
// file): other work that then costs the read little; what it throws stops the read and is
// rethrown here. Errors name `path`.
std::uint64_t read_file_into(int fd, const std::filesystem::path& path, SqliteMemory& memory,
                             const std::function<bool(std::uint64_t)>& keep_going,
                             const std::function<void()>& alongside = {});

}  // namespace sqlite_backup::io
