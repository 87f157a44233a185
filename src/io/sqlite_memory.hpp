// Memory that SQLite will own: the image of a database loaded for sqlite3_deserialize().
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>

namespace sqlite_backup::io {

// A growable buffer from sqlite3_malloc64. Growing it may copy it (sqlite3_realloc64 does
// here): reserve what is needed up front; memory reserved but never touched costs nothing.
//
// Not advised MADV_HUGEPAGE, by measurement on the virtual machines this is built on: writing
// 200 MiB of fresh memory once took 25 ms with huge pages right after another process had
// freed some, but 196-445 ms after a pause of a second or two, against a steady 106-157 ms
// with 4 KiB pages; a memory snapshot of 201 MiB + 20 MiB WAL took 48-55 ms back to back and
// 270-480 ms after a pause with the advice, 81-97 ms either way without. Move-only; frees
// what it still owns.
class SqliteMemory {
 public:
  SqliteMemory() noexcept = default;
  SqliteMemory(SqliteMemory&& other) noexcept;
  SqliteMemory& operator=(SqliteMemory&& other) noexcept;
  SqliteMemory(const SqliteMemory&) = delete;
  SqliteMemory& operator=(const SqliteMemory&) = delete;
  ~SqliteMemory();

  // Makes room for `capacity` bytes, keeping the first size() bytes. Throws
  // SqliteBackupError(io) naming `source` when memory runs out.
  void reserve(std::uint64_t capacity, const std::filesystem::path& source);
  // Sets the size, zero-filling bytes past the old size (as a file grows); grows the capacity
  // as needed.
  void resize(std::uint64_t size, const std::filesystem::path& source);

  // The caller wrote the first `size` bytes itself (size <= capacity()).
  void set_filled(std::uint64_t size) noexcept;

  [[nodiscard]] std::byte* data() const noexcept { return data_; }
  [[nodiscard]] std::uint64_t size() const noexcept { return size_; }
  [[nodiscard]] std::uint64_t capacity() const noexcept { return capacity_; }
  // Hands the memory over (to sqlite3_deserialize with FREEONCLOSE, which frees it with
  // sqlite3_free, also when it fails).
  [[nodiscard]] std::byte* release() noexcept;

 private:
  std::byte* data_ = nullptr;
  std::uint64_t size_ = 0;
  std::uint64_t capacity_ = 0;
};

// Reads the whole file behind `fd` (to its end as it is then) into `memory`, in chunks, on
// two threads for a large file, calling `keep_going(bytes so far)` on the calling thread after
// its chunks; false stops the read, even after the last chunk (0 is then returned and the
// memory holds nothing; the caller throws). Returns the bytes read.
// `alongside`, when given, runs once on the second thread before it joins the read (on the
// calling thread, before the read, when there is no second thread): other work that then
// costs the read little, the two threads sharing the chunks as each is free; what it throws
// stops the read and is rethrown here. Errors name `path`.
std::uint64_t read_file_into(int fd, const std::filesystem::path& path, SqliteMemory& memory,
                             const std::function<bool(std::uint64_t)>& keep_going,
                             const std::function<void()>& alongside = {});

}  // namespace sqlite_backup::io
