// A private folder for work in progress, and the atomic commit of its result.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string_view>

namespace sqlite_backup::io {

// A fresh mode-0700 folder, created beside the destination (same filesystem, so the result
// can be renamed into place) or in the temporary directory. Removed with everything in it
// by the destructor unless released: nothing is left behind by a failure or an exception.
class StagingDir {
 public:
  // Creates "<parent>/.<name_hint>.sqlite_backup-XXXXXX".
  StagingDir(const std::filesystem::path& parent, std::string_view name_hint);
  StagingDir(StagingDir&& other) noexcept;
  StagingDir& operator=(StagingDir&&) = delete;
  StagingDir(const StagingDir&) = delete;
  StagingDir& operator=(const StagingDir&) = delete;
  ~StagingDir();

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

// Makes `staged` appear at `destination` atomically and (when `durable`) durably: sets its
// permission bits, fsyncs it, renames it (replacing an existing file only when `replace`;
// otherwise an existing destination, even one created a moment ago by someone else, is left
// alone and an error thrown), then fsyncs the destination's folder so the new name survives a
// crash. Without `durable` both fsyncs are skipped; the rename is as atomic.
void commit_file(const std::filesystem::path& staged, const std::filesystem::path& destination,
                 mode_t permissions, bool replace, bool durable = true);

}  // namespace sqlite_backup::io
