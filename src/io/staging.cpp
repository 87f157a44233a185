#include "io/staging.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <system_error>
#include <vector>

#include "error_internal.hpp"
#include "io/file.hpp"

namespace sqlite_backup::io {

StagingDir::StagingDir(const std::filesystem::path& parent, std::string_view name_hint) {
  std::string hint(name_hint.substr(0, 64));
  std::string templ = (parent / ("." + hint + ".sqlite_backup-XXXXXX")).native();
  std::vector<char> buffer(templ.begin(), templ.end());
  buffer.push_back('\0');
  if (::mkdtemp(buffer.data()) == nullptr) {
    throw_errno(errno, "cannot create a temporary folder in", parent);
  }
  path_ = buffer.data();
}

StagingDir::StagingDir(StagingDir&& other) noexcept : path_(std::move(other.path_)) {
  other.path_.clear();
}

StagingDir::~StagingDir() {
  if (path_.empty()) return;
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

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
  if (durable) {
    sync_directory(destination.parent_path().empty() ? std::filesystem::path(".")
                                                     : destination.parent_path());
  }
}

}  // namespace sqlite_backup::io
