// SIGINT/SIGTERM: the handler only records the signal; the library sees the flag
// (Options::cancel), stops at its next check, removes what it staged and throws
// ErrorKind::cancelled, so an interrupted backup leaves nothing behind.
#pragma once

#include <atomic>

namespace sqlite_backup::cli {

class InterruptHandlers {
 public:
  InterruptHandlers();  // installs the handlers (and ignores SIGPIPE: a closed pipe is an error to
                        // report)
  InterruptHandlers(const InterruptHandlers&) = delete;
  InterruptHandlers& operator=(const InterruptHandlers&) = delete;
  ~InterruptHandlers();  // restores the previous dispositions

  [[nodiscard]] const std::atomic<bool>& cancel_flag() const noexcept;
  [[nodiscard]] bool interrupted() const noexcept;
  // The first signal received, 0 if none.
  [[nodiscard]] int signal_number() const noexcept;
};

}  // namespace sqlite_backup::cli
