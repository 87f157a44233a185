#include "snapshot/look_thread.hpp"

#include <utility>

#include "log_internal.hpp"

namespace sqlite_backup::snapshot {

LookThread::~LookThread() {
  {
    const std::lock_guard lock(mutex_);
    quit_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void LookThread::start(std::function<void()> work) {
  {
    const std::lock_guard lock(mutex_);
    work_ = std::move(work);
    busy_ = true;
  }
  if (thread_.joinable()) {
    wake_.notify_all();
    return;
  }
  try {
    thread_ = std::thread(detail::with_callers_log_sink([this] { serve(); }));
  } catch (...) {
    const std::lock_guard lock(mutex_);
    work_ = nullptr;
    busy_ = false;
    throw;
  }
}

void LookThread::wait() noexcept {
  std::unique_lock lock(mutex_);
  done_.wait(lock, [this] { return !busy_; });
}

void LookThread::serve() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return busy_ || quit_; });
    if (!busy_) return;
    {
      // (Destroyed before wait() may return, so that nothing of it outlives the wait.)
      const std::function<void()> work = std::exchange(work_, nullptr);
      lock.unlock();
      work();
    }
    lock.lock();
    busy_ = false;
    done_.notify_all();
  }
}

}  // namespace sqlite_backup::snapshot
