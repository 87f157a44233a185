// SIGHUP/SIGINT/SIGQUIT/SIGTERM (each unless the process began ignoring it): the handler only
// records the signal; the library sees the flag (Options::cancel), stops at its next check,
// removes what it staged and throws ErrorKind::cancelled, so an interrupted backup leaves
// nothing behind.
#pragma once

#include <atomic>

namespace sqlite_backup::cli {

class InterruptHandlers {
 public:
  // Installs the handlers, and ignores SIGPIPE and SIGXFSZ: a closed pipe and a write past
  // the file-size limit are errors to report, not reasons to die with staged files left.
  InterruptHandlers();
  InterruptHandlers(const InterruptHandlers&) = delete;
  InterruptHandlers& operator=(const InterruptHandlers&) = delete;
  InterruptHandlers(InterruptHandlers&&) = delete;
  InterruptHandlers& operator=(InterruptHandlers&&) = delete;
  ~InterruptHandlers();  // restores the previous dispositions

  [[nodiscard]] static const std::atomic<bool>& cancel_flag() noexcept;
  [[nodiscard]] static bool interrupted() noexcept;
  // The first signal received, 0 if none.
  [[nodiscard]] static int signal_number() noexcept;
};

}  // namespace sqlite_backup::cli
