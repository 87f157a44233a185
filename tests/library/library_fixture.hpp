// What every library test file starts from: the fixtures that give each test private folders
// and a private TMPDIR (checked empty at the end), and the owner program's path.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <sqlite_backup/sqlite_backup.hpp>

#include "test_support.hpp"

namespace sqlite_backup::testing {

namespace sb = sqlite_backup;

// tests/support/sqlite_owner, built beside the tests (CMake passes its path).
inline const fs::path kOwnerExe = SQLITE_BACKUP_OWNER_EXE;

// Every test runs the library with TMPDIR pointing at a private folder and checks, at the
// end, that the library left nothing there: temporary files are always removed.
class LibraryTest : public ::testing::Test {
 protected:
  void TearDown() override {
    EXPECT_TRUE(list_names(staging_.path()).empty())
        << "temporary files left in TMPDIR: "
        << ::testing::PrintToString(list_names(staging_.path()));
  }

  // Creates `folder` (and its parents) and returns it, so a test can name and make a folder
  // in one line.
  static fs::path make_folder(const fs::path& folder) {
    fs::create_directories(folder);
    return folder;
  }

  TempDir dir_;
  TempDir staging_{"sqlite_backup_tmpdir"};
  ScopedEnv tmpdir_{"TMPDIR", staging_.path().string()};
};

// Backups go into out_dir_, an empty folder of its own, so a test can check that nothing but
// the destination (or, after a failure, nothing at all) appeared there.
class OutFolderTest : public LibraryTest {
 protected:
  void SetUp() override { fs::create_directories(out_dir_); }

  fs::path out_dir_ = dir_ / "out";
};

// Also a source database, source_, alone in its own folder, so a test can check that the
// backup left that folder exactly as it was.
class SourceFolderTest : public OutFolderTest {
 protected:
  void SetUp() override {
    fs::create_directories(source_dir_);
    OutFolderTest::SetUp();
  }

  fs::path source_dir_ = dir_ / "source";
  fs::path source_ = source_dir_ / "live.sqlite";
};

}  // namespace sqlite_backup::testing
