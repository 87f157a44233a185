#include "io/write_watch.hpp"

#include <sys/inotify.h>
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
    // IN_MODIFY covers write(), ftruncate() and fallocate(); SQLite's unix VFS writes through
    // them (its memory map is read-only unless built with SQLITE_MMAP_READWRITE).
    const int database_watch = ::inotify_add_watch(fd.get(), database.c_str(), IN_MODIFY);
    if (database_watch < 0) return std::nullopt;
    // The journal comes and goes: watched by name in its folder. The folder's watch also
    // reports the database's writes (by name); those are taken from the file's own watch.
    const std::filesystem::path folder =
        journal.has_parent_path() ? journal.parent_path() : std::filesystem::path(".");
    const int folder_watch = ::inotify_add_watch(
        fd.get(), folder.c_str(), IN_MODIFY | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO);
    if (folder_watch < 0) return std::nullopt;
    return WriteWatch(std::move(fd), database_watch, folder_watch, journal.filename().string());
  } catch (...) {  // std::bad_alloc from the paths: no watch, and the caller copes
    return std::nullopt;
  }
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
