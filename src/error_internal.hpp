// One way to build and throw errors, so that every message names the operation, the path
// and the reason in the same form.
#pragma once

#include <fmt/format.h>
#include <fmt/std.h>

#include <atomic>
#include <filesystem>
#include <sqlite_backup/sqlite_backup.hpp>
#include <string>

namespace sqlite_backup::detail {

// A path as it appears in messages: quoted only when it needs to be (spaces, quotes, ...).
std::string quoted(const std::filesystem::path& path);

template <typename... Args>
[[noreturn]] void throw_error(ErrorKind kind, const std::filesystem::path& path,
                              fmt::format_string<Args...> format, Args&&... args) {
  throw SqliteBackupError(kind, fmt::format(format, std::forward<Args>(args)...), path);
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
