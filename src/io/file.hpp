// File-descriptor primitives: an owning descriptor, file identity, positional reads, syncing.
#pragma once

#include <sys/stat.h>
#include <sys/uio.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

namespace sqlite_backup::io {

// Owns a file descriptor; closes it on destruction, where an error from close(2) is ignored
// (a destructor cannot report it). A file we wrote is finished with close() instead, or is
// fsynced first: some filesystems (NFS, FUSE, a full quota) report a failed write only then.
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

  // Closes the descriptor now and reports a failure: throws SqliteBackupError(io)
  // "cannot close <path_for_errors>: <reason>". Empty afterwards either way (Linux frees the
  // descriptor even when close fails, so it is never closed twice). No-op when empty.
  void close(const std::filesystem::path& path_for_errors);

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

// stat() of a path; nullopt when it does not exist; throws SqliteBackupError(io) otherwise.
std::optional<FileStat> stat_path(const std::filesystem::path& path);

// The first 16 bytes of the regular file at `path` (not followed if it is a symbolic link),
// to tell which of SQLite's files it is (io/sqlite_magic.hpp); nullopt for a file that
// cannot be opened, is not a regular file or is shorter.
std::optional<std::array<unsigned char, 16>> head_of_regular_file(
    const std::filesystem::path& path) noexcept;
FileStat stat_fd(int fd, const std::filesystem::path& path_for_errors);

// Opens an existing regular file read-only without blocking on FIFOs and without following
// the open into devices. Returns an empty UniqueFd when it does not exist (ENOENT).
// Throws SqliteBackupError(io) for anything else, and SqliteBackupError(invalid_source) when
// it is not a regular file.
UniqueFd open_source_file(const std::filesystem::path& path);

// Reads up to buffer.size() bytes at offset; returns the count (short only at end of file).
// Errors throw SqliteBackupError(io) "<operation> <path_for_errors>: <reason>".
std::size_t read_at(int fd, std::span<std::byte> buffer, std::uint64_t offset,
                    const std::filesystem::path& path_for_errors,
                    const char* operation = "cannot read");

// read_at() into scattered buffers, in the order `vectors` lists them (preadv); the vectors
// are consumed as they fill (their contents are unspecified afterwards). Returns the count,
// short only at end of file.
std::size_t read_vectors_at(int fd, std::span<iovec> vectors, std::uint64_t offset,
                            const std::filesystem::path& path_for_errors,
                            const char* operation = "cannot read");

void write_all(int fd, std::span<const std::byte> data,
               const std::filesystem::path& path_for_errors);
void write_all_at(int fd, std::span<const std::byte> data, std::uint64_t offset,
                  const std::filesystem::path& path_for_errors);

// Read-only views of a file, one window at a time: for our own private files mapped
// (MAP_SHARED, populated up front) instead of read into a buffer, so no copy and no fresh
// anonymous pages to fault in; read into a buffer (made once, `max_window` bytes) where the
// filesystem cannot map, or the file is one someone else may cut (Access::read). One window at
// a time keeps what is mapped (and so counted in the resident size) bounded, whatever the
// file's size. Read errors throw SqliteBackupError "<operation> <path_for_errors>: <reason>".
class FileWindows {
 public:
  // map: mapped where the filesystem allows (our own private files); read: always read into
  // the buffer (a file someone else may cut, where a mapped page past the new end would
  // raise SIGBUS).
  enum class Access { map, read };

  FileWindows(int fd, std::uint64_t file_size, std::size_t max_window,
              std::filesystem::path path_for_errors, const char* operation = "cannot read",
              Access access = Access::map);
  FileWindows(const FileWindows&) = delete;
  FileWindows& operator=(const FileWindows&) = delete;
  FileWindows(FileWindows&&) = delete;
  FileWindows& operator=(FileWindows&&) = delete;
  ~FileWindows();

  // The bytes [offset, offset + length) (length <= max_window), fewer at the end of the
  // file, none past it. Valid until the next view() or the destruction.
  std::span<const std::byte> view(std::uint64_t offset, std::size_t length);

 private:
  void unmap() noexcept;

  int fd_;
  std::uint64_t file_size_;
  std::size_t max_window_;
  std::filesystem::path path_for_errors_;
  const char* operation_;
  Access access_;
  void* mapping_ = nullptr;  // mapped read-only
  std::size_t mapped_ = 0;   // bytes mapped, from the page boundary at or before the offset
  // Only once a window could not be mapped; left uninitialized, as the reads fill it (an
  // array, not a std::vector, which would zero-fill it first: measured on small backups).
  std::unique_ptr<std::byte[]> buffer_;  // NOLINT(*-avoid-c-arrays)
};

// fsync of a file or folder, with the path in the error.
void sync_fd(int fd, const std::filesystem::path& path_for_errors);
// Returns false, having synced nothing, when this process may not open the folder for reading
// (a drop box: mode 0733), as SQLite's unix VFS passes over it; throws when the sync fails.
[[nodiscard]] bool sync_directory(const std::filesystem::path& directory);

[[noreturn]] void throw_errno(int error, const std::string& operation,
                              const std::filesystem::path& path);

}  // namespace sqlite_backup::io
