// The thread copy_consistent_set()'s looks at an owner's commits run on, kept for a whole
// backup.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace sqlite_backup::snapshot {

// One thread, made by the first start() that can make it and parked between works until
// destroyed: each attempt of a backup that follows a database owner's commits runs its looks
// here (see CommitWatch in copy_set.cpp). Commits that begin and end between an attempt's
// first look and this thread's first look are missed, and each one missed costs the attempt.
// Measured 2026-12-07 against an owner in locking_mode=EXCLUSIVE committing every 2 ms, two cores
// busy: a thread made afresh for each attempt looked first 363 µs after it was asked to
// (median; 1.2 ms at the 90th percentile), a parked one 138 µs (12 µs at the 10th; the tail, some
// ms, is the scheduler's either way). Against that owner on a 200 MB database, of 30 backups each,
// interleaved, 11 gave up against 17.
//
// Not thread-safe: start() and wait() are called from one thread, the one that made this
// object.
class LookThread {
 public:
  LookThread() = default;
  LookThread(const LookThread&) = delete;
  LookThread& operator=(const LookThread&) = delete;
  LookThread(LookThread&&) = delete;
  LookThread& operator=(LookThread&&) = delete;
  // Lets the thread end and joins it. The work handed over last must have been waited for.
  ~LookThread();

  // Runs `work`, which must not throw, on the thread (made by this call if no call before
  // made it: std::system_error when it cannot be, and then nothing runs, and the next call
  // tries again). One work at a time: the one before must have been waited for. The thread
  // logs to the log sink of the thread that made this object.
  void start(std::function<void()> work);

  // Waits until the work start() handed over has returned; at once when there is none.
  void wait() noexcept;

 private:
  void serve();

  std::mutex mutex_;
  std::condition_variable wake_;  // work to do, or quit_
  std::condition_variable done_;  // the work returned
  std::function<void()> work_;
  bool busy_ = false;  // from start() until the work returned
  bool quit_ = false;
  std::thread thread_;
};

}  // namespace sqlite_backup::snapshot
