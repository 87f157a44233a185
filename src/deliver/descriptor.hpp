// Stage 5 of the pipeline, for a descriptor (the CLI's "-", a pipe to restic or rclone): the
// recovered copy is streamed into it. Nothing is written before the snapshot was taken,
// validated and recovered; a failure part-way leaves the reader a short stream and the caller
// an error.
#pragma once

#include <atomic>
#include <filesystem>

namespace sqlite_backup::deliver {

// Writes the whole file `staged` to `fd` (not closed). Errors name `source` for the copy and
// "/dev/fd/N" for the output (the name Linux gives it); cancellation ends it with
// ErrorKind::cancelled.
void to_descriptor(const std::filesystem::path& staged, int fd, const std::filesystem::path& source,
                   const std::atomic<bool>* cancel);

}  // namespace sqlite_backup::deliver
