// Internal logging front end: cheap level check first, formatting only when the event is kept.
#pragma once

#include <fmt/format.h>

#include <sqlite_backup/log.hpp>
#include <string>
#include <utility>

namespace sqlite_backup::detail {

[[nodiscard]] bool log_enabled(LogLevel level) noexcept;

// The ScopedLogSink in force on this thread (null: the process-wide sink). A thread the library
// starts for a call adopts its starter's (InheritedLogSink), so that the call's records all go
// where its caller asked.
[[nodiscard]] ScopedLogSink* thread_log_sink() noexcept;

class InheritedLogSink {
 public:
  explicit InheritedLogSink(ScopedLogSink* sink) noexcept;
  ~InheritedLogSink();
  InheritedLogSink(const InheritedLogSink&) = delete;
  InheritedLogSink& operator=(const InheritedLogSink&) = delete;
  InheritedLogSink(InheritedLogSink&&) = delete;
  InheritedLogSink& operator=(InheritedLogSink&&) = delete;

 private:
  ScopedLogSink* previous_;
};

// `work`, to run on a thread the library starts for the current call: under the starting
// thread's ScopedLogSink. Every such thread is started with it.
template <typename Work>
auto with_callers_log_sink(Work work) {
  return [sink = thread_log_sink(), work = std::move(work)]() mutable {
    const InheritedLogSink log_sink(sink);
    work();
  };
}
void log_emit(LogLevel level, const std::string& message, const char* file, int line) noexcept;

template <typename... Args>
struct log_at {
  // A struct (not a function) so that the defaulted place arguments can follow a pack.
  // __builtin_FILE/LINE rather than std::source_location: clang 14 with libstdc++ 12 (Debian's
  // clang-tidy) lacks the latter.
  log_at(LogLevel level, fmt::format_string<Args...> format, Args&&... args,
         const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    if (!log_enabled(level)) return;
    try {
      log_emit(level, fmt::format(format, std::forward<Args>(args)...), file, line);
    } catch (...) {  // logging must never turn a backup into a failure
    }
  }
};
template <typename... Args>
log_at(LogLevel, fmt::format_string<Args...>, Args&&...) -> log_at<Args...>;

template <typename... Args>
struct log_debug : log_at<Args...> {
  log_debug(fmt::format_string<Args...> f, Args&&... a, const char* file = __builtin_FILE(),
            int line = __builtin_LINE())
      : log_at<Args...>(LogLevel::debug, f, std::forward<Args>(a)..., file, line) {}
};
template <typename... Args>
log_debug(fmt::format_string<Args...>, Args&&...) -> log_debug<Args...>;

template <typename... Args>
struct log_info : log_at<Args...> {
  log_info(fmt::format_string<Args...> f, Args&&... a, const char* file = __builtin_FILE(),
           int line = __builtin_LINE())
      : log_at<Args...>(LogLevel::info, f, std::forward<Args>(a)..., file, line) {}
};
template <typename... Args>
log_info(fmt::format_string<Args...>, Args&&...) -> log_info<Args...>;

template <typename... Args>
struct log_warning : log_at<Args...> {
  log_warning(fmt::format_string<Args...> f, Args&&... a, const char* file = __builtin_FILE(),
              int line = __builtin_LINE())
      : log_at<Args...>(LogLevel::warning, f, std::forward<Args>(a)..., file, line) {}
};
template <typename... Args>
log_warning(fmt::format_string<Args...>, Args&&...) -> log_warning<Args...>;

}  // namespace sqlite_backup::detail
