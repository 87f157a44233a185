#include "io/reader_lock.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <utility>

namespace sqlite_backup::io {
namespace {

// SQLite's lock bytes (os.h, os_unix.c).
constexpr off_t kPendingByte = 0x40000000;
constexpr off_t kSharedFirst = kPendingByte + 2;
constexpr off_t kSharedSize = 510;
// The WAL index's locks (wal.c): WALINDEX_LOCK_OFFSET 120, then WRITE, CKPT, RECOVER and the
// read locks 0..4; read lock 0 is byte 123.
constexpr off_t kWalReadLockZero = 120 + 3;

bool set_lock(int fd, short type, off_t start, off_t length) noexcept {
  struct flock lock {};  // l_pid 0, as OFD locks require
  lock.l_type = type;
  lock.l_whence = SEEK_SET;
  lock.l_start = start;
  lock.l_len = length;
  return ::fcntl(fd, F_OFD_SETLK, &lock) == 0;
}

UniqueFd open_for_locking(const std::filesystem::path& path) noexcept {
  // Read-only, never created: taking a read lock needs no more, and nothing is written.
  return UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
}

}  // namespace

bool sqlite_exclusive_lock_held(const std::filesystem::path& path) noexcept {
  return sqlite_exclusive_lock_holder(path).has_value();
}

std::optional<pid_t> sqlite_exclusive_lock_holder(const std::filesystem::path& path) noexcept {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return std::nullopt;
  struct flock probe {};
  const auto ask = [&](int command) {
    probe = {};  // l_pid 0, as F_OFD_GETLK requires
    probe.l_type = F_WRLCK;
    probe.l_whence = SEEK_SET;
    probe.l_start = kSharedFirst;
    probe.l_len = kSharedSize;
    return ::fcntl(fd, command, &probe) == 0;
  };
  bool asked = ask(F_OFD_GETLK);
  // Kernels before 3.15 know no OFD locks; the classic query answers the same here, since
  // this process holds no lock of its own on the file.
  if (!asked && errno == EINVAL) asked = ask(F_GETLK);
  ::close(fd);  // we hold no lock on it, so closing drops nothing of anyone's
  // (SQLite's POSIX locks come back with their holder's pid, as seen from our namespace.)
  if (!asked || probe.l_type != F_WRLCK) return std::nullopt;
  return probe.l_pid;
}

std::optional<bool> process_has_open(pid_t pid, const FileStat& file) noexcept {
  if (pid <= 0) return std::nullopt;
  const std::string folder = "/proc/" + std::to_string(pid) + "/fd";
  DIR* descriptors = ::opendir(folder.c_str());
  if (descriptors == nullptr) return std::nullopt;
  std::optional<bool> found = false;
  while (const dirent* entry = ::readdir(descriptors)) {
    if (entry->d_name[0] == '.') continue;
    struct stat target {};
    // stat() follows the descriptor's link to the file it has open, deleted or not. One that
    // closed meanwhile (ENOENT) had nothing to say; any other failure leaves it unknown.
    if (::stat((folder + "/" + entry->d_name).c_str(), &target) != 0) {
      if (errno != ENOENT) found = std::nullopt;
      continue;
    }
    if (target.st_dev == file.device && target.st_ino == file.inode) {
      found = true;
      break;
    }
  }
  ::closedir(descriptors);
  return found;
}

std::optional<ReaderLock> ReaderLock::try_shared(const std::filesystem::path& database) {
  UniqueFd fd = open_for_locking(database);
  if (!fd) return std::nullopt;
  if (!set_lock(fd.get(), F_RDLCK, kPendingByte, 1)) return std::nullopt;
  const bool shared = set_lock(fd.get(), F_RDLCK, kSharedFirst, kSharedSize);
  set_lock(fd.get(), F_UNLCK, kPendingByte, 1);
  if (!shared) return std::nullopt;
  return ReaderLock(std::move(fd));
}

std::optional<ReaderLock> ReaderLock::try_wal_read_mark_zero(const std::filesystem::path& shm) {
  UniqueFd fd = open_for_locking(shm);
  if (!fd) return std::nullopt;
  if (!set_lock(fd.get(), F_RDLCK, kWalReadLockZero, 1)) return std::nullopt;
  return ReaderLock(std::move(fd));
}

}  // namespace sqlite_backup::io
