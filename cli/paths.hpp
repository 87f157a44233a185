// The command's rules for its path arguments, checked before the library is called so that
// each refusal is one clear line with the documented exit code. The library repeats the
// destination checks atomically (Options::overwrite = false), so a file that appears
// between our check and the commit is still never replaced.
#pragma once

#include <filesystem>
#include <optional>
#include <variant>

#include "exit_code.hpp"

namespace sqlite_backup::cli {

// SOURCE_DATABASE must exist and be a regular file (a symlink to one is fine).
// Refusals are usage errors (exit 2).
std::optional<Failure> check_source(const std::filesystem::path& source);

// Where `source` goes for the DESTINATION argument `destination`:
// - an existing folder means folder/<source file name>, which must not exist;
// - an existing file (or anything else that exists, a dangling symlink too) is refused;
// - a new path needs an existing parent folder.
// Refusals exit 1.
std::variant<std::filesystem::path, Failure> resolve_destination(
    const std::filesystem::path& source, const std::filesystem::path& destination);

// With several sources DESTINATION must be an existing folder (exit 1 otherwise).
std::optional<Failure> check_destination_folder(const std::filesystem::path& folder);

}  // namespace sqlite_backup::cli
