#include "interrupt.hpp"

#include <array>
#include <csignal>

namespace sqlite_backup::cli {
namespace {

// Lock-free atomics are async-signal-safe; nothing else is touched in the handler.
std::atomic<bool> g_cancel{false};
std::atomic<int> g_signal{0};
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<int>::is_always_lock_free);

// Every signal that by default ends the process without a chance to clean up, and that a
// user or a session sends to say "stop": a closed terminal (HUP), ^C (INT), ^\ (QUIT), kill
// (TERM). Each stops the backup through the cancel flag, so the staging folder is removed.
constexpr std::array<int, 4> kStopSignals = {SIGHUP, SIGINT, SIGQUIT, SIGTERM};
std::array<struct sigaction, kStopSignals.size()> g_previous_stop{};
struct sigaction g_previous_pipe {};
struct sigaction g_previous_file_size {};

extern "C" void on_interrupt(int signal_number) {
  int none = 0;
  g_signal.compare_exchange_strong(none, signal_number);  // the first signal names the exit code
  g_cancel.store(true);
}

}  // namespace

InterruptHandlers::InterruptHandlers() {
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  // SA_RESTART: an interrupted read or write resumes; the library notices the flag at its
  // next check instead of failing with EINTR somewhere unexpected.
  action.sa_flags = SA_RESTART;
  for (std::size_t i = 0; i < kStopSignals.size(); ++i) {
    sigaction(kStopSignals[i], nullptr, &g_previous_stop[i]);
    // A signal the process was started ignoring stays ignored: nohup's SIGHUP, and SIGINT and
    // SIGQUIT for a job a non-interactive shell runs in the background (so ^C at the terminal
    // does not stop it).
    if (g_previous_stop[i].sa_handler == SIG_IGN) continue;
    sigaction(kStopSignals[i], &action, nullptr);
  }
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  sigaction(SIGPIPE, &ignore, &g_previous_pipe);
  // A write past RLIMIT_FSIZE (`ulimit -f`) fails with EFBIG instead of killing us mid-copy
  // with the staging folder left behind (Python ignores it at start-up for the same reason).
  sigaction(SIGXFSZ, &ignore, &g_previous_file_size);
}

InterruptHandlers::~InterruptHandlers() {
  for (std::size_t i = 0; i < kStopSignals.size(); ++i) {
    sigaction(kStopSignals[i], &g_previous_stop[i], nullptr);
  }
  sigaction(SIGPIPE, &g_previous_pipe, nullptr);
  sigaction(SIGXFSZ, &g_previous_file_size, nullptr);
}

const std::atomic<bool>& InterruptHandlers::cancel_flag() noexcept { return g_cancel; }

bool InterruptHandlers::interrupted() noexcept { return g_cancel.load(); }

int InterruptHandlers::signal_number() noexcept { return g_signal.load(); }

}  // namespace sqlite_backup::cli
