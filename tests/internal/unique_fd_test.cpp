// io::UniqueFd: the destructor closes quietly; close() closes now and reports a failure.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <sqlite_backup/sqlite_backup.hpp>
#include <string>
#include <type_traits>

#include "io/file.hpp"
#include "test_support.hpp"

namespace sqlite_backup::testing {
namespace {

static_assert(std::is_nothrow_destructible_v<io::UniqueFd>,
              "the destructor must stay noexcept: it runs during unwinding");

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

TEST(UniqueFdTest, CloseClosesAWrittenFileAndEmptiesTheHandle) {
  const TempDir dir;
  const fs::path path = dir / "written.bin";
  io::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  ASSERT_TRUE(fd);
  const int raw = fd.get();
  ASSERT_EQ(::write(raw, "data", 4), 4);
  fd.close(path);
  EXPECT_FALSE(fd);
  EXPECT_FALSE(is_open(raw));
  fd.close(path);  // empty: nothing to do, nothing to report
  EXPECT_EQ(read_file(path), "data");
}

TEST(UniqueFdTest, CloseReportsAFailureAsAnIoErrorNamingThePath) {
  // A descriptor someone else already closed: close(2) fails (EBADF), as it fails with EIO or
  // ENOSPC when a filesystem reports a write only then; the error must reach the caller.
  const int raw = ::dup(STDERR_FILENO);
  ASSERT_GE(raw, 0);
  io::UniqueFd fd(raw);
  ASSERT_EQ(::close(raw), 0);
  const fs::path path = "/some/finished/file.sqlite";
  try {
    fd.close(path);
    ADD_FAILURE() << "no exception";
  } catch (const SqliteBackupError& error) {
    EXPECT_EQ(error.kind(), ErrorKind::io) << error.what();
    EXPECT_EQ(error.path(), path);
    const std::string what = error.what();
    EXPECT_NE(what.find("cannot close"), std::string::npos) << what;
    EXPECT_NE(what.find(path.string()), std::string::npos) << what;
  }
  EXPECT_FALSE(fd) << "a failed close still gives up the descriptor (it is never closed twice)";
}

}  // namespace
}  // namespace sqlite_backup::testing
