// A private folder for work in progress, and the atomic commit of its result.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <string_view>

#include "io/file.hpp"

namespace sqlite_backup::io {

// A fresh mode-0700 folder, created beside the destination (same filesystem, so the result
// can be renamed into place) or in the temporary directory. Removed with everything in it
// by the destructor unless released: nothing is left behind by a failure or an exception.
//
// A process killed outright (SIGKILL, a crash, a power cut) cannot remove its folder, so
// every folder carries proof of life: an OFD lock (F_OFD_SETLK) on the file kOwnerLockName
// inside it, held from just after the folder is made until it is removed. The kernel drops
// the lock when its owner dies. Before making its own folder, a StagingDir removes every
// folder of ours beside it whose lock it can take (its owner is provably gone) and keeps
// every other one (in use, or with no lock file: see remove_abandoned_staging_folders()).
class StagingDir {
 public:
  static constexpr const char* kOwnerLockName = ".sqlite_backup-owner.lock";

  // Removes abandoned staging folders in `parent` (never one that holds `source`), then
  // creates "<parent>/.<name_hint>.sqlite_backup-XXXXXX" and takes its lock.
  StagingDir(const std::filesystem::path& parent, std::string_view name_hint,
             const std::filesystem::path& source = {});
  StagingDir(StagingDir&& other) noexcept;
  StagingDir& operator=(StagingDir&&) = delete;
  StagingDir(const StagingDir&) = delete;
  StagingDir& operator=(const StagingDir&) = delete;
  ~StagingDir();

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
  UniqueFd owner_lock_;  // closed after the folder is removed
};

// Removes the folders "<parent>/.<anything>.sqlite_backup-XXXXXX" of this user whose
// owner lock file exists and can be locked (F_OFD_SETLK, which never waits): their owner is
// dead. A folder whose lock is held is in use, and one without a lock file may be in the
// instant between its creation and its lock: both are kept. Errors are ignored (this is
// tidying, not the backup). A folder that holds `source` (at any depth, by its path as given
// or with its symbolic links resolved) is kept too: it is what is being backed up. Returns
// how many were removed.
int remove_abandoned_staging_folders(const std::filesystem::path& parent,
                                     const std::filesystem::path& source = {}) noexcept;

// Tests only (not thread-safe; empty in production): called by StagingDir's constructor in
// the instant between creating a new folder's lock file and locking it, where another
// process's tidying can take the folder for abandoned. No timing can force that instant.
extern std::function<void(const std::filesystem::path& folder)> g_before_owner_lock_for_tests;

// Makes `staged` appear at `destination` atomically and (when `durable`) durably: sets its
// permission bits, fsyncs it, removes a -wal or hot -journal left beside `destination` (SQLite
// would apply it to the new file; other files of those names stay), renames it (replacing an
// existing file only when `replace`;
// otherwise an existing destination, even one created a moment ago by someone else, is left
// alone and an error thrown), then fsyncs the destination's folder so the new name survives a
// crash. Without `durable` both fsyncs are skipped; the rename is as atomic.
void commit_file(const std::filesystem::path& staged, const std::filesystem::path& destination,
                 mode_t permissions, bool replace, bool durable = true);

}  // namespace sqlite_backup::io
