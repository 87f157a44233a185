// snapshot::LookThread: one thread for every attempt's looks, parked between them.
#include "snapshot/look_thread.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

namespace {

using sqlite_backup::snapshot::LookThread;

// The point of the class: a thread woken from its park looks sooner than one made afresh, so
// every attempt's work must run on the one thread made at the first.
TEST(LookThread, RunsEveryWorkOnTheOneThreadItMadeFirst) {
  // (The kernel's thread ids: a std::thread::id, the address of glibc's thread descriptor,
  // comes back for a new thread made after another was joined.)
  LookThread looks;
  pid_t first = 0;
  pid_t second = 0;
  looks.start([&first] { first = ::gettid(); });
  looks.wait();
  looks.start([&second] { second = ::gettid(); });
  looks.wait();
  EXPECT_NE(first, 0);
  EXPECT_NE(first, ::gettid()) << "the work ran on the caller's thread";
  EXPECT_EQ(first, second) << "the second work ran on a thread of its own";
}

TEST(LookThread, WaitReturnsOnlyOnceTheWorkHasReturned) {
  // The work is let go just before wait() and then takes 20 ms: a wait() that returned on
  // the work's start, not its end, would find it unfinished.
  LookThread looks;
  std::promise<void> go;
  std::atomic<bool> returned{false};
  looks.start([&returned, gate = go.get_future().share()] {
    gate.wait();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    returned.store(true);
  });
  go.set_value();
  looks.wait();
  EXPECT_TRUE(returned.load());
}

TEST(LookThread, WaitWithoutWorkAndDestructionWithoutAThreadReturnAtOnce) {
  LookThread never_started;
  never_started.wait();
  LookThread parked;
  parked.start([] {});
  parked.wait();
  parked.wait();
}

}  // namespace
