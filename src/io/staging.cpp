#include "io/staging.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <string>
#include <system_error>
#include <vector>

#include "error_internal.hpp"
#include "io/big_endian.hpp"
#include "io/file.hpp"
#include "io/sqlite_magic.hpp"
#include "log_internal.hpp"

namespace sqlite_backup::io {
namespace {

constexpr std::string_view kStagingMarker = ".sqlite_backup-";
constexpr std::size_t kRandomPartSize = 6;  // mkdtemp's XXXXXX

// Takes a write lock on the whole of `fd` without waiting; false when someone holds one (or
// the filesystem takes no locks: errno says which).
// An OFD lock belongs to this open file description: no other descriptor this process opens
// or closes on the file affects it, and it goes when the description does (the process's
// death included). Kernels before 3.15 know no OFD locks: the classic lock serves there.
bool try_lock_whole_file(int fd) noexcept {
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  if (::fcntl(fd, F_OFD_SETLK, &lock) == 0) return true;
  if (errno != EINVAL) return false;
  lock = {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  return ::fcntl(fd, F_SETLK, &lock) == 0;
}

// ".<hint>.sqlite_backup-XXXXXX", as StagingDir names its folders.
bool is_staging_folder_name(std::string_view name) {
  if (name.size() < 1 + kStagingMarker.size() + kRandomPartSize || name.front() != '.') {
    return false;
  }
  const std::size_t marker_at = name.size() - kRandomPartSize - kStagingMarker.size();
  return name.substr(marker_at, kStagingMarker.size()) == kStagingMarker;
}

// The identities of the folders that hold `path`, up to the root: those of its path as
// given and, where symbolic links lead elsewhere, of where it really is.
std::vector<FileStat> folders_holding(const std::filesystem::path& path) {
  std::vector<FileStat> folders;
  if (path.empty()) return folders;
  std::error_code ignored;
  for (const std::filesystem::path& spelled : {std::filesystem::absolute(path, ignored),
                                               std::filesystem::weakly_canonical(path, ignored)}) {
    for (std::filesystem::path folder = spelled.parent_path(); !folder.empty();
         folder = folder.parent_path()) {
      if (const std::optional<FileStat> found = stat_path(folder)) folders.push_back(*found);
      if (folder == folder.root_path()) break;
    }
  }
  return folders;
}

}  // namespace

std::function<void(const std::filesystem::path& folder)> g_before_owner_lock_for_tests;

int remove_abandoned_staging_folders(const std::filesystem::path& parent,
                                     const std::filesystem::path& source) noexcept {
  int removed = 0;
  try {
    // Someone may back up a file out of an abandoned folder (to recover it): the folder is
    // then the source's, not debris.
    const std::vector<FileStat> keep = folders_holding(source);
    const UniqueFd parent_fd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!parent_fd) return 0;
    DIR* listing = ::fdopendir(::dup(parent_fd.get()));
    if (listing == nullptr) return 0;
    std::vector<std::string> candidates;
    while (const dirent* entry = ::readdir(listing)) {
      if (is_staging_folder_name(entry->d_name)) candidates.emplace_back(entry->d_name);
    }
    ::closedir(listing);
    for (const std::string& name : candidates) {
      // Ours only: a real folder (not a symlink to one) of this user.
      struct stat folder_stat {};
      if (::fstatat(parent_fd.get(), name.c_str(), &folder_stat, AT_SYMLINK_NOFOLLOW) != 0 ||
          !S_ISDIR(folder_stat.st_mode) || folder_stat.st_uid != ::geteuid()) {
        continue;
      }
      const FileStat folder = to_file_stat(folder_stat);
      if (std::any_of(keep.begin(), keep.end(),
                      [&folder](const FileStat& held) { return held.same_file(folder); })) {
        continue;
      }
      const UniqueFd folder_fd(
          ::openat(parent_fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!folder_fd) continue;
      // No lock file: its owner may be between creating the folder and locking it. Kept.
      const UniqueFd lock_fd(::openat(folder_fd.get(), StagingDir::kOwnerLockName,
                                      O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY));
      if (!lock_fd || !try_lock_whole_file(lock_fd.get())) continue;  // in use
      // The lock is ours now, held while we remove: its owner is dead, and an owner that
      // had just created the lock file will fail to take it and make another folder.
      std::error_code ignored;
      if (std::filesystem::remove_all(parent / name, ignored) > 0 && !ignored) ++removed;
    }
  } catch (...) {
    // Tidying only: never the reason a backup fails.
  }
  return removed;
}

StagingDir::StagingDir(const std::filesystem::path& parent, std::string_view name_hint,
                       const std::filesystem::path& source) {
  // Folders that processes killed outright left here (see the class comment).
  remove_abandoned_staging_folders(parent, source);
  std::string hint(name_hint.substr(0, 64));
  const std::string templ = (parent / ("." + hint + ".sqlite_backup-XXXXXX")).native();
  for (;;) {
    std::vector<char> buffer(templ.begin(), templ.end());
    buffer.push_back('\0');
    if (::mkdtemp(buffer.data()) == nullptr) {
      throw_errno(errno, "cannot create a temporary folder in", parent);
    }
    const std::filesystem::path folder = buffer.data();
    const std::filesystem::path lock_path = folder / kOwnerLockName;
    UniqueFd lock(::open(lock_path.c_str(),
                         O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600));
    if (!lock) {
      const int error = errno;
      std::error_code ignored;
      std::filesystem::remove_all(folder, ignored);
      throw_errno(error, "cannot create a temporary file in", parent);
    }
    bool ours = false;
    try {
      if (g_before_owner_lock_for_tests) g_before_owner_lock_for_tests(folder);
      if (try_lock_whole_file(lock.get()) || (errno != EAGAIN && errno != EACCES)) {
        // Locked; or a filesystem that takes no locks, where no one else can take it either,
        // so the folder is never taken for abandoned (nor removed after a SIGKILL). Still
        // ours only if the lock file is still there: a tidier that took the lock in the
        // instant between its creation and our lock may have removed the folder and let go
        // already (seen in a test of concurrent backups into one folder). Under our lock no
        // tidier removes it any more.
        const std::optional<FileStat> named = stat_path(lock_path);
        ours = named && named->same_file(stat_fd(lock.get(), lock_path));
      }
    } catch (...) {
      // (No destructor runs for an object whose constructor throws: the folder is removed
      // here, while the lock is still held.)
      std::error_code ignored;
      std::filesystem::remove_all(folder, ignored);
      throw;
    }
    if (ours) {
      path_ = folder;
      owner_lock_ = std::move(lock);
      return;
    }
    // Another process's tidying took the lock in the instant before ours (it took the
    // folder for abandoned) and is removing it, or removed it already: leave it that, and
    // make another.
  }
}

StagingDir::StagingDir(StagingDir&& other) noexcept
    : path_(std::move(other.path_)), owner_lock_(std::move(other.owner_lock_)) {
  other.path_.clear();
}

StagingDir::~StagingDir() {
  if (path_.empty()) return;
  std::error_code error;
  std::filesystem::remove_all(path_, error);
  if (error == std::errc::too_many_files_open ||
      error == std::errc::too_many_files_open_in_system) {
    // Listing the folder takes a descriptor, and the process has none left (a backup that
    // failed for that very reason): give back the lock's. Another process's tidying may then
    // take the folder for abandoned and remove it too, which is what we are doing anyway.
    owner_lock_ = UniqueFd();
    error.clear();
    std::filesystem::remove_all(path_, error);
  }
  if (error) {
    // Not the reason a backup fails (its result is already committed, or its own error is
    // on its way), but a leftover the user must hear of: the next backup beside it removes
    // it only once it can. (Logging never throws.)
    detail::log_warning("could not remove the temporary folder {}: {}", detail::quoted(path_),
                        error.message());
  }
  // owner_lock_ is closed after this body: the folder is gone before its lock is.
}

namespace {

// Whether `side` is a file SQLite would apply to a database beside it: a regular file that
// starts with a WAL header's magic (its frames would be laid over the database), or with a
// rollback journal's (a hot journal, rolled back into it). Anything else SQLite ignores, and
// so do we.
bool applies_to_its_database(const std::filesystem::path& side, bool wal) {
  const auto head = head_of_regular_file(side);
  if (!head) return false;
  if (wal) return is_wal_magic(load_be32(head->data()));
  return std::equal(kJournalMagic.begin(), kJournalMagic.end(), head->begin());
}

// SQLite's side files of `destination` that it would apply to the snapshot at its first open
// (a -wal's frames laid over it, a hot -journal rolled back into it), showing the old data,
// integrity_check and all: left there by the database the snapshot replaces, or by an earlier
// database of that name whose writer died. They go before the snapshot takes the name; files
// of those names that SQLite would ignore are left alone. Returns whether any was removed.
bool remove_stale_side_files(const std::filesystem::path& destination) {
  bool removed = false;
  for (const bool wal : {false, true}) {
    const std::filesystem::path side = destination.native() + (wal ? "-wal" : "-journal");
    if (!applies_to_its_database(side, wal)) continue;
    if (::unlink(side.c_str()) != 0 && errno != ENOENT) {
      throw_errno(errno, "cannot remove the stale side file", side);
    }
    removed = true;
    detail::log_warning(
        "removed {}: it belonged to an earlier database of that name, and SQLite would have "
        "applied it to the snapshot",
        quoted(side));
  }
  return removed;
}

}  // namespace

void commit_file(const std::filesystem::path& staged, const std::filesystem::path& destination,
                 mode_t permissions, bool replace, bool durable) {
  {
    // Errors name the destination: the staging file is ours, the user knows the destination.
    UniqueFd fd(::open(staged.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw_errno(errno, "cannot open the finished copy for", destination);
    // fchmod, not the umask: the copy must be no more readable than the source was.
    if (::fchmod(fd.get(), permissions) != 0) {
      throw_errno(errno, "cannot set permissions of", destination);
    }
    if (durable) sync_fd(fd.get(), destination);
    fd.close(destination);
  }
  const std::filesystem::path folder =
      destination.parent_path().empty() ? std::filesystem::path(".") : destination.parent_path();
  if (!replace && stat_path(destination)) {
    throw_error(ErrorKind::destination, destination,
                "refusing to write {}: it already exists (not overwriting)", quoted(destination));
  }
  // Their removal is made durable before the rename: a crash in between then leaves the old
  // database without them (the next backup replaces it), never the snapshot with them.
  // A folder we may write but not read (a drop box) cannot be synced: the snapshot is still
  // written, as SQLite writes a database there, and the warning says what is not durable.
  bool folder_synced = true;
  if (remove_stale_side_files(destination) && durable) folder_synced = sync_directory(folder);
  if (replace) {
    if (::rename(staged.c_str(), destination.c_str()) != 0) {
      throw_errno(errno, "cannot rename the snapshot to", destination);
    }
  } else if (::renameat2(AT_FDCWD, staged.c_str(), AT_FDCWD, destination.c_str(),
                         RENAME_NOREPLACE) != 0) {
    const int error = errno;
    if (error == EEXIST) {
      throw_error(ErrorKind::destination, destination,
                  "refusing to write {}: it already exists (not overwriting)", quoted(destination));
    }
    if (error != EINVAL && error != ENOSYS && error != EOPNOTSUPP) {
      throw_errno(error, "cannot rename the snapshot to", destination);
    }
    // No RENAME_NOREPLACE on this filesystem: link() refuses an existing name just as atomically.
    if (::link(staged.c_str(), destination.c_str()) != 0) {
      if (errno == EEXIST) {
        throw_error(ErrorKind::destination, destination,
                    "refusing to write {}: it already exists (not overwriting)",
                    quoted(destination));
      }
      throw_errno(errno, "cannot link the snapshot to", destination);
    }
    ::unlink(staged.c_str());
  }
  if (!durable) return;
  try {
    folder_synced = sync_directory(folder) && folder_synced;
  } catch (const SqliteBackupError& error) {
    // The snapshot is complete and in place: say so, or a retry refused because the
    // destination now exists would be a puzzle. (Not removed: it is the only copy made.)
    throw SqliteBackupError(
        error.kind(),
        fmt::format("the snapshot is complete at {}, but a crash may still lose it: {}",
                    quoted(destination), error.what()),
        destination, error.cause());
  }
  if (!folder_synced) {
    detail::log_warning(
        "{} is written, but its folder {} may not be read, so it cannot be synced: a crash "
        "soon after may still lose the new name",
        quoted(destination), quoted(folder));
  }
}

}  // namespace sqlite_backup::io
