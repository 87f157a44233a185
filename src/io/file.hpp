// File-descriptor primitives: an owning descriptor, file identity, positional reads, syncing.
#pragma once

#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <system_error>

namespace sqlite_backup::io {

// Owns a file descriptor; closes it on destruction (errors from close are ignored there:
// callers that care about write errors call sync() first).
class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();

  [[nodiscard]] int get() const noexcept { return fd_; }
  [[nodiscard]] int release() noexcept;
  explicit operator bool() const noexcept { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// What identifies a file and tells cheaply whether it changed. Sizes and times are
// only hints (timestamps are as coarse as the kernel's clock tick); identity is exact.
struct FileStat {
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::int64_t ctime_ns = 0;
  mode_t mode = 0;

  [[nodiscard]] bool same_file(const FileStat& other) const noexcept {
    return device == other.device && inode == other.inode;
  }
  [[nodiscard]] bool same_contents_hint(const FileStat& other) const noexcept {
    return same_file(other) && size == other.size && mtime_ns == other.mtime_ns &&
           ctime_ns == other.ctime_ns;
  }
};

FileStat to_file_stat(const struct stat& st) noexcept;

// stat() of a path; nullopt when it does not exist; throws filesystem_error otherwise.
std::optional<FileStat> stat_path(const std::filesystem::path& path);
FileStat stat_fd(int fd, const std::filesystem::path& path_for_errors);

// Opens an existing regular file read-only without blocking on FIFOs and without following
// the open into devices. Returns an empty UniqueFd when it does not exist (ENOENT).
// Throws filesystem_error for anything else, and SqliteBackupError(invalid_source) when
// it is not a regular file.
UniqueFd open_source_file(const std::filesystem::path& path);

// Reads up to buffer.size() bytes at offset; returns the count (short only at end of file).
// Errors throw filesystem_error "<operation> <path_for_errors>: <reason>".
std::size_t read_at(int fd, std::span<std::byte> buffer, std::uint64_t offset,
                    const std::filesystem::path& path_for_errors,
                    const char* operation = "cannot read");

void write_all(int fd, std::span<const std::byte> data,
               const std::filesystem::path& path_for_errors);
void write_all_at(int fd, std::span<const std::byte> data, std::uint64_t offset,
                  const std::filesystem::path& path_for_errors);

// A read-only view of `length` bytes at `offset` (any offset) of one of our own private files,
// mapped (MAP_SHARED, populated up front) instead of read into a buffer: no copy, and no
// fresh anonymous pages to fault in. Only for files no one else can cut under the mapping.
// Mapping one window at a time keeps what is mapped (and so counted in the resident size)
// bounded, whatever the file's size. Empty past the end of the file; failed() when the
// window cannot be mapped (the caller then reads).
class MappedWindow {
 public:
  MappedWindow(int fd, std::uint64_t file_size, std::uint64_t offset, std::size_t length) noexcept;
  MappedWindow(const MappedWindow&) = delete;
  MappedWindow& operator=(const MappedWindow&) = delete;
  MappedWindow(MappedWindow&&) = delete;
  MappedWindow& operator=(MappedWindow&&) = delete;
  ~MappedWindow();
  [[nodiscard]] bool failed() const noexcept { return failed_; }
  [[nodiscard]] std::span<const std::byte> bytes() const noexcept {
    return mapping_ == nullptr ? std::span<const std::byte>()
                               : std::span(mapping_ + skip_, length_);
  }

 private:
  const std::byte* mapping_ = nullptr;
  std::size_t mapped_ = 0;  // bytes mapped, from the page boundary at or before `offset`
  std::size_t skip_ = 0;    // offset - that boundary
  std::size_t length_ = 0;
  bool failed_ = false;
};

// Whether someone holds SQLite's EXCLUSIVE lock on the database file at `path` (a write
// lock on the 510 shared-lock bytes just past 1 GiB, where the unix VFS places its POSIX
// locks). Asks the kernel with F_OFD_GETLK, which only tests and takes no lock. false when
// the file cannot be opened or the question not asked (other VFSes lock elsewhere).
bool sqlite_exclusive_lock_held(const std::filesystem::path& path) noexcept;

// fsync of a file or folder, with the path in the error.
void sync_fd(int fd, const std::filesystem::path& path_for_errors);
void sync_directory(const std::filesystem::path& directory);

[[noreturn]] void throw_errno(int error, const std::string& operation,
                              const std::filesystem::path& path);

}  // namespace sqlite_backup::io
