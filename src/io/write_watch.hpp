// The kernel's record of writes to a rollback-mode database and its journal (inotify), in the
// order they happened.
//
// Looks at headers are snapshots in time: whatever starts and ends between two of them leaves
// no trace unless it changes a header. An owner in locking_mode=EXCLUSIVE commits without
// moving the change counter after its first commit under the lock, so such a commit, begun
// and ended between two looks, would be invisible. The kernel queues an event for every write
// as it happens, with no gap between looks; validate::WriteHistory reads the order of those
// events as transactions.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "io/file.hpp"

namespace sqlite_backup::io {

enum class Written { database, journal };

class WriteWatch {
 public:
  // Starts watching the database file (its inode: writes through any path or mount, ftruncate
  // and fallocate included) and the name `journal` in its folder (created, written, cut,
  // renamed or deleted). nullopt when the kernel will not (the user's inotify instances or
  // watches used up, a file system without it); never throws.
  static std::optional<WriteWatch> start(const std::filesystem::path& database,
                                         const std::filesystem::path& journal) noexcept;

  // Calls `written` for every write reported since the last call, oldest first. Returns false
  // when the record has a gap (the kernel's queue overflowed, or a read failed): the caller
  // must then not rely on it. `written` must not throw. Not thread-safe: one caller at a time.
  bool drain(const std::function<void(Written)>& written) noexcept;

  // Whether the watches are still on `database` (as a look stat()ed it) and on the folder its
  // journal's name is now in: a file or folder renamed over the watched one is not watched, and
  // a record kept from an earlier look would miss its writes. Thread-safe.
  [[nodiscard]] bool watching(const FileStat& database) const noexcept;

 private:
  struct Identity {
    std::uint64_t device = 0;
    std::uint64_t inode = 0;
  };

  WriteWatch(UniqueFd fd, int database_watch, int folder_watch, std::string journal_name,
             Identity database, std::filesystem::path folder, Identity folder_identity) noexcept
      : fd_(std::move(fd)),
        database_watch_(database_watch),
        folder_watch_(folder_watch),
        journal_name_(std::move(journal_name)),
        database_(database),
        folder_(std::move(folder)),
        folder_identity_(folder_identity) {}

  UniqueFd fd_;  // closing it removes the watches
  int database_watch_ = -1;
  int folder_watch_ = -1;
  std::string journal_name_;
  Identity database_;
  std::filesystem::path folder_;
  Identity folder_identity_;
};

}  // namespace sqlite_backup::io
