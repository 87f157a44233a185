// Opening files with SQLite whatever the length of their path.
//
// SQLite's unix VFS resolves every symbolic link of a path and refuses the result when it
// is 512 bytes or longer ("unable to open database file"), while the OS accepts paths up to
// PATH_MAX (4096) and more through relative lookups. Our staged copies live beside the
// destination, so a deep destination folder put them out of SQLite's reach. Such a file is
// opened instead as /proc/self/fd/N/NAME, N a descriptor of its folder held open for the
// connection's life, through a VFS that passes that short name through as it is (resolving
// it would give the long path back) and delegates everything else to the VFS asked for.
// Not the working directory and a relative name: that is process-wide state a library may
// not touch.
#pragma once

#include <filesystem>
#include <string>

#include "io/file.hpp"

namespace sqlite_backup::sql {

// What to hand sqlite3_open_v2() for one file.
struct OpenableFile {
  std::filesystem::path path;  // the file, as the caller named it (a failure to open names it)
  std::string uri;             // a file: URI (SQLITE_OPEN_URI)
  std::string vfs;             // the VFS to open it through ("" = the default)
  io::UniqueFd folder;         // keeps /proc/self/fd/N valid; must outlive the connection
};

// `path` as a file: URI with `query`, through `vfs` ("" = the default). A path SQLite can
// take as it is stays as it is.
OpenableFile openable_file(const std::filesystem::path& path, const std::string& query,
                           const std::string& vfs);

}  // namespace sqlite_backup::sql
