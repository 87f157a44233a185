// io::StagingDir: the folders of work in progress, their proof of life, and the tidying of
// folders whose owner died.
#include "io/staging.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <sqlite_backup/log.hpp>
#include <string>
#include <vector>

#include "io/file.hpp"
#include "test_support.hpp"

namespace sqlite_backup::testing {
namespace {

// Puts the test hook back whatever the test's outcome.
class HookAroundTheOwnerLock {
 public:
  explicit HookAroundTheOwnerLock(std::function<void(const fs::path&)> hook) {
    io::g_before_owner_lock_for_tests = std::move(hook);
  }
  ~HookAroundTheOwnerLock() { io::g_before_owner_lock_for_tests = nullptr; }
  HookAroundTheOwnerLock(const HookAroundTheOwnerLock&) = delete;
  HookAroundTheOwnerLock& operator=(const HookAroundTheOwnerLock&) = delete;
};

std::vector<std::string> staging_folders_in(const fs::path& parent) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(parent)) {
    const std::string name = entry.path().filename().string();
    if (name.find(".sqlite_backup-") != std::string::npos) names.push_back(name);
  }
  return names;
}

// A folder a killed process left: its lock file exists and nobody holds its lock.
fs::path make_abandoned_folder(const fs::path& parent, const std::string& name) {
  const fs::path folder = parent / name;
  fs::create_directory(folder);
  const io::UniqueFd lock(::open((folder / io::StagingDir::kOwnerLockName).c_str(),
                                 O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!lock) throw std::runtime_error("cannot create a lock file");
  write_file(folder / "db.sqlite", "half a copy");
  return folder;
}

// Another backup's tidying (run here in the same process: OFD locks conflict between open
// file descriptions, not only between processes) takes the new folder for abandoned in the
// instant between its lock file's creation and its owner's lock, removes it and lets go. The
// owner's lock then succeeds on a file no folder holds any more: it must see that and make
// another folder. (Found by the CI in a test of concurrent backups into one folder; without
// the check the owner keeps the removed folder and its first staged file cannot be created.)
TEST(StagingDirTest, MakesAnotherFolderWhereATidierRemovedItsOwnBeforeItsLock) {
  const TempDir dir;
  std::vector<fs::path> created;
  int removed_by_tidier = 0;
  const HookAroundTheOwnerLock hook([&](const fs::path& folder) {
    created.push_back(folder);
    if (created.size() == 1) removed_by_tidier = io::remove_abandoned_staging_folders(dir.path());
  });
  const io::StagingDir staging(dir.path(), "db.sqlite");
  ASSERT_EQ(removed_by_tidier, 1) << "the tidier did not take the first folder";
  ASSERT_EQ(created.size(), 2U) << "the owner did not make another folder";
  EXPECT_FALSE(fs::exists(created[0]));
  EXPECT_EQ(staging.path(), created[1]);
  EXPECT_TRUE(fs::is_directory(staging.path()));
  EXPECT_TRUE(fs::exists(staging.path() / io::StagingDir::kOwnerLockName));
  // And it is locked: a later tidying keeps it.
  EXPECT_EQ(io::remove_abandoned_staging_folders(dir.path()), 0);
  EXPECT_TRUE(fs::is_directory(staging.path()));
}

// A failure between the folder's creation and its owner's lock (a stat of the lock file that
// fails; here the test hook throws) leaves no folder behind: no destructor runs for a
// constructor that throws, so the constructor removes it itself.
TEST(StagingDirTest, AFailureWhileTheFolderIsMadeLeavesNoFolder) {
  const TempDir dir;
  const HookAroundTheOwnerLock hook([](const fs::path& /*folder*/) {
    throw std::runtime_error("injected: the lock file cannot be examined");
  });
  EXPECT_THROW(io::StagingDir(dir.path(), "db.sqlite"), std::runtime_error);
  EXPECT_TRUE(staging_folders_in(dir.path()).empty())
      << ::testing::PrintToString(staging_folders_in(dir.path()));
}

// The tidying a new StagingDir does first: a folder whose owner died goes, with what it held;
// a folder in use (its lock held), one without a lock file (its owner between creating it and
// locking it) and a folder of another name stay.
TEST(StagingDirTest, RemovesOnlyFoldersWhoseOwnerIsGone) {
  const TempDir dir;
  const fs::path abandoned = make_abandoned_folder(dir.path(), ".db.sqlite.sqlite_backup-aB3dE9");
  const fs::path unlocked_but_new = dir / ".db.sqlite.sqlite_backup-Zz0000";
  fs::create_directory(unlocked_but_new);
  const fs::path foreign = dir / ".db.sqlite.other-aB3dE9";
  fs::create_directory(foreign);
  write_file(foreign / io::StagingDir::kOwnerLockName, "");
  std::optional<io::StagingDir> in_use(std::in_place, dir.path(), "db.sqlite");
  EXPECT_FALSE(fs::exists(abandoned)) << "the constructor tidies first";

  const fs::path second = make_abandoned_folder(dir.path(), ".x.sqlite_backup-Qq1111");
  const io::StagingDir another(dir.path(), "db.sqlite");
  EXPECT_FALSE(fs::exists(second));
  EXPECT_TRUE(fs::is_directory(in_use->path())) << "a folder whose lock is held is in use";
  EXPECT_TRUE(fs::is_directory(unlocked_but_new)) << "no lock file: its owner may be starting";
  EXPECT_TRUE(fs::is_directory(foreign)) << "not a name of ours";
  EXPECT_EQ(staging_folders_in(dir.path()).size(), 3U);  // in_use, another, unlocked_but_new

  const fs::path first = in_use->path();
  in_use.reset();
  EXPECT_FALSE(fs::exists(first)) << "the owner removes its folder";
}

// Sets or clears the immutable attribute (chattr +i): even root cannot remove such a file.
// False where the filesystem or our privileges do not allow it.
bool set_immutable(const fs::path& file, bool immutable) {
  const io::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  int flags = 0;
  if (!fd || ::ioctl(fd.get(), FS_IOC_GETFLAGS, &flags) != 0) return false;
  flags = immutable ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
  return ::ioctl(fd.get(), FS_IOC_SETFLAGS, &flags) == 0;
}

// A folder the owner cannot remove (a file in it made immutable here; in life a file another
// user put there, a mount on a subfolder) is a leftover, and the user is told: a warning
// naming the folder and the reason.
TEST(StagingDirTest, AFolderThatCannotBeRemovedIsReportedNotLeftSilently) {
  const TempDir dir;
  std::optional<io::StagingDir> staging(std::in_place, dir.path(), "db.sqlite");
  const fs::path folder = staging->path();
  const fs::path stuck = folder / "stuck";
  write_file(stuck, "x");
  if (!set_immutable(stuck, true)) {
    GTEST_SKIP() << "cannot make a file immutable here (needs root and ext4, XFS or btrfs): "
                 << std::strerror(errno);
  }
  std::vector<std::string> warnings;
  set_log_sink([&warnings](const LogRecord& record) {
    if (record.level == LogLevel::warning) warnings.emplace_back(record.message);
  });
  staging.reset();
  set_log_sink({});
  EXPECT_TRUE(set_immutable(stuck, false));
  ASSERT_TRUE(fs::exists(folder)) << "the folder was removed after all";
  ASSERT_EQ(warnings.size(), 1U) << ::testing::PrintToString(warnings);
  EXPECT_NE(warnings[0].find("could not remove the temporary folder"), std::string::npos)
      << warnings[0];
  EXPECT_NE(warnings[0].find(folder.filename().string()), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("not permitted"), std::string::npos) << warnings[0];
}

}  // namespace
}  // namespace sqlite_backup::testing
