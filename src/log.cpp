#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <utility>

#include "log_internal.hpp"

namespace sqlite_backup {
namespace {

LogLevel level_from_environment() noexcept {
  const char* text = std::getenv("SQLITE_BACKUP_LOGS");
  return text != nullptr ? parse_log_level(text) : LogLevel::warning;
}

std::atomic<int>& level_storage() noexcept {
  static std::atomic<int> level{static_cast<int>(level_from_environment())};
  return level;
}

struct SinkSlot {
  std::mutex mutex;
  LogSink sink;
};
SinkSlot& sink_slot() {
  static SinkSlot slot;
  return slot;
}

// The ScopedLogSink in force on this thread, if any.
thread_local ScopedLogSink* t_scope = nullptr;

const char* level_name(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::debug:
      return "DEBUG";
    case LogLevel::info:
      return "INFO";
    case LogLevel::warning:
      return "WARNING";
    case LogLevel::error:
      return "ERROR";
  }
  return "LOG";
}

void write_to_stderr(const LogRecord& record) noexcept {
  using clock = std::chrono::system_clock;
  const auto now = clock::now();
  const std::time_t seconds = clock::to_time_t(now);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm local{};
  localtime_r(&seconds, &local);
  std::array<char, 32> stamp{};
  std::strftime(stamp.data(), stamp.size(), "%Y-%m-%d %H:%M:%S", &local);
  const std::string file = std::filesystem::path(record.file).filename().string();
  // One fprintf per event so that concurrent events do not interleave within a line.
  std::fprintf(stderr, "[%s %s.%03d sqlite_backup %s:%d] %.*s\n", level_name(record.level),
               stamp.data(), static_cast<int>(millis), file.c_str(), record.line,
               static_cast<int>(record.message.size()), record.message.data());
}

}  // namespace

LogLevel parse_log_level(std::string_view text) noexcept {
  int value = 0;
  bool digits = false;
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == '\n') continue;
    if (c < '0' || c > '9' || value > 1000) return LogLevel::warning;
    value = value * 10 + (c - '0');
    digits = true;
  }
  if (!digits) return LogLevel::warning;
  // Python's scale: anything from 0 up to DEBUG logs everything; values between levels round down.
  if (value < 20) return LogLevel::debug;
  if (value < 30) return LogLevel::info;
  if (value < 40) return LogLevel::warning;
  return LogLevel::error;
}

void set_log_level(LogLevel level) noexcept { level_storage().store(static_cast<int>(level)); }

LogLevel log_level() noexcept { return static_cast<LogLevel>(level_storage().load()); }

void set_log_sink(LogSink sink) {
  auto& slot = sink_slot();
  std::lock_guard lock(slot.mutex);
  slot.sink = std::move(sink);
}

LogSink default_log_sink() {
  return [](const LogRecord& record) { write_to_stderr(record); };
}

ScopedLogSink::ScopedLogSink(LogSink sink) : sink_(std::move(sink)), previous_(t_scope) {
  t_scope = this;
}

ScopedLogSink::~ScopedLogSink() { t_scope = previous_; }

namespace detail {

namespace {

// Hands `record` to `sink` (the default, stderr, when empty), under `mutex`: one record at a
// time per sink.
void deliver(std::mutex& mutex, const LogSink& sink, const LogRecord& record) noexcept {
  try {
    const std::lock_guard lock(mutex);
    if (sink) {
      sink(record);
    } else {
      write_to_stderr(record);
    }
  } catch (...) {  // a throwing sink must not break the backup
  }
}

}  // namespace

struct ScopedLogSinkAccess {
  static void emit(ScopedLogSink& scope, const LogRecord& record) noexcept {
    deliver(scope.mutex_, scope.sink_, record);
  }
};

ScopedLogSink* thread_log_sink() noexcept { return t_scope; }

InheritedLogSink::InheritedLogSink(ScopedLogSink* sink) noexcept : previous_(t_scope) {
  t_scope = sink;
}

InheritedLogSink::~InheritedLogSink() { t_scope = previous_; }

bool log_enabled(LogLevel level) noexcept {
  return static_cast<int>(level) >= level_storage().load(std::memory_order_relaxed);
}

void log_emit(LogLevel level, const std::string& message, const char* file, int line) noexcept {
  const LogRecord record{level, message, file, line};
  if (t_scope != nullptr) {
    ScopedLogSinkAccess::emit(*t_scope, record);
    return;
  }
  auto& slot = sink_slot();
  deliver(slot.mutex, slot.sink, record);
}

}  // namespace detail
}  // namespace sqlite_backup
