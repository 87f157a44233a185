// One way to build and throw errors, so that every message names the operation, the path
// and the reason in the same form.
#pragma once

#include <fmt/format.h>
#include <fmt/std.h>

#include <atomic>
#include <filesystem>
#include <sqlite_backup/sqlite_backup.hpp>
#include <string>
#include <utility>

namespace sqlite_backup::detail {

// A path as it appears in messages: quoted only when it needs to be (spaces, quotes, ...).
std::string quoted(const std::filesystem::path& path);

// Throws std::invalid_argument ("`operation`: `role` PATH holds a NUL byte, ...") for a path
// holding a NUL: no file is named so, and every system call (and SQLite's URI parser) would
// take the name cut short there, another file. As Python's os functions refuse one.
void refuse_a_nul_in(const std::filesystem::path& path, const char* operation, const char* role);

template <typename... Args>
[[noreturn]] void throw_error(ErrorKind kind, const std::filesystem::path& path,
                              fmt::format_string<Args...> format, Args&&... args) {
  throw SqliteBackupError(kind, fmt::format(format, std::forward<Args>(args)...), path);
}

// The same for a failure the OS or SQLite reported: the cause travels with the message.
template <typename... Args>
[[noreturn]] void throw_error(ErrorCause cause, ErrorKind kind, const std::filesystem::path& path,
                              fmt::format_string<Args...> format, Args&&... args) {
  throw SqliteBackupError(kind, fmt::format(format, std::forward<Args>(args)...), path, cause);
}

// Errors name the file that is the problem. Our private staged files are files the user
// never sees, so the caller that staged them adds the context once, at the call site, where
// it knows both: `work`'s errors that name a file inside `private_folder` are rethrown naming
// `shown` (the destination the staged copy becomes, where a full disk or a missing
// permission is the user's to fix). Other errors pass through as they are.
[[noreturn]] void rethrow_naming(const SqliteBackupError& error,
                                 const std::filesystem::path& shown);
[[nodiscard]] bool is_inside(const std::filesystem::path& path,
                             const std::filesystem::path& folder);

template <typename Work>
decltype(auto) naming_private_files_as(const std::filesystem::path& private_folder,
                                       const std::filesystem::path& shown, Work&& work) {
  try {
    return std::forward<Work>(work)();
  } catch (const SqliteBackupError& error) {
    if (!is_inside(error.path(), private_folder)) throw;
    rethrow_naming(error, shown);
  }
}

// Cancellation, checked in one way everywhere: Options::cancel may be null.
[[nodiscard]] inline bool cancelled(const std::atomic<bool>* cancel) noexcept {
  return cancel != nullptr && cancel->load(std::memory_order_relaxed);
}

inline void throw_if_cancelled(const std::atomic<bool>* cancel,
                               const std::filesystem::path& source) {
  if (cancelled(cancel)) {
    throw_error(ErrorKind::cancelled, source, "backup of {} cancelled; nothing was written",
                quoted(source));
  }
}

}  // namespace sqlite_backup::detail

namespace sqlite_backup::io {
using detail::quoted;
using detail::throw_error;
}  // namespace sqlite_backup::io
