// How the library fails: wrong arguments, bad sources, a full disk, cancellation, unstable
// sources and copy_function. Each failure must be the documented exception type and kind,
// name the path, and leave no destination and no temporary file behind.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <regex>
#include <sqlite_backup/sqlite_backup.hpp>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "library_fixture.hpp"

namespace {

using namespace sqlite_backup::testing;

class FailuresTest : public OutFolderTest {};

// ErrorKind as its name, so that a wrong kind reads as words in a failure message. A kind
// missing from the table still gets a name of its own (its number), so no two kinds compare equal.
std::string kind_name(sb::ErrorKind kind) {
  using enum sb::ErrorKind;
  static constexpr auto kNames = std::to_array<std::pair<sb::ErrorKind, std::string_view>>(
      {{invalid_source, "invalid_source"},
       {unstable_source, "unstable_source"},
       {io, "io"},
       {destination, "destination"},
       {sqlite, "sqlite"},
       {verification_failed, "verification_failed"},
       {cancelled, "cancelled"}});
  for (const auto& [value, name] : kNames) {
    if (value == kind) return std::string(name);
  }
  return "ErrorKind(" + std::to_string(static_cast<int>(kind)) + ")";
}

// Runs `call`, expecting SqliteBackupError of `kind` whose message names `path`.
// Returns the message (empty when the expectation failed).
template <typename Call>
std::string expect_backup_error(Call&& call, sb::ErrorKind kind, const fs::path& path) {
  try {
    call();
    ADD_FAILURE() << "no exception; expected SqliteBackupError(" << kind_name(kind) << ")";
  } catch (const sb::SqliteBackupError& error) {
    EXPECT_EQ(kind_name(error.kind()), kind_name(kind)) << error.what();
    EXPECT_NE(std::string(error.what()).find(path.string()), std::string::npos)
        << "the message does not name " << path << ": " << error.what();
    EXPECT_EQ(std::string(error.what()).find('\n'), std::string::npos)
        << "not one line: " << error.what();
    return error.what();
  } catch (const std::exception& error) {
    ADD_FAILURE() << "expected SqliteBackupError(" << kind_name(kind)
                  << "), got another exception: " << error.what();
  }
  return {};
}

// ---- Wrong arguments ------------------------------------------------------------------

TEST_F(FailuresTest, MissingSourceIsAFilesystemErrorCarryingThePath) {
  const fs::path missing = dir_ / "missing.sqlite";
  try {
    sb::sqlite_backup(missing, out_dir_ / "copy.sqlite");
    ADD_FAILURE() << "no exception";
  } catch (const fs::filesystem_error& error) {
    EXPECT_EQ(error.code(), std::make_error_code(std::errc::no_such_file_or_directory))
        << error.what();
    EXPECT_EQ(error.path1(), missing);
  }
  try {
    (void)sb::sqlite_backup(missing);
    ADD_FAILURE() << "no exception (memory destination)";
  } catch (const fs::filesystem_error& error) {
    EXPECT_EQ(error.code(), std::make_error_code(std::errc::no_such_file_or_directory));
    EXPECT_EQ(error.path1(), missing);
  }
  EXPECT_TRUE(list_names(out_dir_).empty());
}

void expect_same_file_refused(const fs::path& source, const fs::path& destination) {
  const std::string bytes = read_file(source);
  try {
    sb::sqlite_backup(source, destination);
    ADD_FAILURE() << "no exception for " << source << " -> " << destination;
  } catch (const std::invalid_argument& error) {
    EXPECT_NE(std::string(error.what()).find("can't be the same"), std::string::npos)
        << error.what();
  }
  EXPECT_EQ(read_file(source), bytes) << "the source was changed";
}

TEST_F(FailuresTest, SameSourceAndDestinationIsRefused) {
  create_database(dir_ / "db.sqlite", 10);
  expect_same_file_refused(dir_ / "db.sqlite", dir_ / "db.sqlite");
  expect_same_file_refused(dir_ / "db.sqlite", dir_ / "." / "db.sqlite");
}

TEST_F(FailuresTest, SameFileThroughASymlinkIsRefused) {
  create_database(dir_ / "db.sqlite", 10);
  fs::create_symlink(dir_ / "db.sqlite", dir_ / "link.sqlite");
  expect_same_file_refused(dir_ / "db.sqlite", dir_ / "link.sqlite");
  expect_same_file_refused(dir_ / "link.sqlite", dir_ / "db.sqlite");
  EXPECT_TRUE(fs::is_symlink(dir_ / "link.sqlite"));
}

TEST_F(FailuresTest, SameFileThroughAHardLinkIsRefused) {
  create_database(dir_ / "db.sqlite", 10);
  fs::create_hard_link(dir_ / "db.sqlite", dir_ / "hard.sqlite");
  expect_same_file_refused(dir_ / "db.sqlite", dir_ / "hard.sqlite");
  EXPECT_EQ(fs::hard_link_count(dir_ / "db.sqlite"), 2U) << "the hard link was replaced";
}

// A NUL ends a name for every system call: "db\0.sqlite" would have read "db", another
// database, and written "copy\0" as "copy". Refused before anything is read or written.
TEST_F(FailuresTest, APathHoldingANulIsRefusedNotCutShort) {
  using namespace std::string_literals;
  create_database(dir_ / "db", 10);
  const fs::path with_nul = dir_ / "db\0.sqlite"s;
  const auto expect_refused = [](const auto& call) {
    try {
      call();
      ADD_FAILURE() << "no exception";
    } catch (const std::invalid_argument& error) {
      EXPECT_NE(std::string(error.what()).find("NUL byte"), std::string::npos) << error.what();
    }
  };
  expect_refused([&] { sb::sqlite_backup(with_nul, dir_ / "copy.sqlite"); });
  expect_refused([&] { sb::sqlite_backup(dir_ / "db", dir_ / "copy\0.sqlite"s); });
  expect_refused([&] { sb::sqlite_backup(with_nul); });
  expect_refused([&] { sb::atomic_copy(with_nul, dir_ / "copy.sqlite"); });
  expect_refused([&] { sb::copy_all_files({with_nul}, dir_.path(), {}, 1); });
  expect_refused([&] { sb::glob_database_files(with_nul); });       // would list db's side files
  expect_refused([&] { sb::sqlite_connect_immutable(with_nul); });  // would open "db"
  for (const auto& entry : fs::directory_iterator(dir_.path())) {
    EXPECT_EQ(entry.path().filename().native().find("copy"), std::string::npos)
        << entry.path() << " was written";
  }
}

// The helpers copy files as they are told; onto itself, a file would be emptied by the open
// that truncates the copy. Refused before anything is written.
TEST_F(FailuresTest, TheHelpersNeverCopyAFileOntoItself) {
  create_database(dir_ / "db.sqlite", 10);
  const std::string bytes = read_file(dir_ / "db.sqlite");
  fs::create_symlink(dir_ / "db.sqlite", dir_ / "link.sqlite");
  EXPECT_THROW((void)sb::atomic_copy(dir_ / "db.sqlite", dir_ / "db.sqlite"),
               std::invalid_argument);
  EXPECT_THROW((void)sb::atomic_copy(dir_ / "db.sqlite", dir_ / "link.sqlite"),
               std::invalid_argument);
  // copy_all_files into the database's own folder: each file would be its own copy.
  EXPECT_THROW((void)sb::copy_all_files(sb::glob_database_files(dir_ / "db.sqlite"), dir_.path()),
               std::invalid_argument);
  EXPECT_EQ(read_file(dir_ / "db.sqlite"), bytes);
}

// A write-protected database is not replaced, though its folder allows the rename: SQLite
// refused to write into it in the reference ("attempt to write a readonly database"). Root
// may write any file, so the backup runs in a child process, as nobody when we are root.
TEST_F(FailuresTest, AWriteProtectedDestinationIsNotReplaced) {
  const fs::path shared = dir_ / "shared";
  fs::create_directory(shared);
  fs::permissions(dir_.path(), fs::perms::owner_all | fs::perms::others_exec);
  fs::permissions(shared, fs::perms::all);
  create_database(shared / "source.sqlite", 20);
  create_database(shared / "old.sqlite", 5);
  fs::permissions(shared / "source.sqlite", fs::perms::owner_all | fs::perms::others_read);
  fs::permissions(shared / "old.sqlite",
                  fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
  const std::string before = read_file(shared / "old.sqlite");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::getuid() == 0 &&
        (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0)) {
      ::_exit(10);
    }
    try {
      sb::sqlite_backup(shared / "source.sqlite", shared / "old.sqlite", {.overwrite = true});
      ::_exit(0);
    } catch (const sb::SqliteBackupError& error) {
      ::_exit(error.cause().system_errno == EACCES && error.path() == shared / "old.sqlite" ? 3
                                                                                            : 4);
    } catch (...) {
      ::_exit(5);
    }
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 3) << "0: replaced; 4: another error; 10: cannot become nobody";
  EXPECT_EQ(read_file(shared / "old.sqlite"), before);
  EXPECT_EQ(list_names(shared), (std::vector<std::string>{"old.sqlite", "source.sqlite"}));
}

// ---- Bad sources: each fails cleanly, leaving the destination folder empty -------------

TEST_F(FailuresTest, NotADatabaseIsInvalidSource) {
  write_file(dir_ / "junk.sqlite", random_bytes(64 * 1024));
  expect_backup_error([&] { sb::sqlite_backup(dir_ / "junk.sqlite", out_dir_ / "copy.sqlite"); },
                      sb::ErrorKind::invalid_source, dir_ / "junk.sqlite");
  EXPECT_TRUE(list_names(out_dir_).empty()) << ::testing::PrintToString(list_names(out_dir_));
  expect_backup_error([&] { (void)sb::sqlite_backup(dir_ / "junk.sqlite"); },
                      sb::ErrorKind::invalid_source, dir_ / "junk.sqlite");
}

// What SQLite reported travels with the error, for callers that act on the exact cause (the
// Python package's sqlite_errorcode); errno is only for failures the OS reported.
TEST_F(FailuresTest, AnErrorSqliteReportedCarriesItsResultCode) {
  write_file(dir_ / "junk.sqlite", random_bytes(64 * 1024));
  try {
    (void)sb::sqlite_backup(dir_ / "junk.sqlite");
    ADD_FAILURE() << "random bytes were backed up";
  } catch (const sb::SqliteBackupError& error) {
    EXPECT_EQ(error.cause().sqlite_result, SQLITE_NOTADB) << error.what();
    EXPECT_EQ(error.cause().system_errno, 0) << error.what();
  }
}

TEST_F(FailuresTest, TruncatedDatabaseIsInvalidSource) {
  exec_sql(dir_ / "whole.sqlite",
           "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
           "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)"
           " INSERT INTO t(v) SELECT hex(randomblob(100)) FROM n;");
  const std::string whole = read_file(dir_ / "whole.sqlite");
  write_file(dir_ / "truncated.sqlite", whole.substr(0, whole.size() / 2));
  expect_backup_error(
      [&] { sb::sqlite_backup(dir_ / "truncated.sqlite", out_dir_ / "copy.sqlite"); },
      sb::ErrorKind::invalid_source, dir_ / "truncated.sqlite");
  EXPECT_TRUE(list_names(out_dir_).empty()) << ::testing::PrintToString(list_names(out_dir_));
}

TEST_F(FailuresTest, FolderAsSourceIsInvalidSource) {
  fs::create_directories(dir_ / "folder.sqlite");
  expect_backup_error([&] { sb::sqlite_backup(dir_ / "folder.sqlite", out_dir_ / "copy.sqlite"); },
                      sb::ErrorKind::invalid_source, dir_ / "folder.sqlite");
  EXPECT_TRUE(list_names(out_dir_).empty()) << ::testing::PrintToString(list_names(out_dir_));
}

TEST_F(FailuresTest, FifoAsSourceFailsWithoutHanging) {
  const fs::path fifo = dir_ / "pipe.sqlite";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto outcome = std::async(std::launch::async, [&]() -> std::string {
    try {
      sb::sqlite_backup(fifo, out_dir_ / "copy.sqlite");
      return "no exception";
    } catch (const sb::SqliteBackupError& error) {
      const bool names_path = std::string(error.what()).find(fifo.string()) != std::string::npos;
      if (error.kind() != sb::ErrorKind::invalid_source)
        return "kind " + kind_name(error.kind()) + ": " + error.what();
      return names_path ? "" : std::string("message does not name the FIFO: ") + error.what();
    } catch (const std::exception& error) {
      return std::string("other exception: ") + error.what();
    }
  });
  if (outcome.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    ADD_FAILURE() << "the backup hangs on a FIFO with no writer";
    // Release the blocked reader: a writer that opens and closes gives it end-of-file.
    const int writer = ::open(fifo.c_str(), O_WRONLY);
    if (writer >= 0) ::close(writer);
  }
  EXPECT_EQ(outcome.get(), "");
  EXPECT_TRUE(list_names(out_dir_).empty()) << ::testing::PrintToString(list_names(out_dir_));
}

TEST_F(FailuresTest, EmptyFileIsAnEmptyDatabase) {
  write_file(dir_ / "empty.sqlite", "");
  sb::sqlite_backup(dir_ / "empty.sqlite", out_dir_ / "copy.sqlite");
  EXPECT_EQ(query_int(out_dir_ / "copy.sqlite", "SELECT count(*) FROM sqlite_schema"), 0);
  auto memory = sb::sqlite_backup(dir_ / "empty.sqlite");
  ASSERT_TRUE(memory.has_value());
  EXPECT_EQ(query_int(memory->get(), "SELECT count(*) FROM sqlite_schema"), 0);
  EXPECT_EQ(read_file(dir_ / "empty.sqlite"), "") << "the source was written";
}

// Root reads any file whatever its mode, so the check runs in a child that dropped to the
// unprivileged user "nobody" (65534) when we are root.
TEST_F(FailuresTest, UnreadableSourceIsAnIoErrorNamingIt) {
  const fs::path shared = dir_ / "shared";
  fs::create_directories(shared / "out");
  fs::create_directories(shared / "tmp");
  create_database(shared / "secret.sqlite", 10);
  fs::permissions(shared / "secret.sqlite", fs::perms::none);
  if (!is_root()) {
    expect_backup_error(
        [&] { sb::sqlite_backup(shared / "secret.sqlite", shared / "out" / "copy.sqlite"); },
        sb::ErrorKind::io, shared / "secret.sqlite");
    EXPECT_TRUE(list_names(shared / "out").empty());
    return;
  }
  for (const fs::path& folder : {dir_.path(), shared, shared / "out", shared / "tmp"}) {
    fs::permissions(folder, fs::perms::all);
  }
  const std::string verdict = result_as_nobody(
      [&]() -> std::string {
        ::setenv("TMPDIR", (shared / "tmp").c_str(), 1);
        try {
          sb::sqlite_backup(shared / "secret.sqlite", shared / "out" / "copy.sqlite");
          return "no exception";
        } catch (const sb::SqliteBackupError& error) {
          if (error.kind() != sb::ErrorKind::io) {
            return "kind " + kind_name(error.kind()) + ": " + error.what();
          }
          if (std::string(error.what()).find((shared / "secret.sqlite").string()) ==
              std::string::npos) {
            return std::string("message does not name the source: ") + error.what();
          }
          return "ok";
        } catch (const std::exception& error) {
          return std::string("other exception: ") + error.what();
        }
      },
      shared / "tmp" / "verdict");
  EXPECT_EQ(verdict, "ok");
  EXPECT_TRUE(list_names(shared / "out").empty())
      << ::testing::PrintToString(list_names(shared / "out"));
  EXPECT_TRUE(list_names(shared / "tmp").empty())
      << ::testing::PrintToString(list_names(shared / "tmp"));
}

// 4096 rows of 1000 random bytes: more than 4 MiB, too big for the 1 MiB tmpfs of the
// disk-full tests.
void create_4mib_database(const fs::path& database) {
  exec_sql(database,
           "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);"
           "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4096)"
           " INSERT INTO t(v) SELECT randomblob(1000) FROM n;");
}

TEST_F(FailuresTest, DiskFullAtTheDestinationIsAnIoErrorAndLeavesNothing) {
  auto tmpfs = TmpfsMount::try_mount(1024 * 1024);
  if (!tmpfs)
    GTEST_SKIP() << "needs root and tmpfs to make a 1 MiB filesystem (is_root=" << is_root() << ")";
  create_4mib_database(dir_ / "big.sqlite");
  ASSERT_GE(fs::file_size(dir_ / "big.sqlite"), 4U * 1024 * 1024);
  const fs::path destination = *tmpfs / "copy.sqlite";
  expect_backup_error([&] { sb::sqlite_backup(dir_ / "big.sqlite", destination); },
                      sb::ErrorKind::io, destination);
  EXPECT_TRUE(list_names(tmpfs->path()).empty())
      << ::testing::PrintToString(list_names(tmpfs->path()));
}

TEST_F(FailuresTest, DiskFullKeepsTheOldDestinationIntact) {
  auto tmpfs = TmpfsMount::try_mount(1024 * 1024);
  if (!tmpfs)
    GTEST_SKIP() << "needs root and tmpfs to make a 1 MiB filesystem (is_root=" << is_root() << ")";
  create_4mib_database(dir_ / "big.sqlite");
  const fs::path destination = *tmpfs / "copy.sqlite";
  create_database(destination, 5);
  const std::string old_bytes = read_file(destination);
  try {
    sb::sqlite_backup(dir_ / "big.sqlite", destination);
    ADD_FAILURE() << "a 4 MiB backup fitted into 1 MiB";
  } catch (const sb::SqliteBackupError& error) {
    EXPECT_EQ(kind_name(error.kind()), kind_name(sb::ErrorKind::io)) << error.what();
    // Also through the renaming of the private staged file's errors to the destination.
    EXPECT_EQ(error.cause().system_errno, ENOSPC) << error.what();
  }
  EXPECT_EQ(list_names(tmpfs->path()), std::vector<std::string>{"copy.sqlite"});
  EXPECT_EQ(read_file(destination), old_bytes);
}

// Where SQLite itself writes the destination (the live mode's backup API), it reports
// SQLITE_FULL without an errno: the cause says ENOSPC all the same.
TEST_F(FailuresTest, DiskFullWhileSqliteWritesTheDestinationCarriesEnospc) {
  auto tmpfs = TmpfsMount::try_mount(1024 * 1024);
  if (!tmpfs)
    GTEST_SKIP() << "needs root and tmpfs to make a 1 MiB filesystem (is_root=" << is_root() << ")";
  create_4mib_database(dir_ / "big.sqlite");
  sb::Options options;
  options.copy_use_tempdir = false;
  const fs::path destination = *tmpfs / "copy.sqlite";
  try {
    sb::sqlite_backup(dir_ / "big.sqlite", destination, options);
    ADD_FAILURE() << "a 4 MiB backup fitted into 1 MiB";
  } catch (const sb::SqliteBackupError& error) {
    EXPECT_EQ(kind_name(error.kind()), kind_name(sb::ErrorKind::io)) << error.what();
    EXPECT_EQ(error.cause().sqlite_result, SQLITE_FULL) << error.what();
    EXPECT_EQ(error.cause().system_errno, ENOSPC) << error.what();
    // The full disk is the destination's: the error names it, not the source, which SQLite's
    // backup API was reading when it failed.
    EXPECT_EQ(error.path(), destination) << error.what();
    EXPECT_NE(std::string(error.what()).find(destination.string()), std::string::npos)
        << error.what();
    // ... as the file being written ("cannot back up <destination>" read as if it were read).
    EXPECT_NE(std::string(error.what()).find("cannot write"), std::string::npos) << error.what();
  }
  EXPECT_TRUE(list_names(tmpfs->path()).empty())
      << ::testing::PrintToString(list_names(tmpfs->path()));
}

// In the live mode SQLite's backup API reads the source through a read-only connection. A hot
// journal beside the source is that connection's to roll back, which it cannot
// (SQLITE_READONLY_ROLLBACK): a failure of the file being read, named so, not a write
// failure of the destination.
TEST_F(FailuresTest, LiveModeMeetingAHotJournalNamesTheSourceNotTheDestination) {
  const fs::path source = dir_ / "hot.sqlite";
  {
    OwnerProcess owner(kOwnerExe, source, "hot-journal", 200);
    ASSERT_TRUE(owner.ready()) << owner.output();
    owner.kill_hard();
  }
  ASSERT_TRUE(fs::exists(source.string() + "-journal"));
  sb::Options options;
  options.copy_use_tempdir = false;
  const fs::path destination = out_dir_ / "copy.sqlite";
  try {
    sb::sqlite_backup(source, destination, options);
    ADD_FAILURE() << "a read-only connection rolled a hot journal back";
  } catch (const sb::SqliteBackupError& error) {
    EXPECT_EQ(error.cause().sqlite_result, SQLITE_READONLY_ROLLBACK) << error.what();
    EXPECT_EQ(error.path(), source) << error.what();
    EXPECT_EQ(std::string(error.what()).find(destination.string()), std::string::npos)
        << error.what();
  }
  EXPECT_TRUE(list_names(out_dir_).empty()) << ::testing::PrintToString(list_names(out_dir_));
}

// The disk can also fill after the copy, while the WAL's pages are written into the
// database copy: the error names the destination there too, and nothing is left.
TEST_F(FailuresTest, DiskFullWhileTheWalIsAppliedIsAnIoErrorNamingTheDestination) {
  const fs::path source = dir_ / "live.sqlite";
  OwnerProcess owner(kOwnerExe, source, "wal-hold", 30000);  // every row only in the WAL
  ASSERT_TRUE(owner.ready()) << owner.output();
  sb::sqlite_backup(source, dir_ / "reference.sqlite");
  const std::uint64_t database = fs::file_size(source);
  const std::uint64_t result = fs::file_size(dir_ / "reference.sqlite");
  ASSERT_GT(result, database + 256 * 1024) << "the WAL does not grow the database";
  // Room for the copy of the database and half of what the WAL adds (the WAL itself is not
  // staged: its frames go straight into the copy).
  const std::uint64_t room = (database + (result - database) / 2 + 4095) / 4096 * 4096;
  ASSERT_LT(room, result);
  auto tmpfs = TmpfsMount::try_mount(room);
  if (!tmpfs) {
    GTEST_SKIP() << "needs root and tmpfs to make a small filesystem (is_root=" << is_root() << ")";
  }
  const fs::path destination = *tmpfs / "copy.sqlite";
  const std::string message = expect_backup_error([&] { sb::sqlite_backup(source, destination); },
                                                  sb::ErrorKind::io, destination);
  EXPECT_NE(message.find("No space left"), std::string::npos) << message;
  EXPECT_TRUE(list_names(tmpfs->path()).empty())
      << ::testing::PrintToString(list_names(tmpfs->path()));
}

// The WAL's committed frames go straight from the source's WAL into the database copy: a
// destination filesystem with room for the result alone (less than the database and its WAL
// together, which staging the WAL would need) takes the snapshot, and the snapshot is the one
// a roomy filesystem gets.
TEST_F(FailuresTest, AFileSnapshotOfALiveWalNeedsRoomForTheResultOnly) {
  const fs::path source = dir_ / "live.sqlite";
  OwnerProcess owner(kOwnerExe, source, "wal-hold", 30000);  // every row only in the WAL
  ASSERT_TRUE(owner.ready()) << owner.output();
  sb::sqlite_backup(source, dir_ / "reference.sqlite");
  const std::uint64_t staged_pair = fs::file_size(source) + fs::file_size(source.string() + "-wal");
  const std::uint64_t room = (fs::file_size(dir_ / "reference.sqlite") + 4095) / 4096 * 4096;
  ASSERT_LT(room, staged_pair) << "the WAL adds as much as it takes";
  auto tmpfs = TmpfsMount::try_mount(room);
  if (!tmpfs) {
    GTEST_SKIP() << "needs root and tmpfs to make a small filesystem (is_root=" << is_root() << ")";
  }
  const fs::path destination = *tmpfs / "copy.sqlite";
  sb::sqlite_backup(source, destination);
  EXPECT_TRUE(read_file(destination) == read_file(dir_ / "reference.sqlite"));
  EXPECT_EQ(list_names(tmpfs->path()), std::vector<std::string>{"copy.sqlite"});
}

// A memory destination stages its copy in TMPDIR: a full TMPDIR is an I/O error naming
// it, and the partial staging copy is removed.
TEST_F(FailuresTest, FullTemporaryFolderIsAnIoErrorAndLeavesNothing) {
  auto tmpfs = TmpfsMount::try_mount(1024 * 1024);
  if (!tmpfs)
    GTEST_SKIP() << "needs root and tmpfs to make a 1 MiB filesystem (is_root=" << is_root() << ")";
  create_4mib_database(dir_ / "big.sqlite");
  const ScopedEnv small_tmpdir("TMPDIR", tmpfs->path().string());
  expect_backup_error([&] { (void)sb::sqlite_backup(dir_ / "big.sqlite"); }, sb::ErrorKind::io,
                      tmpfs->path());
  EXPECT_TRUE(list_names(tmpfs->path()).empty())
      << ::testing::PrintToString(list_names(tmpfs->path()));
}

TEST_F(FailuresTest, SourceDeletedDuringTheCopyIsAnIoErrorNamingIt) {
  create_database(dir_ / "doomed.sqlite", 50);
  auto copy_then_delete_source = [](const fs::path& from, const fs::path& to) {
    const bool quiet = sb::atomic_copy(from, to);
    fs::remove(from);  // the owner deleted its database while we copied
    return quiet;
  };
  expect_backup_error(
      [&] {
        sb::sqlite_backup(dir_ / "doomed.sqlite", out_dir_ / "copy.sqlite",
                          {.copy_function = copy_then_delete_source});
      },
      sb::ErrorKind::io, dir_ / "doomed.sqlite");
  EXPECT_TRUE(list_names(out_dir_).empty()) << ::testing::PrintToString(list_names(out_dir_));
}

TEST_F(FailuresTest, DestinationInAMissingFolderIsRefused) {
  create_database(dir_ / "source.sqlite", 5);
  const fs::path destination = dir_ / "no such folder" / "copy.sqlite";
  expect_backup_error([&] { sb::sqlite_backup(dir_ / "source.sqlite", destination); },
                      sb::ErrorKind::destination, destination);
  EXPECT_FALSE(fs::exists(dir_ / "no such folder"));
}

// An empty path names no file: refused before anything is staged or read (it was a whole
// backup ending in a failed rename).
TEST_F(FailuresTest, EmptyDestinationIsRefusedUpFront) {
  create_database(dir_ / "source.sqlite", 5);
  const std::string message =
      expect_backup_error([&] { sb::sqlite_backup(dir_ / "source.sqlite", fs::path()); },
                          sb::ErrorKind::destination, "''");
  EXPECT_NE(message.find("empty path"), std::string::npos) << message;
}

TEST_F(FailuresTest, DestinationThatIsAFolderIsRefused) {
  create_database(dir_ / "source.sqlite", 5);
  fs::create_directories(out_dir_ / "folder.sqlite" / "inside");
  expect_backup_error(
      [&] { sb::sqlite_backup(dir_ / "source.sqlite", out_dir_ / "folder.sqlite"); },
      sb::ErrorKind::destination, out_dir_ / "folder.sqlite");
  EXPECT_EQ(list_names(out_dir_), std::vector<std::string>{"folder.sqlite"});
  EXPECT_EQ(list_names(out_dir_ / "folder.sqlite"), std::vector<std::string>{"inside"});
}

// ---- atomic_copy's errors ----------------------------------------------------------------

// Runs `call` as the unprivileged user nobody (in a child process, when we are root: root
// reads any file whatever its permission bits) and returns what expect_backup_error would
// check, as words: "ok", or what went wrong.
template <typename Call>
std::string io_error_verdict_as_nobody(Call&& call, const fs::path& named,
                                       const fs::path& verdict_file) {
  const auto verdict = [&]() -> std::string {
    try {
      call();
      return "no exception";
    } catch (const sb::SqliteBackupError& error) {
      if (error.kind() != sb::ErrorKind::io) {
        return "kind " + kind_name(error.kind()) + ": " + error.what();
      }
      if (std::string(error.what()).find(named.string()) == std::string::npos) {
        return std::string("message does not name ") + named.string() + ": " + error.what();
      }
      return "ok";
    } catch (const std::exception& error) {
      return std::string("other exception: ") + error.what();
    }
  };
  if (!is_root()) return verdict();
  return result_as_nobody(verdict, verdict_file);
}

// The contract in sqlite_backup.hpp: a missing source is a filesystem_error, as for
// sqlite_backup(); every other I/O error is SqliteBackupError(io) naming the path.
TEST_F(FailuresTest, AtomicCopyOfAMissingSourceIsAFilesystemError) {
  const fs::path missing = dir_ / "missing.bin";
  try {
    sb::atomic_copy(missing, out_dir_ / "copy.bin");
    ADD_FAILURE() << "no exception";
  } catch (const fs::filesystem_error& error) {
    EXPECT_EQ(error.code(), std::make_error_code(std::errc::no_such_file_or_directory))
        << error.what();
    EXPECT_EQ(error.path1(), missing);
  }
  EXPECT_TRUE(list_names(out_dir_).empty()) << ::testing::PrintToString(list_names(out_dir_));
}

TEST_F(FailuresTest, AtomicCopyOfAnUnreadableSourceIsAnIoErrorNamingIt) {
  // Everyone may write into `shared` (the unprivileged child too); only the source is closed.
  const fs::path shared = make_folder(dir_ / "shared");
  for (const fs::path& folder : {dir_.path(), shared}) fs::permissions(folder, fs::perms::all);
  write_file(shared / "secret.bin", "contents");
  fs::permissions(shared / "secret.bin", fs::perms::none);
  EXPECT_EQ(io_error_verdict_as_nobody(
                [&] { sb::atomic_copy(shared / "secret.bin", shared / "copy.bin"); },
                shared / "secret.bin", shared / "verdict"),
            "ok");
  EXPECT_FALSE(fs::exists(shared / "copy.bin"));
  // A path through a regular file cannot be opened by anyone (ENOTDIR).
  expect_backup_error([&] { sb::atomic_copy(shared / "secret.bin" / "x", out_dir_ / "copy.bin"); },
                      sb::ErrorKind::io, shared / "secret.bin" / "x");
  EXPECT_TRUE(list_names(out_dir_).empty()) << ::testing::PrintToString(list_names(out_dir_));
}

TEST_F(FailuresTest, AtomicCopyToAnUncreatableDestinationIsAnIoErrorNamingIt) {
  write_file(dir_ / "source.bin", "contents");
  const fs::path in_missing_folder = dir_ / "no such folder" / "copy.bin";
  expect_backup_error([&] { sb::atomic_copy(dir_ / "source.bin", in_missing_folder); },
                      sb::ErrorKind::io, in_missing_folder);
  EXPECT_FALSE(fs::exists(dir_ / "no such folder"));
  make_folder(out_dir_ / "folder.bin");
  expect_backup_error([&] { sb::atomic_copy(dir_ / "source.bin", out_dir_ / "folder.bin"); },
                      sb::ErrorKind::io, out_dir_ / "folder.bin");
  EXPECT_EQ(list_names(out_dir_), std::vector<std::string>{"folder.bin"});
}

// ---- Cancellation -----------------------------------------------------------------------

TEST_F(FailuresTest, CancelDuringTheCopyStopsWithNoDestinationAndNoLeftovers) {
  create_database(dir_ / "source.sqlite", 200);
  std::atomic<bool> cancel{false};
  int calls = 0;
  sb::Options options{.copy_function =
                          [&](const fs::path& from, const fs::path& to) {
                            ++calls;
                            const bool quiet = sb::atomic_copy(from, to);
                            cancel = true;  // as a SIGINT arriving mid-copy would
                            return quiet;
                          },
                      .cancel = &cancel};
  expect_backup_error(
      [&] { sb::sqlite_backup(dir_ / "source.sqlite", out_dir_ / "copy.sqlite", options); },
      sb::ErrorKind::cancelled, dir_ / "source.sqlite");
  EXPECT_GE(calls, 1) << "copy_function was not used";
  EXPECT_TRUE(list_names(out_dir_).empty()) << ::testing::PrintToString(list_names(out_dir_));

  cancel = false;
  expect_backup_error(
      [&] { (void)sb::sqlite_backup(dir_ / "source.sqlite", std::nullopt, options); },
      sb::ErrorKind::cancelled, dir_ / "source.sqlite");
}

TEST_F(FailuresTest, CancelFromProgressStopsTheBackup) {
  create_database(dir_ / "source.sqlite", 200);
  std::atomic<bool> cancel{false};
  sb::Options options{.on_progress = [&](const sb::CopyProgress&) { cancel = true; },
                      .cancel = &cancel};
  expect_backup_error(
      [&] { sb::sqlite_backup(dir_ / "source.sqlite", out_dir_ / "copy.sqlite", options); },
      sb::ErrorKind::cancelled, dir_ / "source.sqlite");
  EXPECT_TRUE(cancel.load()) << "on_progress was never called";
  EXPECT_TRUE(list_names(out_dir_).empty()) << ::testing::PrintToString(list_names(out_dir_));
}

// ---- Overwrite ----------------------------------------------------------------------------

TEST_F(FailuresTest, OverwriteReplacesAnExistingDestinationAtomically) {
  create_database(dir_ / "source.sqlite", 30);
  create_database(out_dir_ / "copy.sqlite", 3);
  const auto old_inode = folder_state(out_dir_).at("copy.sqlite").inode;
  sb::sqlite_backup(dir_ / "source.sqlite", out_dir_ / "copy.sqlite", {.overwrite = true});
  EXPECT_EQ(count_rows(out_dir_ / "copy.sqlite"), 30);
  EXPECT_NE(folder_state(out_dir_).at("copy.sqlite").inode, old_inode)
      << "rewritten in place, not renamed over";
  EXPECT_EQ(list_names(out_dir_), std::vector<std::string>{"copy.sqlite"});
}

TEST_F(FailuresTest, OverwriteFalseRefusesAnExistingDestination) {
  create_database(dir_ / "source.sqlite", 30);
  write_file(out_dir_ / "copy.sqlite", "precious old data");
  expect_backup_error(
      [&] {
        sb::sqlite_backup(dir_ / "source.sqlite", out_dir_ / "copy.sqlite", {.overwrite = false});
      },
      sb::ErrorKind::destination, out_dir_ / "copy.sqlite");
  EXPECT_EQ(read_file(out_dir_ / "copy.sqlite"), "precious old data");
  EXPECT_EQ(list_names(out_dir_), std::vector<std::string>{"copy.sqlite"});
}

// A database of table `oldtab` at `database`, in WAL mode, and beside it (in `saved`) a copy
// of its WAL taken while its rows were still there, as a writer that died would leave it.
void make_database_and_keep_its_wal(const fs::path& database, const fs::path& saved) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(database.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;"
                         "CREATE TABLE oldtab(v); INSERT INTO oldtab VALUES ('old'), ('older');",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  fs::copy_file(database.string() + "-wal", saved);
  sqlite3_close(db);  // checkpoints and deletes the WAL
}

// A -wal that a dead writer left beside the destination (beside the database the backup
// replaces, or alone where that database was deleted since) belongs to that database: SQLite
// would lay its frames over the snapshot at the first open and show the old tables. The
// backup removes it before the snapshot takes the name.
TEST_F(FailuresTest, AStaleWalBesideTheDestinationIsRemovedNotAppliedToTheSnapshot) {
  create_database(dir_ / "source.sqlite", 30);
  for (const bool database_still_there : {true, false}) {
    SCOPED_TRACE(database_still_there ? "beside the old database" : "alone");
    const fs::path copy = out_dir_ / "copy.sqlite";
    make_database_and_keep_its_wal(copy, dir_ / "saved-wal");
    if (!database_still_there) fs::remove(copy);
    fs::rename(dir_ / "saved-wal", copy.string() + "-wal");
    sb::sqlite_backup(dir_ / "source.sqlite", copy);
    EXPECT_EQ(list_names(out_dir_), std::vector<std::string>{"copy.sqlite"});
    EXPECT_EQ(count_rows(copy), 30);
    EXPECT_EQ(query_text(copy, "SELECT group_concat(name) FROM sqlite_schema"), "t")
        << "the old WAL was applied to the snapshot";
    fs::remove(copy);
  }
}

// A hot journal beside the destination, from a writer killed in a transaction on the database
// the backup replaces: SQLite would roll it back into the snapshot at the first open.
TEST_F(FailuresTest, AHotJournalBesideTheDestinationIsRemovedNotRolledBackIntoTheSnapshot) {
  create_database(dir_ / "source.sqlite", 30);
  const fs::path copy = out_dir_ / "copy.sqlite";
  {
    OwnerProcess owner(kOwnerExe, copy, "hot-journal", 200);
    ASSERT_TRUE(owner.ready()) << owner.output();
    owner.kill_hard();
  }
  ASSERT_TRUE(fs::exists(copy.string() + "-journal"));
  sb::sqlite_backup(dir_ / "source.sqlite", copy);
  EXPECT_EQ(list_names(out_dir_), std::vector<std::string>{"copy.sqlite"});
  EXPECT_EQ(count_rows(copy), 30);
  EXPECT_EQ(query_text(copy, "PRAGMA integrity_check"), "ok");
}

// Overwriting replaces a database, not any file: a file of something else keeps its bytes.
TEST_F(FailuresTest, ADestinationThatIsNotADatabaseIsKept) {
  create_database(dir_ / "source.sqlite", 30);
  write_file(out_dir_ / "notes.txt", "my notes");
  const std::string message = expect_backup_error(
      [&] { sb::sqlite_backup(dir_ / "source.sqlite", out_dir_ / "notes.txt"); },
      sb::ErrorKind::destination, out_dir_ / "notes.txt");
  EXPECT_NE(message.find("not a SQLite database"), std::string::npos) << message;
  // The cause is what SQLite's backup into it would have reported.
  try {
    sb::sqlite_backup(dir_ / "source.sqlite", out_dir_ / "notes.txt");
  } catch (const sb::SqliteBackupError& error) {
    EXPECT_EQ(error.cause().sqlite_result, SQLITE_NOTADB);
  }
  EXPECT_EQ(read_file(out_dir_ / "notes.txt"), "my notes");
  EXPECT_EQ(list_names(out_dir_), std::vector<std::string>{"notes.txt"});
}

// A destination that is a symbolic link names its target, as for cp and SQLite's own open:
// the target is replaced and the link stays a link. A dangling link is refused, as cp refuses
// it (whoever made it chose where the new file would go).
TEST_F(FailuresTest, ASymlinkedDestinationReplacesItsTargetAndStaysALink) {
  create_database(dir_ / "source.sqlite", 30);
  fs::create_directories(out_dir_ / "real");
  create_database(out_dir_ / "real" / "target.sqlite", 3);
  fs::create_symlink(fs::path("real") / "target.sqlite", out_dir_ / "link.sqlite");
  fs::create_symlink(fs::path("real") / "new.sqlite", out_dir_ / "dangling.sqlite");
  sb::sqlite_backup(dir_ / "source.sqlite", out_dir_ / "link.sqlite");
  EXPECT_TRUE(fs::is_symlink(out_dir_ / "link.sqlite"));
  EXPECT_EQ(count_rows(out_dir_ / "real" / "target.sqlite"), 30);
  const std::string message = expect_backup_error(
      [&] { sb::sqlite_backup(dir_ / "source.sqlite", out_dir_ / "dangling.sqlite"); },
      sb::ErrorKind::destination, out_dir_ / "dangling.sqlite");
  EXPECT_NE(message.find("dangling"), std::string::npos) << message;
  EXPECT_EQ(list_names(out_dir_ / "real"), std::vector<std::string>{"target.sqlite"});
}

// A source named as the destination's side file ("x.db-wal" backed up to "x.db") would be
// taken for a stale WAL of the new database and removed: refused, the source untouched.
TEST_F(FailuresTest, ASourceNamedAsASideFileOfTheDestinationIsRefused) {
  create_database(out_dir_ / "x.db-wal", 30);
  const std::string source_bytes = read_file(out_dir_ / "x.db-wal");
  EXPECT_THROW(sb::sqlite_backup(out_dir_ / "x.db-wal", out_dir_ / "x.db"), std::invalid_argument);
  EXPECT_EQ(read_file(out_dir_ / "x.db-wal"), source_bytes);
  EXPECT_EQ(list_names(out_dir_), std::vector<std::string>{"x.db-wal"});
}

// A bind mount shows the source's folder under a second name, which no canonical path
// resolves: the side-file rules still hold there, by the folder's identity. Needs root.
TEST_F(FailuresTest, SideFileNamesAreRefusedThroughABindMountOfTheSourceFolder) {
  auto tmpfs = TmpfsMount::try_mount(16 * 1024 * 1024);
  if (!tmpfs) GTEST_SKIP() << "needs root to mount (is_root=" << is_root() << ")";
  fs::create_directory(*tmpfs / "real");
  fs::create_directory(*tmpfs / "view");
  if (::mount((*tmpfs / "real").c_str(), (*tmpfs / "view").c_str(), nullptr, MS_BIND, nullptr) !=
      0) {
    GTEST_SKIP() << "the kernel refused a bind mount: " << std::strerror(errno);
  }
  struct Unbind {
    fs::path view;
    ~Unbind() { ::umount2(view.c_str(), MNT_DETACH); }
  } const unbind{*tmpfs / "view"};
  create_database(*tmpfs / "real" / "x.db", 30);
  const std::string source_bytes = read_file(*tmpfs / "real" / "x.db");
  EXPECT_THROW(sb::sqlite_backup(*tmpfs / "real" / "x.db", *tmpfs / "view" / "x.db-journal"),
               std::invalid_argument);
  // And the other way round: a source the new database would take for its WAL.
  create_database(*tmpfs / "real" / "y.db-wal", 30);
  EXPECT_THROW(sb::sqlite_backup(*tmpfs / "view" / "y.db-wal", *tmpfs / "real" / "y.db"),
               std::invalid_argument);
  EXPECT_EQ(read_file(*tmpfs / "real" / "x.db"), source_bytes);
  EXPECT_EQ(list_names(*tmpfs / "real"), (std::vector<std::string>{"x.db", "y.db-wal"}));
}

// Files of a side file's name that SQLite would not apply (no WAL or hot-journal magic) are
// not ours to remove.
TEST_F(FailuresTest, FilesBesideTheDestinationThatSqliteWouldIgnoreStay) {
  create_database(dir_ / "source.sqlite", 30);
  write_file(out_dir_ / "copy.sqlite-wal", "my notes on the -wal");
  write_file(out_dir_ / "copy.sqlite-journal", std::string(512, '\0'));  // a zeroed header
  sb::sqlite_backup(dir_ / "source.sqlite", out_dir_ / "copy.sqlite");
  EXPECT_EQ(read_file(out_dir_ / "copy.sqlite-wal"), "my notes on the -wal");
  EXPECT_EQ(read_file(out_dir_ / "copy.sqlite-journal"), std::string(512, '\0'));
  EXPECT_EQ(count_rows(out_dir_ / "copy.sqlite"), 30);
}

// A FIFO (or a device: /dev/null as root) is not replaced by a regular file.
TEST_F(FailuresTest, ADestinationThatIsNotARegularFileIsRefused) {
  create_database(dir_ / "source.sqlite", 30);
  ASSERT_EQ(::mkfifo((out_dir_ / "pipe").c_str(), 0600), 0);
  const std::string message =
      expect_backup_error([&] { sb::sqlite_backup(dir_ / "source.sqlite", out_dir_ / "pipe"); },
                          sb::ErrorKind::destination, out_dir_ / "pipe");
  EXPECT_NE(message.find("not a regular file"), std::string::npos) << message;
  EXPECT_TRUE(fs::is_fifo(out_dir_ / "pipe"));
}

TEST_F(FailuresTest, AFailedBackupLeavesTheOldDestinationIntact) {
  write_file(dir_ / "junk.sqlite", random_bytes(32 * 1024));
  create_database(out_dir_ / "copy.sqlite", 3);
  const std::string old_bytes = read_file(out_dir_ / "copy.sqlite");
  expect_backup_error(
      [&] {
        sb::sqlite_backup(dir_ / "junk.sqlite", out_dir_ / "copy.sqlite", {.overwrite = true});
      },
      sb::ErrorKind::invalid_source, dir_ / "junk.sqlite");
  EXPECT_EQ(read_file(out_dir_ / "copy.sqlite"), old_bytes);
  EXPECT_EQ(list_names(out_dir_), std::vector<std::string>{"copy.sqlite"});

  std::atomic<bool> cancel{false};
  create_database(dir_ / "good.sqlite", 30);
  sb::Options options{.on_progress = [&](const sb::CopyProgress&) { cancel = true; },
                      .cancel = &cancel};
  expect_backup_error(
      [&] { sb::sqlite_backup(dir_ / "good.sqlite", out_dir_ / "copy.sqlite", options); },
      sb::ErrorKind::cancelled, dir_ / "good.sqlite");
  EXPECT_EQ(read_file(out_dir_ / "copy.sqlite"), old_bytes);
  EXPECT_EQ(list_names(out_dir_), std::vector<std::string>{"copy.sqlite"});
}

// ---- copy_function and unstable sources ----------------------------------------------------

// Copies faithfully but claims every file changed during its copy.
bool copy_but_report_changed(const fs::path& from, const fs::path& to) {
  sb::atomic_copy(from, to);
  return false;
}

TEST_F(FailuresTest, StrictModeGivesUpAfterCopyRetryAttemptsNamingTheCount) {
  create_database(dir_ / "source.sqlite", 50);
  const std::string message = expect_backup_error(
      [&] {
        sb::sqlite_backup(dir_ / "source.sqlite", out_dir_ / "copy.sqlite",
                          {.copy_retry = 3, .copy_function = copy_but_report_changed});
      },
      sb::ErrorKind::unstable_source, dir_ / "source.sqlite");
  EXPECT_TRUE(std::regex_search(message, std::regex(R"(\b3\b)")))
      << "the retry count is not named: " << message;
  EXPECT_EQ(message.find("locking_mode"), std::string::npos)
      << "no owner held an exclusive lock, yet the message says one did: " << message;
  EXPECT_TRUE(list_names(out_dir_).empty()) << ::testing::PrintToString(list_names(out_dir_));
}

TEST_F(FailuresTest, LenientModeUsesTheLastCopyAfterCopyRetryAttempts) {
  create_database(dir_ / "source.sqlite", 50);
  sb::Report report;
  sb::sqlite_backup(dir_ / "source.sqlite", out_dir_ / "copy.sqlite",
                    {.copy_retry = 3,
                     .copy_retry_strict = false,
                     .copy_function = copy_but_report_changed,
                     .report = &report});
  EXPECT_EQ(count_rows(out_dir_ / "copy.sqlite"), 50);
  EXPECT_FALSE(report.validated);
  EXPECT_EQ(report.attempts, 3);
  auto memory = sb::sqlite_backup(
      dir_ / "source.sqlite", std::nullopt,
      {.copy_retry = 3, .copy_retry_strict = false, .copy_function = copy_but_report_changed});
  ASSERT_TRUE(memory.has_value());
  EXPECT_EQ(count_rows(memory->get()), 50);
}

// A copy function that reports a change every time (so no copy validates) and leaves the
// database copy torn: every page after page 1 overwritten, page 1 (header, schema) intact.
bool copy_torn_and_report_changed(const fs::path& from, const fs::path& to) {
  sb::atomic_copy(from, to);
  if (from.filename() == "source.sqlite") {
    std::string bytes = read_file(to);
    const std::size_t page_size =
        (static_cast<unsigned char>(bytes[16]) << 8) | static_cast<unsigned char>(bytes[17]);
    for (std::size_t i = page_size; i < bytes.size(); ++i) bytes[i] = static_cast<char>(0xff);
    write_file(to, bytes);
  }
  return false;
}

// copy_retry_strict off keeps the last copy, but not one that is damaged: that is checked
// (the schema, and quick_check) before anything is committed, and reported as the source
// that kept changing (it committed a database that did not open: "malformed").
TEST_F(FailuresTest, LenientModeDoesNotCommitADamagedLastCopy) {
  create_database(dir_ / "source.sqlite", 500);
  const std::string message = expect_backup_error(
      [&] {
        sb::sqlite_backup(dir_ / "source.sqlite", out_dir_ / "copy.sqlite",
                          {.copy_retry = 1,
                           .copy_retry_strict = false,
                           .copy_function = copy_torn_and_report_changed});
      },
      sb::ErrorKind::unstable_source, dir_ / "source.sqlite");
  EXPECT_NE(message.find("damaged"), std::string::npos) << message;
  EXPECT_TRUE(list_names(out_dir_).empty()) << ::testing::PrintToString(list_names(out_dir_));
}

// The copy it keeps did pass that check, and the report says so.
TEST_F(FailuresTest, LenientModeChecksTheLastCopyItKeeps) {
  create_database(dir_ / "source.sqlite", 50);
  sb::Report report;
  sb::sqlite_backup(dir_ / "source.sqlite", out_dir_ / "copy.sqlite",
                    {.copy_retry = 2,
                     .copy_retry_strict = false,
                     .copy_function = copy_but_report_changed,
                     .report = &report});
  EXPECT_FALSE(report.validated);
  EXPECT_EQ(report.verified, sb::Verify::quick);
  EXPECT_EQ(count_rows(out_dir_ / "copy.sqlite"), 50);
}

class CallCounter {
 public:
  explicit CallCounter(bool answer) : answer_(answer) {}
  sb::CopyFunction function() {
    return [this](const fs::path& from, const fs::path& to) {
      sb::atomic_copy(from, to);
      const std::lock_guard lock(mutex_);
      ++calls_[from.filename().string()];
      return answer_;
    };
  }
  std::map<std::string, int> calls() {
    const std::lock_guard lock(mutex_);
    return calls_;
  }

 private:
  bool answer_;
  std::mutex mutex_;
  std::map<std::string, int> calls_;
};

TEST_F(FailuresTest, CopyFunctionCopiesEveryFileOfTheSetOnEveryAttempt) {
  const fs::path source_dir = make_folder(dir_ / "source");
  OwnerProcess owner(kOwnerExe, source_dir / "live.sqlite", "wal-hold", 100);
  ASSERT_TRUE(owner.ready()) << owner.output();

  CallCounter quiet(true);
  sb::Report report;
  sb::sqlite_backup(source_dir / "live.sqlite", out_dir_ / "quiet.sqlite",
                    {.copy_function = quiet.function(), .report = &report});
  EXPECT_EQ(count_rows(out_dir_ / "quiet.sqlite"), 100);
  EXPECT_EQ(quiet.calls(), (std::map<std::string, int>{{"live.sqlite", report.attempts},
                                                       {"live.sqlite-wal", report.attempts}}))
      << "attempts: " << report.attempts;

  CallCounter noisy(false);
  sb::sqlite_backup(
      source_dir / "live.sqlite", out_dir_ / "noisy.sqlite",
      {.copy_retry = 4, .copy_retry_strict = false, .copy_function = noisy.function()});
  EXPECT_EQ(count_rows(out_dir_ / "noisy.sqlite"), 100);
  const auto calls = noisy.calls();
  EXPECT_EQ(calls.count("live.sqlite-shm"), 0U) << "-shm must never be copied";
  for (const std::string name : {"live.sqlite", "live.sqlite-wal"}) {
    const int count = calls.count(name) != 0 ? calls.at(name) : 0;
    EXPECT_GE(count, 4) << name << " was not copied on every one of the 4 attempts";
  }
}

// The stomper rewrites the header's change counter in a loop, but on a loaded machine it
// may simply not be scheduled during a short copy (and then the copy is rightly clean).
// So the copy function waits, after copying, until the counter has moved: an observable
// proof that the source changed during every attempt, whatever the scheduler did.
std::uint32_t change_counter(const fs::path& database) {
  const std::string header = read_file(database).substr(0, 28);
  std::uint32_t value = 0;
  for (int i = 24; i < 28; ++i)
    value = (value << 8) | static_cast<unsigned char>(header.at(static_cast<std::size_t>(i)));
  return value;
}

bool wait_for_counter_change(const fs::path& database, std::uint32_t seen) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (change_counter(database) == seen) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

TEST_F(FailuresTest, ASourceThatNeverSettlesIsUnstable) {
  const fs::path source = dir_ / "stomped.sqlite";
  OwnerProcess stomper(kOwnerExe, source, "stomp", 3000);
  ASSERT_TRUE(stomper.ready()) << stomper.output();
  bool stomper_moved = true;
  int calls = 0;
  auto copy_while_stomped = [&](const fs::path& from, const fs::path& to) {
    ++calls;
    const std::uint32_t seen = change_counter(from);
    const bool quiet = sb::atomic_copy(from, to);
    stomper_moved = stomper_moved && wait_for_counter_change(from, seen);
    return quiet;
  };
  const std::string message = expect_backup_error(
      [&] {
        sb::sqlite_backup(source, out_dir_ / "copy.sqlite",
                          {.copy_retry = 5, .copy_function = copy_while_stomped});
      },
      sb::ErrorKind::unstable_source, source);
  ASSERT_TRUE(stomper_moved) << "the stomper stopped changing the source";
  EXPECT_EQ(calls, 5);
  EXPECT_TRUE(std::regex_search(message, std::regex(R"(\b5\b)")))
      << "the retry count is not named: " << message;
  EXPECT_TRUE(list_names(out_dir_).empty()) << ::testing::PrintToString(list_names(out_dir_));
}

// The same, with a copy function that claims every copy was quiet: the library's own
// whole-set validation (SQLite's header markers) must notice the change by itself.
TEST_F(FailuresTest, AnUnsettledSourceIsCaughtEvenWhenTheCopyFunctionSaysQuiet) {
  const fs::path source = dir_ / "stomped.sqlite";
  OwnerProcess stomper(kOwnerExe, source, "stomp", 3000);
  ASSERT_TRUE(stomper.ready()) << stomper.output();
  bool stomper_moved = true;
  auto copy_and_claim_quiet = [&](const fs::path& from, const fs::path& to) {
    const std::uint32_t seen = change_counter(from);
    sb::atomic_copy(from, to);
    stomper_moved = stomper_moved && wait_for_counter_change(from, seen);
    return true;
  };
  expect_backup_error(
      [&] {
        sb::sqlite_backup(source, out_dir_ / "copy.sqlite",
                          {.copy_retry = 5, .copy_function = copy_and_claim_quiet});
      },
      sb::ErrorKind::unstable_source, source);
  ASSERT_TRUE(stomper_moved) << "the stomper stopped changing the source";
  EXPECT_TRUE(list_names(out_dir_).empty()) << ::testing::PrintToString(list_names(out_dir_));
}

}  // namespace
