#include "io/private_descriptors.hpp"

#include <sched.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <thread>

#include "log_internal.hpp"

namespace sqlite_backup::io {

void with_private_descriptor_table(const std::function<void()>& work) {
  std::exception_ptr failure;
  std::thread worker(detail::with_callers_log_sink([&] {
    if (::unshare(CLONE_FILES) != 0) {
      // Seen only under seccomp policies that forbid unshare(); the backup is still correct,
      // only a caller that has the source open with SQLite itself may lose its locks.
      detail::log_warning(
          "cannot give the copy a descriptor table of its own ({}): closing the source may "
          "drop this process's own SQLite locks on it",
          std::strerror(errno));
    }
    try {
      work();
    } catch (...) {
      failure = std::current_exception();
    }
  }));
  worker.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace sqlite_backup::io
