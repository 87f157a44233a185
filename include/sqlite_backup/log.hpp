// Logging of sqlite_backup: a process-wide level and a replaceable sink, which one thread can
// override for the calls it makes (ScopedLogSink).
// The level starts from the environment variable SQLITE_BACKUP_LOGS (Python's numeric
// scale: 10 debug, 20 info, 30 warning, 40 error; default 30) and can be changed from
// code. The default sink writes one line per event to stderr with level, time and place;
// the library never writes to stdout. All functions here are thread-safe.
#pragma once

#include <functional>
#include <mutex>
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

// The default sink: one line per record on stderr, with level, time and place. For a sink
// that passes some records on as the library would have printed them.
[[nodiscard]] LogSink default_log_sink();

namespace detail {
struct ScopedLogSinkAccess;
}

// Sends the records of the calls this thread makes to `sink` instead of the process-wide sink,
// while this object lives: those the calling thread logs and those of the threads the library
// starts for such a call (the copy's own thread, the WAL's first look, ...). So a program that
// runs several backups at once on several threads can tell their records apart. Scopes nest;
// the destructor restores the one before. Use one on the thread that created it only, and
// destroy scopes in the reverse order of their creation. The sink may be called from several
// threads of one call, one record at a time (each scope has a lock of its own: a slow sink
// holds up only its own calls); it must not throw, nor log through the library. An empty sink
// gives the default (stderr) for this thread's calls.
class ScopedLogSink {
 public:
  explicit ScopedLogSink(LogSink sink);
  ~ScopedLogSink();
  ScopedLogSink(const ScopedLogSink&) = delete;
  ScopedLogSink& operator=(const ScopedLogSink&) = delete;
  ScopedLogSink(ScopedLogSink&&) = delete;
  ScopedLogSink& operator=(ScopedLogSink&&) = delete;

 private:
  friend struct detail::ScopedLogSinkAccess;
  LogSink sink_;
  std::mutex mutex_;
  ScopedLogSink* previous_;
};

// Parses a SQLITE_BACKUP_LOGS value ("10", "20", ...); values between levels round
// down to the nearest level; anything unparsable gives the default, warning.
[[nodiscard]] LogLevel parse_log_level(std::string_view text) noexcept;

}  // namespace sqlite_backup
