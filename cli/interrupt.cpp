#include "interrupt.hpp"

#include <csignal>

namespace sqlite_backup::cli {
namespace {

// Lock-free atomics are async-signal-safe; nothing else is touched in the handler.
std::atomic<bool> g_cancel{false};
std::atomic<int> g_signal{0};
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<int>::is_always_lock_free);

struct sigaction g_previous_int {};
struct sigaction g_previous_term {};
struct sigaction g_previous_pipe {};

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
  sigaction(SIGINT, &action, &g_previous_int);
  sigaction(SIGTERM, &action, &g_previous_term);
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  sigaction(SIGPIPE, &ignore, &g_previous_pipe);
}

InterruptHandlers::~InterruptHandlers() {
  sigaction(SIGINT, &g_previous_int, nullptr);
  sigaction(SIGTERM, &g_previous_term, nullptr);
  sigaction(SIGPIPE, &g_previous_pipe, nullptr);
}

const std::atomic<bool>& InterruptHandlers::cancel_flag() noexcept { return g_cancel; }

bool InterruptHandlers::interrupted() noexcept { return g_cancel.load(); }

int InterruptHandlers::signal_number() noexcept { return g_signal.load(); }

}  // namespace sqlite_backup::cli
