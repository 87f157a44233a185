// The library's debug log, collected while a DebugLog lives (the level and the sink are the
// process's, and are put back when it goes, a failed assertion included). Header-only: the
// test executables that use it link the library; the support library does not.
#pragma once

#include <mutex>
#include <sqlite_backup/log.hpp>
#include <string>

namespace sqlite_backup::testing {

class DebugLog {
 public:
  DebugLog() : saved_level_(log_level()) {
    set_log_level(LogLevel::debug);
    set_log_sink([this](const LogRecord& record) {
      const std::lock_guard lock(mutex_);
      text_.append(record.message).append("\n");
    });
  }
  DebugLog(const DebugLog&) = delete;
  DebugLog& operator=(const DebugLog&) = delete;
  DebugLog(DebugLog&&) = delete;
  DebugLog& operator=(DebugLog&&) = delete;
  ~DebugLog() {
    set_log_sink({});
    set_log_level(saved_level_);
  }

  // Every message so far, one a line.
  [[nodiscard]] std::string text() const {
    const std::lock_guard lock(mutex_);
    return text_;
  }

 private:
  LogLevel saved_level_;
  mutable std::mutex mutex_;
  std::string text_;
};

}  // namespace sqlite_backup::testing
