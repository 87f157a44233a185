// Stage 5 of the pipeline, for file destinations: the recovered copy appears at the
// destination atomically, with the source's permission bits, fsynced unless the caller said
// otherwise (io::commit_file). The copy is already beside the destination (io::StagingDir),
// so this is a rename, not a copy.
#pragma once

#include <filesystem>

#include "deliver/connection.hpp"
#include "sqlite/handle.hpp"

namespace sqlite_backup::deliver {

struct FileTarget {
  std::filesystem::path destination;
  bool replace = false;  // an existing destination is replaced (Options::overwrite)
  bool durable = true;   // fsync the file and its folder (Options::durable)
};

// Writes the database `from` into the new file `to` through SQLite's backup API (steps,
// progress and schema as settings.backup says). Errors about `to` name it.
void copy_file_through_backup_api(sql::Database& from, const std::filesystem::path& to,
                                  const Settings& settings);

// Copies the recovered copy `staged` through SQLite's backup API into a second file beside
// it, which then takes its name: for callers who asked for what only the backup API gives
// (wants_backup_api(): progress, steps, a schema), as the reference writes its destination.
// Errors name the staged files where they are the problem (the caller names them as the
// destination), `source` otherwise.
void rewrite_through_backup_api(const std::filesystem::path& staged,
                                const std::filesystem::path& source, const Settings& settings);

// Commits the recovered copy `staged` to target.destination with `source`'s permission bits.
// Cancellation is checked before the commit, never after. Errors name the destination.
void to_file(const std::filesystem::path& staged, const std::filesystem::path& source,
             const FileTarget& target, const std::atomic<bool>* cancel);

}  // namespace sqlite_backup::deliver
