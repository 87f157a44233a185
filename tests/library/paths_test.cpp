// Where the files are and who may touch them: awkward names, symlinks, read-only sources
// and the destination's permission bits.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <sqlite_backup/sqlite_backup.hpp>
#include <string>
#include <vector>

#include "library_fixture.hpp"

namespace {

using namespace sqlite_backup::testing;

class PathsTest : public LibraryTest {};

// Characters that mean something in a SQLite file: URI ('?', '#', '%'), spaces and non-ASCII.
TEST_F(PathsTest, NamesWithUriCharactersSpacesAndUnicodeWork) {
  const fs::path folder = make_folder(dir_ / "a folder ?x=1 #frag %20 ü 数据");
  const fs::path out = make_folder(dir_ / "out %41 ?mode=ro #1 é");
  const fs::path source = folder / "my db ?immutable=1#x%2F ü.sqlite";
  OwnerProcess owner(kOwnerExe, source, "wal-hold", 150);
  ASSERT_TRUE(owner.ready()) << owner.output();
  const FolderState before = folder_state(folder);

  const fs::path destination = out / "copy ?vfs=unix-none #2 %zz ✓.sqlite";
  sb::sqlite_backup(source, destination);
  EXPECT_EQ(count_rows(destination), 150);
  EXPECT_EQ(list_names(out), std::vector<std::string>{destination.filename().string()});
  auto memory = sb::sqlite_backup(source);
  ASSERT_TRUE(memory.has_value());
  EXPECT_EQ(count_rows(memory->get()), 150);
  EXPECT_EQ(describe_difference(before, folder_state(folder)), "");
}

// A staging folder that a killed backup left (its lock file there, nobody holding the lock)
// is debris to the next backup beside it, and is removed; but not when the file backed up is
// in it (someone recovering what it held): that backup once deleted its own source. Also
// through a link to the file, and with the folder as the temporary folder of a memory
// snapshot (TMPDIR).
TEST_F(PathsTest, AFolderLeftByAKilledBackupIsKeptWhileItHoldsTheSource) {
  const fs::path left = make_folder(dir_ / ".db.sqlite.sqlite_backup-aB3dE9");
  write_file(left / ".sqlite_backup-owner.lock", "");
  create_database(left / "db.sqlite", 10);

  sb::sqlite_backup(left / "db.sqlite", dir_ / "out.sqlite");
  ASSERT_TRUE(fs::exists(left / "db.sqlite")) << "the backup removed its own source";
  EXPECT_EQ(count_rows(dir_ / "out.sqlite"), 10);

  fs::create_symlink(left / "db.sqlite", dir_ / "link.sqlite");
  sb::sqlite_backup(dir_ / "link.sqlite", dir_ / "through-link.sqlite");
  ASSERT_TRUE(fs::exists(left / "db.sqlite")) << "the backup through a link removed its source";
  EXPECT_EQ(count_rows(dir_ / "through-link.sqlite"), 10);

  {
    const ScopedEnv tmpdir("TMPDIR", dir_.path().string());
    auto memory = sb::sqlite_backup(left / "db.sqlite");
    ASSERT_TRUE(memory.has_value());
    EXPECT_EQ(count_rows(memory->get()), 10);
  }
  ASSERT_TRUE(fs::exists(left / "db.sqlite")) << "the memory snapshot removed its source";

  // The same folder, once it no longer holds what is backed up, is debris again.
  create_database(dir_ / "other.sqlite", 3);
  sb::sqlite_backup(dir_ / "other.sqlite", dir_ / "other-copy.sqlite");
  EXPECT_FALSE(fs::exists(left));
}

// A name of 248 bytes or more leaves no room for "-journal" (or 252 for "-wal"): such side
// files cannot exist, and SQLite reads the database without them. Asking for them failed
// (ENAMETOOLONG) where it should have found none.
TEST_F(PathsTest, ADatabaseWhoseSideFileNamesAreTooLongIsBackedUp) {
  const fs::path source = dir_ / (std::string(245, 'n') + ".sqlite");  // 256 with "-wal"
  create_database(dir_ / "short.sqlite", 12);
  fs::rename(dir_ / "short.sqlite", source);
  const fs::path destination = dir_ / (std::string(249, 'd') + ".db");
  sb::sqlite_backup(source, destination);
  EXPECT_EQ(count_rows(destination), 12);
  auto memory = sb::sqlite_backup(source);
  ASSERT_TRUE(memory.has_value());
  EXPECT_EQ(count_rows(memory->get()), 12);
}

TEST_F(PathsTest, SymlinkedSourceFolderWorks) {
  const fs::path real = make_folder(dir_ / "real");
  OwnerProcess owner(kOwnerExe, real / "live.sqlite", "wal-hold", 80);
  ASSERT_TRUE(owner.ready()) << owner.output();
  fs::create_directory_symlink(real, dir_ / "linked");
  const FolderState before = folder_state(real);

  sb::sqlite_backup(dir_ / "linked" / "live.sqlite", dir_ / "via-folder.sqlite");
  EXPECT_EQ(query_int(dir_ / "via-folder.sqlite", "SELECT count(*) FROM t"), 80);
  EXPECT_EQ(describe_difference(before, folder_state(real)), "");
}

// SQLite resolves a symlinked database file and keeps its -wal beside the target, not
// beside the link: a backup through the link must find that WAL (all rows live there).
TEST_F(PathsTest, SymlinkedSourceFileFindsTheWalBesideItsTarget) {
  const fs::path real = make_folder(dir_ / "real");
  OwnerProcess owner(kOwnerExe, real / "live.sqlite", "wal-hold", 80);
  ASSERT_TRUE(owner.ready()) << owner.output();
  fs::create_symlink(real / "live.sqlite", dir_ / "file-link.sqlite");
  const FolderState before = folder_state(real);

  sb::sqlite_backup(dir_ / "file-link.sqlite", dir_ / "via-file.sqlite");
  EXPECT_EQ(query_int(dir_ / "via-file.sqlite", "SELECT count(*) FROM t"), 80)
      << "the rows in " << (real / "live.sqlite-wal") << " are missing from the snapshot";
  auto memory = sb::sqlite_backup(dir_ / "file-link.sqlite");
  ASSERT_TRUE(memory.has_value());
  EXPECT_EQ(query_int(memory->get(), "SELECT count(*) FROM t"), 80);
  EXPECT_EQ(describe_difference(before, folder_state(real)), "");
}

// A read-only source: the folder and file are 0555/0444 and, when we are root (who ignores
// permission bits), on a tmpfs remounted read-only, so that any write attempt fails with
// EROFS. The source also keeps a WAL and -shm left by an owner that died.
TEST_F(PathsTest, ReadOnlySourceFolderAndFileAreBackedUpWithoutChanges) {
  std::optional<TmpfsMount> tmpfs;
  fs::path folder = dir_ / "readonly";
  if (is_root()) {
    tmpfs = TmpfsMount::try_mount(16 * 1024 * 1024);
    if (!tmpfs)
      GTEST_SKIP() << "as root, permission bits do not stop us; needs a tmpfs mount to make a "
                      "read-only source";
    folder = *tmpfs / "readonly";
  }
  fs::create_directories(folder);
  {
    OwnerProcess owner(kOwnerExe, folder / "live.sqlite", "wal-hold", 250);
    ASSERT_TRUE(owner.ready()) << owner.output();
    owner.kill_hard();  // leaves live.sqlite-wal (all the rows) and live.sqlite-shm behind
  }
  ASSERT_TRUE(fs::exists(folder / "live.sqlite-wal"));
  for (const auto& entry : fs::directory_iterator(folder)) {
    fs::permissions(entry.path(),
                    fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
  }
  fs::permissions(folder, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                              fs::perms::group_exec | fs::perms::others_read |
                              fs::perms::others_exec);
  if (tmpfs) {
    ASSERT_TRUE(tmpfs->remount_read_only()) << "remount read-only failed";
  }
  const FolderState before = folder_state(folder);

  sb::sqlite_backup(folder / "live.sqlite", dir_ / "copy.sqlite");
  EXPECT_EQ(count_rows(dir_ / "copy.sqlite"), 250);
  auto memory = sb::sqlite_backup(folder / "live.sqlite");
  ASSERT_TRUE(memory.has_value());
  EXPECT_EQ(count_rows(memory->get()), 250);
  EXPECT_EQ(describe_difference(before, folder_state(folder)), "");
}

TEST_F(PathsTest, DestinationGetsTheSourcePermissionBitsNotTheUmasks) {
  const ScopedUmask umask(022);
  create_database(dir_ / "private.sqlite", 10);
  fs::permissions(dir_ / "private.sqlite", fs::perms::owner_read | fs::perms::owner_write);
  sb::sqlite_backup(dir_ / "private.sqlite", dir_ / "copy.sqlite");
  EXPECT_EQ(fs::status(dir_ / "copy.sqlite").permissions() & fs::perms::mask,
            fs::perms::owner_read | fs::perms::owner_write);

  create_database(dir_ / "group.sqlite", 10);
  fs::permissions(dir_ / "group.sqlite",
                  fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  sb::sqlite_backup(dir_ / "group.sqlite", dir_ / "group-copy.sqlite");
  EXPECT_EQ(fs::status(dir_ / "group-copy.sqlite").permissions() & fs::perms::mask,
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
}

// The snapshot is never more readable than the source, nor than the database it replaces: a
// backup its owner made private stays private, and a private source is not widened.
TEST_F(PathsTest, AReplacedDestinationIsNoMoreReadableThanItWasNorThanTheSource) {
  const ScopedUmask umask(022);
  const auto private_bits = fs::perms::owner_read | fs::perms::owner_write;
  const auto shared_bits = private_bits | fs::perms::group_read | fs::perms::others_read;
  create_database(dir_ / "shared.sqlite", 10);
  fs::permissions(dir_ / "shared.sqlite", shared_bits);
  create_database(dir_ / "copy.sqlite", 1);
  fs::permissions(dir_ / "copy.sqlite", private_bits);
  sb::sqlite_backup(dir_ / "shared.sqlite", dir_ / "copy.sqlite");
  EXPECT_EQ(count_rows(dir_ / "copy.sqlite"), 10);
  EXPECT_EQ(fs::status(dir_ / "copy.sqlite").permissions() & fs::perms::mask, private_bits);

  create_database(dir_ / "private.sqlite", 10);
  fs::permissions(dir_ / "private.sqlite", private_bits);
  fs::permissions(dir_ / "copy.sqlite", shared_bits);
  sb::sqlite_backup(dir_ / "private.sqlite", dir_ / "copy.sqlite");
  EXPECT_EQ(fs::status(dir_ / "copy.sqlite").permissions() & fs::perms::mask, private_bits);
}

}  // namespace
