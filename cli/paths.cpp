#include "paths.hpp"

#include <fmt/core.h>

#include <system_error>

namespace sqlite_backup::cli {
namespace fs = std::filesystem;
namespace {

std::string shown(const fs::path& path) { return display_path(path.native()); }

Failure refuse(std::string message) { return {kFailure, std::move(message)}; }

}  // namespace

std::optional<Failure> check_source(const fs::path& source) {
  std::error_code error;
  const fs::file_status status = fs::status(source, error);
  if (status.type() == fs::file_type::not_found) {
    return Failure{kUsage, fmt::format("source database {} does not exist", shown(source))};
  }
  if (error) {
    // A folder on the way that we may not search is the I/O error "permission denied" (5),
    // as it is when the file itself may not be read; other failures to look are usage.
    const bool denied = error == std::errc::permission_denied;
    return Failure{denied ? kIo : kUsage, fmt::format("cannot examine source database {}: {}",
                                                      shown(source), error.message())};
  }
  if (fs::is_directory(status)) {
    return Failure{kUsage,
                   fmt::format("source {} is a folder, not a database file", shown(source))};
  }
  if (!fs::is_regular_file(status)) {
    return Failure{kUsage,
                   fmt::format("source {} is not a regular file (a FIFO, socket or device); "
                               "give the database file itself",
                               shown(source))};
  }
  return std::nullopt;
}

std::variant<fs::path, Failure> resolve_destination(const fs::path& source,
                                                    const fs::path& destination) {
  std::error_code error;
  // symlink_status: a dangling symlink exists too, and writing through it is refused.
  const fs::file_status own_status = fs::symlink_status(destination, error);
  if (error && own_status.type() != fs::file_type::not_found) {
    // Not a refusal of the destination but a failure to look at it (a folder on the way we may
    // not search, an I/O error): exit 5, as the same failure on the source side.
    return Failure{
        kIo, fmt::format("cannot examine destination {}: {}", shown(destination), error.message())};
  }
  if (fs::exists(own_status)) {
    if (fs::is_directory(fs::status(destination, error))) {  // a symlink to a folder is a folder
      const fs::path target = destination / source.filename();
      if (fs::exists(fs::symlink_status(target, error))) {
        return refuse(
            fmt::format("refusing to write {}: it already exists in the folder {} "
                        "(sqlite_backup never overwrites)",
                        shown(target), shown(destination)));
      }
      return target;
    }
    return refuse(
        fmt::format("refusing to write {}: it already exists (sqlite_backup never overwrites)",
                    shown(destination)));
  }
  const fs::path parent = destination.has_parent_path() ? destination.parent_path() : fs::path(".");
  const fs::file_status parent_status = fs::status(parent, error);
  if (parent_status.type() == fs::file_type::not_found) {
    return refuse(fmt::format("cannot write {}: its folder {} does not exist", shown(destination),
                              shown(parent)));
  }
  if (!fs::is_directory(parent_status)) {
    return refuse(
        fmt::format("cannot write {}: {} is not a folder", shown(destination), shown(parent)));
  }
  return destination;
}

std::optional<Failure> check_destination_folder(const fs::path& folder) {
  std::error_code error;
  const fs::file_status status = fs::status(folder, error);
  if (status.type() == fs::file_type::not_found) {
    return refuse(
        fmt::format("destination folder {} does not exist (with several sources DESTINATION "
                    "must be an existing folder)",
                    shown(folder)));
  }
  if (!fs::is_directory(status)) {
    return refuse(
        fmt::format("destination {} is not a folder (with several sources DESTINATION must be "
                    "an existing folder)",
                    shown(folder)));
  }
  return std::nullopt;
}

}  // namespace sqlite_backup::cli
