// Logging of sqlite_backup: a process-wide level and a replaceable sink.
// The level starts from the environment variable SQLITE_BACKUP_LOGS (Python's numeric
// scale: 10 debug, 20 info, 30 warning, 40 error; default 30) and can be changed from
// code. The default sink writes one line per event to stderr with level, time and place;
// the library never writes to stdout. All functions here are thread-safe.
#pragma once

#include <functional>
#include <string_view>

namespace sqlite_backup {

enum class LogLevel : int { debug = 10, info = 20, warning = 30, error = 40 };

struct LogRecord {
  LogLevel level;
  std::string_view message;
  const char* file;  // source file of the library that logged the event
  int line;
};

using LogSink = std::function<void(const LogRecord&)>;

// Events below `level` are dropped before they are formatted.
void set_log_level(LogLevel level) noexcept;
[[nodiscard]] LogLevel log_level() noexcept;

// Replaces the sink; an empty function restores the default (stderr).
// The sink may be called from any thread that runs a backup; it must not throw.
void set_log_sink(LogSink sink);

// Parses a SQLITE_BACKUP_LOGS value ("10", "20", ...); values between levels round
// down to the nearest level; anything unparsable gives the default, warning.
[[nodiscard]] LogLevel parse_log_level(std::string_view text) noexcept;

}  // namespace sqlite_backup
