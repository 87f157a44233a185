// detail::naming_private_files_as: errors about our staged files name the file the user knows
// (the destination), and no other error is touched.
#include <gtest/gtest.h>

#include <cerrno>
#include <sqlite_backup/sqlite_backup.hpp>
#include <string>

#include "error_internal.hpp"
#include "io/file.hpp"

namespace sqlite_backup::testing {
namespace {

namespace fs = std::filesystem;

// Runs `work` inside the context and returns the error that came out.
template <typename Work>
SqliteBackupError error_from(const fs::path& folder, const fs::path& shown, Work work) {
  try {
    detail::naming_private_files_as(folder, shown, work);
  } catch (const SqliteBackupError& error) {
    return error;
  }
  ADD_FAILURE() << "no error came out";
  return SqliteBackupError(ErrorKind::io, "none");
}

TEST(ErrorContextTest, AnErrorAboutAStagedFileNamesTheDestination) {
  const fs::path staging = "/data/.out.sqlite.sqlite_backup-Ab12Cd";
  const SqliteBackupError error = error_from(staging, "/data/out.sqlite", [&] {
    io::throw_errno(ENOSPC, "cannot write", staging / "db.sqlite");
  });
  EXPECT_EQ(error.kind(), ErrorKind::io);
  EXPECT_EQ(error.path(), fs::path("/data/out.sqlite"));
  EXPECT_STREQ(error.what(), "cannot write /data/out.sqlite: No space left on device");
}

TEST(ErrorContextTest, QuotedPathsAreReplacedAsTheyAreQuoted) {
  const fs::path staging = "/my data/.out.sqlite_backup-Ab12Cd";
  const SqliteBackupError error = error_from(staging, "/my data/out file.sqlite", [&] {
    io::throw_errno(EIO, "cannot write", staging / "db.sqlite");
  });
  EXPECT_STREQ(error.what(), "cannot write '/my data/out file.sqlite': Input/output error");
}

TEST(ErrorContextTest, ErrorsAboutOtherFilesPassThroughUntouched) {
  const fs::path staging = "/data/.out.sqlite.sqlite_backup-Ab12Cd";
  const SqliteBackupError about_source = error_from(staging, "/data/out.sqlite", [] {
    io::throw_errno(EACCES, "cannot read", "/home/me/places.sqlite");
  });
  EXPECT_EQ(about_source.path(), fs::path("/home/me/places.sqlite"));
  EXPECT_STREQ(about_source.what(), "cannot read /home/me/places.sqlite: Permission denied");
  // A sibling whose name merely starts like the folder's is not inside it.
  const SqliteBackupError sibling = error_from(staging, "/data/out.sqlite", [] {
    io::throw_errno(EIO, "cannot read", "/data/.out.sqlite.sqlite_backup-Ab12Cdx/db");
  });
  EXPECT_EQ(sibling.path(), fs::path("/data/.out.sqlite.sqlite_backup-Ab12Cdx/db"));
  // Nor is the folder itself a file inside it.
  EXPECT_FALSE(detail::is_inside(staging, staging));
  EXPECT_TRUE(detail::is_inside(staging / "x", fs::path(staging.native() + "/")));
}

TEST(ErrorContextTest, OtherExceptionsAndResultsPassThrough) {
  EXPECT_THROW(
      detail::naming_private_files_as("/s", "/d", [] { throw std::invalid_argument("x"); }),
      std::invalid_argument);
  EXPECT_EQ(detail::naming_private_files_as("/s", "/d", [] { return 7; }), 7);
}

}  // namespace
}  // namespace sqlite_backup::testing
