// Exit codes of the sqlite_backup command and the mapping from the library's errors to them.
// The table is part of the tool's interface (README, --help, scripts that call it).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace sqlite_backup::cli {

enum ExitCode : int {
  kSuccess = 0,
  kFailure = 1,         // anything not listed below, and every refused destination
  kUsage = 2,           // bad flag, missing source, source is a folder, `-` to a terminal, ...
  kInvalidSource = 3,   // not a usable database (not a database, truncated, corrupt)
  kUnstableSource = 4,  // no copy in --copy-retry attempts proved one committed state
  kIo = 5,              // reading the source or writing the destination failed
  kVerifyFailed = 6,    // --verify found the result damaged
  // 128 + the signal's number, as a shell reports a process the signal killed.
  kInterruptedBySighup = 129,
  kInterruptedBySigint = 130,
  kInterruptedBySigquit = 131,
  kInterruptedBySigterm = 143,
};

// Why one backup (or the whole command) failed: the exit code and one line of text,
// without the "sqlite_backup: error: " prefix.
struct Failure {
  int exit_code = kFailure;
  std::string message;
};

// Call only inside a catch block: classifies the exception being handled.
// `interrupt_signal` (0 if none) picks 129, 130, 131 or 143 for a cancelled backup.
Failure describe_current_exception(int interrupt_signal);

// Exit code for a backup interrupted by `signal_number`: 128 + its number (SIGHUP -> 129,
// SIGINT -> 130, SIGQUIT -> 131, SIGTERM -> 143).
int exit_code_for_signal(int signal_number);

// `text` made fit for one line of a terminal: control characters become spaces and the
// redundant "sqlite_backup: " / "filesystem error: " prefixes are dropped.
std::string one_line(std::string_view text);

// `text` with control characters (a newline in a file name, say) replaced by spaces.
std::string printable(std::string_view text);

// `path` as it should appear in a message: as is when plain, single-quoted otherwise.
std::string display_path(std::string_view path);

}  // namespace sqlite_backup::cli
