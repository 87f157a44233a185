#include "io/file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <utility>

#include "error_internal.hpp"

namespace sqlite_backup::io {

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    UniqueFd old(std::exchange(fd_, other.release()));
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

int UniqueFd::release() noexcept { return std::exchange(fd_, -1); }

void UniqueFd::close(const std::filesystem::path& path_for_errors) {
  if (fd_ < 0) return;
  // EINTR: Linux has released the descriptor all the same, and has nothing more to report.
  if (::close(release()) != 0 && errno != EINTR) {
    throw_errno(errno, "cannot close", path_for_errors);
  }
}

void throw_errno(int error, const std::string& operation, const std::filesystem::path& path) {
  // ENOSPC, EACCES, EIO, ... all end as the same kind of error: the caller's message says which.
  throw_error(ErrorCause{.system_errno = error}, ErrorKind::io, path, "{} {}: {}", operation,
              quoted(path), std::generic_category().message(error));
}

FileStat to_file_stat(const struct stat& st) noexcept {
  FileStat out;
  out.device = st.st_dev;
  out.inode = st.st_ino;
  out.size = static_cast<std::uint64_t>(st.st_size);
  out.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  out.ctime_ns = static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1'000'000'000 + st.st_ctim.tv_nsec;
  out.mode = st.st_mode;
  return out;
}

namespace {

// Whether the failure `error` of a call on `path` says that no file can have its name: its
// last component is longer than any name a folder holds. (A database named with 248 bytes or
// more has side-file names, "-journal" and "-wal" added, that cannot exist.)
bool name_cannot_exist(int error, const std::filesystem::path& path) noexcept {
  return error == ENAMETOOLONG && path.filename().native().size() > NAME_MAX;
}

}  // namespace

std::optional<FileStat> stat_path(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || name_cannot_exist(errno, path)) return std::nullopt;
    throw_errno(errno, "cannot stat", path);
  }
  return to_file_stat(st);
}

FileStat stat_fd(int fd, const std::filesystem::path& path_for_errors) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_errno(errno, "cannot stat", path_for_errors);
  return to_file_stat(st);
}

UniqueFd open_source_file(const std::filesystem::path& path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd) {
    if (errno == ENOENT || name_cannot_exist(errno, path)) return {};
    if (errno == EISDIR) {
      throw_error(ErrorKind::invalid_source, path,
                  "cannot read {}: it is a folder, not a database file", quoted(path));
    }
    throw_errno(errno, "cannot open", path);
  }
  const FileStat st = stat_fd(fd.get(), path);
  if (S_ISDIR(st.mode)) {
    throw_error(ErrorKind::invalid_source, path,
                "cannot read {}: it is a folder, not a database file", quoted(path));
  }
  if (!S_ISREG(st.mode)) {
    throw_error(
        ErrorKind::invalid_source, path,
        "cannot read {}: not a regular file (a FIFO, socket or device), not a database file",
        quoted(path));
  }
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) {
    throw_errno(errno, "cannot set flags on", path);
  }
  return fd;
}

FileWindows::FileWindows(int fd, std::uint64_t file_size, std::size_t max_window,
                         std::filesystem::path path_for_errors, const char* operation,
                         Access access)
    : fd_(fd),
      file_size_(file_size),
      max_window_(max_window),
      path_for_errors_(std::move(path_for_errors)),
      operation_(operation),
      access_(access) {}

FileWindows::~FileWindows() { unmap(); }

void FileWindows::unmap() noexcept {
  if (mapping_ != nullptr) ::munmap(mapping_, mapped_);
  mapping_ = nullptr;
  mapped_ = 0;
}

std::span<const std::byte> FileWindows::view(std::uint64_t offset, std::size_t length) {
  unmap();
  if (offset >= file_size_ || length == 0) return {};
  length = static_cast<std::size_t>(std::min<std::uint64_t>(length, file_size_ - offset));
  static const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t start = offset - offset % page;
  const auto skip = static_cast<std::size_t>(offset - start);
  void* data = access_ == Access::read
                   ? MAP_FAILED
                   : ::mmap(nullptr, skip + length, PROT_READ, MAP_SHARED | MAP_POPULATE, fd_,
                            static_cast<off_t>(start));
  if (data != MAP_FAILED) {
    mapping_ = data;
    mapped_ = skip + length;
    return {static_cast<const std::byte*>(data) + skip, length};
  }
  if (!buffer_) {
    // No larger than the file: a small WAL is read through a small buffer.
    buffer_ = std::make_unique_for_overwrite<std::byte[]>(  // NOLINT(*-avoid-c-arrays)
        static_cast<std::size_t>(std::min<std::uint64_t>(max_window_, file_size_)));
  }
  const std::span<std::byte> into(buffer_.get(), std::min(length, max_window_));
  return into.first(read_at(fd_, into, offset, path_for_errors_, operation_));
}

std::size_t read_at(int fd, std::span<std::byte> buffer, std::uint64_t offset,
                    const std::filesystem::path& path_for_errors, const char* operation) {
  std::size_t done = 0;
  while (done < buffer.size()) {
    const ssize_t n =
        ::pread(fd, buffer.data() + done, buffer.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, operation, path_for_errors);
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return done;
}

std::size_t read_vectors_at(int fd, std::span<iovec> vectors, std::uint64_t offset,
                            const std::filesystem::path& path_for_errors, const char* operation) {
  std::size_t done = 0;
  while (!vectors.empty()) {
    // (Short of IOV_MAX per call: the caller's batches stay below it.)
    const ssize_t n = ::preadv(fd, vectors.data(), static_cast<int>(vectors.size()),
                               static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, operation, path_for_errors);
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
    // A read short of the whole (a signal, a limit): go on where it stopped.
    auto left = static_cast<std::size_t>(n);
    while (!vectors.empty() && left >= vectors.front().iov_len) {
      left -= vectors.front().iov_len;
      vectors = vectors.subspan(1);
    }
    if (!vectors.empty()) {
      vectors.front().iov_base = static_cast<std::byte*>(vectors.front().iov_base) + left;
      vectors.front().iov_len -= left;
    }
  }
  return done;
}

void write_all(int fd, std::span<const std::byte> data,
               const std::filesystem::path& path_for_errors) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, "cannot write", path_for_errors);
    }
    data = data.subspan(static_cast<std::size_t>(n));
  }
}

void write_all_at(int fd, std::span<const std::byte> data, std::uint64_t offset,
                  const std::filesystem::path& path_for_errors) {
  while (!data.empty()) {
    const ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, "cannot write", path_for_errors);
    }
    data = data.subspan(static_cast<std::size_t>(n));
    offset += static_cast<std::uint64_t>(n);
  }
}

void sync_fd(int fd, const std::filesystem::path& path_for_errors) {
  if (::fsync(fd) != 0) throw_errno(errno, "cannot sync", path_for_errors);
}

bool sync_directory(const std::filesystem::path& directory) {
  UniqueFd fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd && (errno == EACCES || errno == EPERM)) return false;
  if (!fd) throw_errno(errno, "cannot open folder", directory);
  // Some filesystems refuse fsync on folders (EINVAL); the rename is then as durable as it gets.
  if (::fsync(fd.get()) != 0 && errno != EINVAL && errno != EROFS) {
    throw_errno(errno, "cannot sync folder", directory);
  }
  return true;
}

std::optional<std::array<unsigned char, 16>> head_of_regular_file(
    const std::filesystem::path& path) noexcept {
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  struct stat status {};
  if (!fd || ::fstat(fd.get(), &status) != 0 || !S_ISREG(status.st_mode)) return std::nullopt;
  std::array<unsigned char, 16> head{};
  if (::pread(fd.get(), head.data(), head.size(), 0) != static_cast<ssize_t>(head.size())) {
    return std::nullopt;
  }
  return head;
}

}  // namespace sqlite_backup::io
