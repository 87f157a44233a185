#include "io/write_watch.hpp"

#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <utility>

namespace sqlite_backup::io {

std::optional<WriteWatch> WriteWatch::start(const std::filesystem::path& database,
                                            const std::filesystem::path& journal) noexcept {
  try {
    UniqueFd fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    if (!fd) return std::nullopt;
    // A watch is on the inode the path named when it was added: the same before and after,
    // it is the one recorded (see watching()).
    const auto watch_of = [&fd](const std::filesystem::path& path, std::uint32_t events,
                                Identity& watched) {
      struct stat first {};
      struct stat second {};
      if (::stat(path.c_str(), &first) != 0) return -1;
      const int watch = ::inotify_add_watch(fd.get(), path.c_str(), events);
      if (watch < 0 || ::stat(path.c_str(), &second) != 0 || first.st_dev != second.st_dev ||
          first.st_ino != second.st_ino) {
        return -1;
      }
      watched = {second.st_dev, second.st_ino};
      return watch;
    };
    Identity database_identity;
    Identity folder_identity;
    // IN_MODIFY covers write(), ftruncate() and fallocate(); SQLite's unix VFS writes through
    // them (its memory map is read-only unless built with SQLITE_MMAP_READWRITE).
    const int database_watch = watch_of(database, IN_MODIFY, database_identity);
    if (database_watch < 0) return std::nullopt;
    // The journal comes and goes: watched by name in its folder. The folder's watch also
    // reports the database's writes (by name); those are taken from the file's own watch.
    std::filesystem::path folder =
        journal.has_parent_path() ? journal.parent_path() : std::filesystem::path(".");
    const int folder_watch = watch_of(
        folder, IN_MODIFY | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO, folder_identity);
    if (folder_watch < 0) return std::nullopt;
    return WriteWatch(std::move(fd), database_watch, folder_watch, journal.filename().string(),
                      database_identity, std::move(folder), folder_identity);
  } catch (...) {  // std::bad_alloc from the paths: no watch, and the caller copes
    return std::nullopt;
  }
}

bool WriteWatch::watching(const FileStat& database) const noexcept {
  struct stat folder {};
  return database.device == database_.device && database.inode == database_.inode &&
         ::stat(folder_.c_str(), &folder) == 0 && folder.st_dev == folder_identity_.device &&
         folder.st_ino == folder_identity_.inode;
}

bool WriteWatch::drain(const std::function<void(Written)>& written) noexcept {
  alignas(inotify_event) std::array<char, 16384> buffer{};
  for (;;) {
    const ssize_t got = ::read(fd_.get(), buffer.data(), buffer.size());
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return errno == EAGAIN;  // nothing more queued
    if (got == 0) return false;
    for (ssize_t at = 0; at < got;) {
      inotify_event event{};
      std::memcpy(&event, buffer.data() + at, sizeof event);
      const char* const name = buffer.data() + at + sizeof event;
      at += static_cast<ssize_t>(sizeof event + event.len);
      if ((event.mask & IN_Q_OVERFLOW) != 0) return false;
      if (event.wd == database_watch_ && (event.mask & IN_MODIFY) != 0) {
        written(Written::database);
      } else if (event.wd == folder_watch_ && event.len > 0 &&
                 journal_name_ == std::string_view(name, ::strnlen(name, event.len))) {
        written(Written::journal);
      }
    }
  }
}

}  // namespace sqlite_backup::io
