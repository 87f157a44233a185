// The sqlite_backup command's destination rules: folders, refusals, `-` (stdout) and
// several sources into one folder.
#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "cli_harness.hpp"

namespace cli_test {
namespace {

TEST(CliDestination, ExistingFolderMeansFolderSlashSourceName) {
  const SourceFolder dir(40);
  fs::create_directory(dir / "backups");
  const Result result = run_cli({dir.source(), (dir / "backups").string()});
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_EQ(list_names(dir / "backups"), std::vector<std::string>{"source.sqlite"});
  EXPECT_EQ(count_rows(dir / "backups" / "source.sqlite"), 40);
  EXPECT_TRUE(contains(result.err, "to " + (dir / "backups" / "source.sqlite").string()))
      << result.err;
}

TEST(CliDestination, ExistingFileIsRefusedAndLeftUntouched) {
  const SourceFolder dir(100);
  write_file(dir / "precious.sqlite", "old data that must survive");
  const auto mtime_before = fs::last_write_time(dir / "precious.sqlite");
  const std::string destination = (dir / "precious.sqlite").string();
  const Result result = run_cli({dir.source(), destination});
  expect_failure(result, 1, destination);
  EXPECT_TRUE(contains(result.err, "already exists")) << result.err;
  EXPECT_EQ(read_file(dir / "precious.sqlite"), "old data that must survive");
  EXPECT_EQ(fs::last_write_time(dir / "precious.sqlite"), mtime_before);
  EXPECT_EQ(list_names(dir.path()), (std::vector<std::string>{"precious.sqlite", "source.sqlite"}));
}

TEST(CliDestination, DanglingSymlinkIsRefusedAndNotFollowed) {
  const SourceFolder dir(100);
  fs::create_symlink(dir / "elsewhere.sqlite", dir / "link.sqlite");
  const std::string destination = (dir / "link.sqlite").string();
  const Result result = run_cli({dir.source(), destination});
  expect_failure(result, 1, destination);
  EXPECT_FALSE(fs::exists(dir / "elsewhere.sqlite"));
}

// "" names no file: refused before anything is read (--debug would log each copy), not after
// a whole backup that then fails at the rename (it was exit 5).
TEST(CliDestination, EmptyDestinationIsRefusedBeforeAnythingIsRead) {
  const SourceFolder dir(100);
  const Result result = run_cli({"--debug", dir.source(), ""});
  expect_failure(result, 1, "''");
  EXPECT_TRUE(contains(result.err, "empty path")) << result.err;
  EXPECT_EQ(list_names(dir.path()), std::vector<std::string>{"source.sqlite"});
}

// A folder path longer than SQLite's own limit (512 bytes after resolving links) that the OS
// accepts: the staged copy inside it must still be opened by SQLite (it failed with exit 5,
// "cannot open <SOURCE> with SQLite: unable to open database file", naming the wrong file).
fs::path make_deep_folder(const fs::path& base, std::size_t at_least) {
  fs::path folder = base;
  while (folder.native().size() < at_least) folder /= std::string(200, 'd');
  fs::create_directories(folder);
  return folder;
}

// The test's own SQLite cannot open the deep result either: checks read a copy of it.
fs::path checkable_copy(const fs::path& deep_file, const TempDir& dir) {
  const fs::path copy = dir / ("check-" + deep_file.filename().string());
  fs::copy_file(deep_file, copy, fs::copy_options::overwrite_existing);
  return copy;
}

TEST(CliDestination, DeepDestinationFolderWorks) {
  const SourceFolder dir(300);
  const fs::path deep = make_deep_folder(dir / "deep", 700);
  const Result result = run_cli({dir.source(), deep.string()});
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_EQ(count_rows(checkable_copy(deep / "source.sqlite", dir)), 300);
  EXPECT_EQ(list_names(deep), std::vector<std::string>{"source.sqlite"});
  // The live mode opens its copy with SQLite there too.
  const Result live =
      run_cli({"--no-copy-use-tempdir", dir.source(), (deep / "live.sqlite").string()});
  ASSERT_EQ(live.exit_code, 0) << describe(live);
  EXPECT_EQ(count_rows(checkable_copy(deep / "live.sqlite", dir)), 300);
  EXPECT_EQ(list_names(deep), (std::vector<std::string>{"live.sqlite", "source.sqlite"}));
}

// A crashed writer's hot journal: SQLite rolls the staged copy back through the staged
// journal, a longer name still.
TEST(CliDestination, DeepDestinationFolderWorksWithAHotJournalToRollBack) {
  if (!owner_available()) GTEST_SKIP() << "sqlite_owner is not built";
  TempDir dir;
  const fs::path source = dir / "crashed.sqlite";
  {
    OwnerProcess owner(kOwnerExe, source, "hot-journal", 300);
    ASSERT_TRUE(owner.ready()) << owner.output();
  }  // killed inside its transaction: the journal stays, hot
  const fs::path deep = make_deep_folder(dir / "deep", 700);
  const Result result = run_cli({source.string(), deep.string()});
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  const fs::path result_copy = checkable_copy(deep / "crashed.sqlite", dir);
  EXPECT_EQ(count_rows(result_copy), 300);
  EXPECT_EQ(query_int(result_copy, "SELECT count(*) FROM t WHERE v LIKE 'rewritten%'"), 0);
  EXPECT_TRUE(integrity_ok(result_copy));
  EXPECT_EQ(list_names(deep), std::vector<std::string>{"crashed.sqlite"});
}

// For a command run as nobody (RunSettings::drop_root): the test folder searchable and the
// source readable by others.
void let_others_read(const TempDir& dir, const fs::path& source) {
  fs::permissions(dir.path(),
                  fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec);
  fs::permissions(source, fs::perms::owner_read | fs::perms::owner_write | fs::perms::others_read);
}

TEST(CliStdout, DeepTemporaryFolderWorks) {
  const SourceFolder dir(300);
  const fs::path deep = make_deep_folder(dir / "tmp", 700);
  const fs::path out = dir / "streamed.sqlite";
  const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  RunSettings settings;
  settings.stdout_fd = fd;
  settings.environment = {{"TMPDIR", deep.string()}};
  const Result result = run_cli({dir.source(), "-"}, settings);
  ::close(fd);
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_EQ(count_rows(out), 300);
  EXPECT_TRUE(list_names(deep).empty());
}

// A TMPDIR this user may not write is passed over for /tmp, as Python's tempfile does (the
// reference staged there): before, the backup failed, "cannot create a temporary folder". (As
// root, the command runs as nobody: root may write any folder.)
TEST(CliStdout, ATemporaryFolderWeMayNotWriteIsPassedOver) {
  TempDir dir;
  create_database(dir / "source.sqlite", 50);
  let_others_read(dir, dir / "source.sqlite");
  fs::create_directory(dir / "readonly");
  fs::permissions(dir / "readonly", fs::perms::owner_read | fs::perms::owner_exec |
                                        fs::perms::others_read | fs::perms::others_exec);
  const fs::path out = dir / "streamed.sqlite";
  const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  RunSettings settings;
  settings.stdout_fd = fd;
  settings.drop_root = ::getuid() == 0;
  settings.environment = {{"TMPDIR", (dir / "readonly").string()}};
  const Result result = run_cli({(dir / "source.sqlite").string(), "-"}, settings);
  ::close(fd);
  fs::permissions(dir / "readonly", fs::perms::owner_all);
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_EQ(count_rows(out), 50);
  EXPECT_TRUE(list_names(dir / "readonly").empty());
}

// A folder this user may write but not read (a drop box, mode 0733) cannot be opened to sync
// it. SQLite's unix VFS passes over such a folder, and so do we, with a warning: before, the
// snapshot was renamed into place and then the run failed (exit 5) over the folder's sync,
// leaving the file there and a retry refused ("it already exists").
TEST(CliDestination, AFolderThatMayBeWrittenButNotReadGetsTheSnapshotAndAWarning) {
  TempDir dir;
  create_database(dir / "source.sqlite", 50);
  let_others_read(dir, dir / "source.sqlite");
  const fs::path drop_box = dir / "drop_box";
  fs::create_directory(drop_box);
  fs::permissions(drop_box, fs::perms::owner_all | fs::perms::group_write | fs::perms::group_exec |
                                fs::perms::others_write | fs::perms::others_exec);
  RunSettings settings;
  settings.drop_root = ::getuid() == 0;
  const Result result =
      run_cli({(dir / "source.sqlite").string(), drop_box.string() + "/"}, settings);
  fs::permissions(drop_box, fs::perms::owner_all);
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_NE(result.err.find("cannot be synced"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("drop_box"), std::string::npos) << result.err;
  EXPECT_EQ(list_names(drop_box), std::vector<std::string>{"source.sqlite"});
  EXPECT_EQ(count_rows(drop_box / "source.sqlite"), 50);
}

// A destination inside a folder this user may not search cannot even be looked at: an I/O
// error (exit 5, "permission denied" in the table), as the same failure on the source side is,
// not a refused destination (exit 1).
TEST(CliDestination, ADestinationWeMayNotLookAtIsAnIoError) {
  TempDir dir;
  create_database(dir / "source.sqlite", 20);
  let_others_read(dir, dir / "source.sqlite");
  fs::create_directory(dir / "locked");
  fs::permissions(dir / "locked", fs::perms::owner_all);
  RunSettings settings;
  settings.drop_root = ::getuid() == 0;
  if (!settings.drop_root) GTEST_SKIP() << "needs root, to run the command as another user";
  const Result result = run_cli(
      {(dir / "source.sqlite").string(), (dir / "locked" / "copy.sqlite").string()}, settings);
  EXPECT_EQ(result.exit_code, 5) << describe(result);
  EXPECT_NE(result.err.find("Permission denied"), std::string::npos) << result.err;
  EXPECT_TRUE(list_names(dir / "locked").empty());
}

// A TMPDIR that passes a permission check but where nothing can be made (/proc, as root) is
// passed over too, as tempfile does, which tries to create a file. Before, root's backup to
// `-` failed there, "cannot create a temporary folder in /proc".
TEST(CliStdout, ATemporaryFolderWhereNothingCanBeMadeIsPassedOver) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root: only root's permission check lets /proc through";
  }
  const SourceFolder dir(50);
  const fs::path out = dir / "streamed.sqlite";
  const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  RunSettings settings;
  settings.stdout_fd = fd;
  settings.environment = {{"TMPDIR", "/proc"}};
  const Result result = run_cli({dir.source(), "-"}, settings);
  ::close(fd);
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_EQ(count_rows(out), 50);
}

// The staging folder's own lock file has a name of its own; a source of that name is staged
// under another. Staged under it, the copy replaced the lock file, and the next run beside
// took that unlocked copy for the lock of a dead run and removed the live run's folder.
TEST(CliDestination, SourceNamedLikeTheStagingLockFileKeepsItsFolderLocked) {
  if (!owner_available()) GTEST_SKIP() << "sqlite_owner is not built";
  const TempDir dir(TempDir::memory_base());
  const fs::path source = dir / ".sqlite_backup-owner.lock";
  make_large_database(source, kStompedMib);
  fs::create_directory(dir / "out");
  const OwnerProcess stomper(kOwnerExe, source, "stomp", 100);
  ASSERT_TRUE(stomper.ready()) << stomper.output();
  Child live(kCliExe,
             {"--debug", "--copy-retry", "1000000", source.string(), (dir / "out").string()});
  ASSERT_TRUE(live.read_until([](const std::string& err) {
    return contains(err, "copying again");
  })) << live.err_so_far();
  const SourceFolder small(20);
  const Result next = run_cli({small.source(), (dir / "out" / "next.sqlite").string()});
  ASSERT_EQ(next.exit_code, 0) << describe(next);
  const auto names = list_names(dir / "out");
  EXPECT_EQ(
      std::count_if(names.begin(), names.end(),
                    [](const std::string& name) { return contains(name, ".sqlite_backup-"); }),
      1)
      << "the live run's staging folder was removed: " << ::testing::PrintToString(names);
  live.send(SIGINT);
  const Result live_result = live.finish();
  EXPECT_EQ(live_result.exit_code, 130) << "its folder was left alone: " << describe(live_result);
  EXPECT_EQ(list_names(dir / "out"), std::vector<std::string>{"next.sqlite"});
}

TEST(CliDestination, MissingParentFolderIsRefused) {
  const SourceFolder dir(100);
  const std::string destination = (dir / "no" / "such" / "copy.sqlite").string();
  const Result result = run_cli({dir.source(), destination});
  expect_failure(result, 1, destination);
  EXPECT_TRUE(contains(result.err, "does not exist")) << result.err;
  EXPECT_EQ(list_names(dir.path()), std::vector<std::string>{"source.sqlite"});
}

TEST(CliDestination, FolderAlreadyHoldingTheNameIsRefused) {
  const SourceFolder dir(100);
  fs::create_directory(dir / "backups");
  write_file(dir / "backups" / "source.sqlite", "an older backup");
  const Result result = run_cli({dir.source(), (dir / "backups").string()});
  expect_failure(result, 1, (dir / "backups" / "source.sqlite").string());
  EXPECT_EQ(read_file(dir / "backups" / "source.sqlite"), "an older backup");
  EXPECT_EQ(list_names(dir / "backups"), std::vector<std::string>{"source.sqlite"});
}

TEST(CliDestination, SourceAsItsOwnDestinationIsRefused) {
  const SourceFolder dir(10);
  const std::string source = dir.source();
  const Result result = run_cli({source, dir.path().string()});
  expect_failure(result, 1, source);
  EXPECT_EQ(count_rows(source), 10);
}

// Bare relative names, as a user types them in the folder: the destination does not exist
// yet, and its name must still be compared with the source's absolute one. Either way round
// the backup would write over a live database's side file, or remove the source as a stale one.
TEST(CliDestination, RelativeNamesOfADatabaseAndItsSideFileAreRefused) {
  TempDir dir;
  create_database(dir / "x.db", 10);
  create_database(dir / "y.db-wal", 10);
  const std::string database = read_file(dir / "x.db");
  const std::string side_file = read_file(dir / "y.db-wal");
  RunSettings in_folder;
  in_folder.working_directory = dir.path();
  for (const auto& [source, destination] : std::vector<std::pair<std::string, std::string>>{
           {"x.db", "x.db-wal"}, {"x.db", "x.db-journal"}, {"y.db-wal", "y.db"}}) {
    const Result result = run_cli({source, destination}, in_folder);
    EXPECT_EQ(result.exit_code, 1) << source << " -> " << destination << ": " << describe(result);
    EXPECT_TRUE(contains(result.err, "side file")) << result.err;
  }
  EXPECT_EQ(read_file(dir / "x.db"), database);
  EXPECT_EQ(read_file(dir / "y.db-wal"), side_file);
  EXPECT_EQ(list_names(dir.path()), (std::vector<std::string>{"x.db", "y.db-wal"}));
}

// `-`: the finished database on stdout.
TEST(CliStdout, StreamsAValidDatabaseIntoAPipe) {
  const SourceFolder dir(500);
  TempDir staging;  // TMPDIR of the child: where `-` stages its snapshot
  RunSettings settings;
  settings.environment["TMPDIR"] = staging.path().string();
  const Result result = run_cli({dir.source(), "-"}, settings);
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  ASSERT_GE(result.out.size(), 100u);
  EXPECT_EQ(result.out.substr(0, 16), std::string("SQLite format 3\0", 16));
  write_file(dir / "streamed.sqlite", result.out);
  EXPECT_EQ(count_rows(dir / "streamed.sqlite"), 500);
  EXPECT_TRUE(integrity_ok(dir / "streamed.sqlite"));
  EXPECT_TRUE(list_names(staging.path()).empty()) << "the staged snapshot is removed";
  EXPECT_EQ(lines_of(result.err).size(), 1u) << result.err;
}

TEST(CliStdout, RefusesATerminal) {
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0 ||
      ::ptsname(master) == nullptr) {
    if (master >= 0) ::close(master);
    GTEST_SKIP() << "no pseudo-terminal available (posix_openpt failed)";
  }
  const int slave = ::open(::ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(slave, 0);
  const SourceFolder dir(100);
  RunSettings settings;
  settings.stdout_fd = slave;
  const Result result = run_cli({dir.source(), "-"}, settings);
  ::close(slave);
  ::close(master);
  expect_failure(result, 2, "terminal");
}

TEST(CliStdout, WithJsonIsAUsageError) {
  const SourceFolder dir(100);
  const Result result = run_cli({"--json", dir.source(), "-"});
  expect_failure(result, 2, "--json");
  EXPECT_TRUE(result.out.empty());
}

TEST(CliStdout, WithSeveralSourcesIsAUsageError) {
  TempDir dir;
  create_database(dir / "a.sqlite", 100);
  create_database(dir / "b.sqlite", 100);
  const Result result = run_cli({(dir / "a.sqlite").string(), (dir / "b.sqlite").string(), "-"});
  EXPECT_EQ(result.exit_code, 2) << describe(result);
  EXPECT_EQ(lines_of(result.err).size(), 1u) << result.err;
  EXPECT_TRUE(result.out.empty());
}

// Several sources into one folder.
// The summary is one line whatever the names hold: a newline in a failed source's name is
// shown as a space, inside quotes (it once split the summary in two).
TEST(CliSeveralSources, TheSummaryStaysOneLineWithANewlineInAName) {
  TempDir dir;
  create_database(dir / "one.sqlite", 11);
  fs::create_directory(dir / "out");
  const Result result = run_cli(
      {(dir / "one.sqlite").string(), (dir / "bad\nname.sqlite").string(), (dir / "out").string()});
  EXPECT_EQ(result.exit_code, 2) << describe(result);
  const auto lines = lines_of(result.err);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back(),
            "sqlite_backup: backed up 1 of 2; failed: '" + (dir / "bad name.sqlite").string() + "'")
      << result.err;
}

TEST(CliSeveralSources, CarriesOnPastFailuresAndSummarises) {
  TempDir dir;
  create_database(dir / "one.sqlite", 11);
  create_database(dir / "two.sqlite", 22);
  write_file(dir / "junk.sqlite", std::string(8192, 'j'));
  fs::create_directory(dir / "out");
  const Result result = run_cli({"--json", (dir / "one.sqlite").string(),
                                 (dir / "junk.sqlite").string(), (dir / "missing.sqlite").string(),
                                 (dir / "two.sqlite").string(), (dir / "out").string()});
  // Two different failure classes (3: not a database, 2: missing source) -> 1.
  EXPECT_EQ(result.exit_code, 1) << describe(result);
  EXPECT_EQ(list_names(dir / "out"), (std::vector<std::string>{"one.sqlite", "two.sqlite"}));
  EXPECT_EQ(count_rows(dir / "out" / "one.sqlite"), 11);
  EXPECT_EQ(count_rows(dir / "out" / "two.sqlite"), 22);
  const auto lines = lines_of(result.err);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back(),
            "sqlite_backup: backed up 2 of 4; failed: " + (dir / "junk.sqlite").string() + ", " +
                (dir / "missing.sqlite").string())
      << result.err;
  const auto records = lines_of(result.out);
  ASSERT_EQ(records.size(), 4u) << result.out;
  EXPECT_TRUE(contains(records[0], "\"ok\":true"));
  EXPECT_TRUE(contains(records[1], "\"ok\":false"));
  EXPECT_TRUE(contains(records[1], "\"exit_code\":3"));
  EXPECT_TRUE(contains(records[2], "\"ok\":false"));
  EXPECT_TRUE(contains(records[2], "\"exit_code\":2"));
  EXPECT_TRUE(contains(records[3], "\"ok\":true"));
}

TEST(CliSeveralSources, SharedFailureClassIsTheExitCode) {
  TempDir dir;
  create_database(dir / "good.sqlite", 100);
  write_file(dir / "junk1.sqlite", std::string(4096, 'a'));
  write_file(dir / "junk2.sqlite", std::string(4096, 'b'));
  fs::create_directory(dir / "out");
  const Result result = run_cli({(dir / "junk1.sqlite").string(), (dir / "good.sqlite").string(),
                                 (dir / "junk2.sqlite").string(), (dir / "out").string()});
  EXPECT_EQ(result.exit_code, 3) << describe(result);
  EXPECT_EQ(list_names(dir / "out"), std::vector<std::string>{"good.sqlite"});
  EXPECT_TRUE(contains(result.err, "backed up 1 of 3")) << result.err;
}

TEST(CliSeveralSources, AllGoodExitsZero) {
  TempDir dir;
  create_database(dir / "a.sqlite", 1);
  create_database(dir / "b.sqlite", 2);
  fs::create_directory(dir / "out");
  const Result result =
      run_cli({(dir / "a.sqlite").string(), (dir / "b.sqlite").string(), (dir / "out").string()});
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_EQ(count_rows(dir / "out" / "a.sqlite"), 1);
  EXPECT_EQ(count_rows(dir / "out" / "b.sqlite"), 2);
  EXPECT_TRUE(contains(result.err, "sqlite_backup: backed up 2 of 2\n")) << result.err;
}

TEST(CliSeveralSources, DestinationMustBeAnExistingFolder) {
  TempDir dir;
  create_database(dir / "a.sqlite", 100);
  create_database(dir / "b.sqlite", 100);
  const std::string destination = (dir / "not-there").string();
  const Result result =
      run_cli({(dir / "a.sqlite").string(), (dir / "b.sqlite").string(), destination});
  expect_failure(result, 1, destination);
  EXPECT_EQ(list_names(dir.path()), (std::vector<std::string>{"a.sqlite", "b.sqlite"}));
}

}  // namespace
}  // namespace cli_test

namespace cli_test {
namespace {

TEST(CliStdout, ReaderThatGoesAwayIsAnIoErrorNotASilentDeath) {
  const SourceFolder dir(20000);  // more than a pipe holds
  TempDir staging;
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  ::close(pipe_fds[0]);  // nobody will ever read
  RunSettings settings;
  settings.stdout_fd = pipe_fds[1];
  settings.environment["TMPDIR"] = staging.path().string();
  const Result result = run_cli({dir.source(), "-"}, settings);
  ::close(pipe_fds[1]);
  EXPECT_EQ(result.killed_by, 0) << "SIGPIPE must not kill it silently";
  EXPECT_EQ(result.exit_code, 5) << describe(result);
  EXPECT_EQ(lines_of(result.err).size(), 1u) << result.err;
  EXPECT_TRUE(contains(result.err, "sqlite_backup: error: ")) << result.err;
  EXPECT_TRUE(list_names(staging.path()).empty()) << "the staged snapshot is removed";
}

// A stdout pipe that another process made non-blocking refuses writes while it is full
// (EAGAIN): the stream waits for room, where it used to fail with exit 5. The pipe is read
// only once it is full, so the command has met a full pipe by then.
TEST(CliStdout, ANonBlockingPipeThatFillsUpIsWaitedFor) {
  const SourceFolder dir(20000);  // more than a pipe holds
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  ASSERT_EQ(::fcntl(pipe_fds[1], F_SETFL, O_NONBLOCK), 0);
  RunSettings settings;
  settings.stdout_fd = pipe_fds[1];
  Child cli(kCliExe, {dir.source(), "-"}, settings);
  // Full: our own write end polls as not writable (no free slot), as the command's does.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    pollfd entry{pipe_fds[1], POLLOUT, 0};
    if (::poll(&entry, 1, 0) == 0) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the pipe never filled";
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // (polling a condition)
  }
  ::close(pipe_fds[1]);
  std::string streamed;
  char buffer[65536];
  for (ssize_t got; (got = ::read(pipe_fds[0], buffer, sizeof buffer)) != 0;) {
    if (got < 0 && errno == EINTR) continue;
    ASSERT_GT(got, 0) << std::strerror(errno);
    streamed.append(buffer, static_cast<std::size_t>(got));
  }
  ::close(pipe_fds[0]);
  const Result result = cli.finish();
  EXPECT_EQ(result.exit_code, 0) << describe(result);
  write_file(dir / "streamed.sqlite", streamed);
  EXPECT_EQ(count_rows(dir / "streamed.sqlite"), 20000);
}

// Calls that leave no trace in the result, seen from outside by strace: a backup of `source`
// into `destination` traced for `calls` (-y: each descriptor shown with its path). Returns
// the trace's lines, or nullopt with `problem` set when strace or the backup failed.
// Runs where strace is installed and may trace (it needs ptrace); callers say why otherwise.
std::optional<std::vector<std::string>> traced_backup(const std::string& source,
                                                      const fs::path& destination,
                                                      const std::vector<std::string>& flags,
                                                      const std::string& calls,
                                                      std::string& problem) {
  const fs::path trace = destination.string() + ".strace";
  std::vector<std::string> args{"-f", "-y",           "-qq",           "-e", "trace=" + calls,
                                "-o", trace.string(), kCliExe.string()};
  args.insert(args.end(), flags.begin(), flags.end());
  args.push_back(source);
  args.push_back(destination.string());
  Child child("/usr/bin/strace", args);
  const Result result = child.finish();
  if (result.exit_code != 0 || !fs::exists(destination)) {
    problem = describe(result);
    return std::nullopt;
  }
  return lines_of(read_file(trace));
}

// The fsyncs that make the snapshot durable: the default makes them, --no-sync none.
int fsync_calls_of_a_backup(const SourceFolder& dir, const std::string& name,
                            const std::vector<std::string>& flags, std::string& problem) {
  const auto lines =
      traced_backup(dir.source(), dir / name, flags, "fsync,fdatasync,sync_file_range", problem);
  if (!lines) return -1;
  int calls = 0;
  for (const auto& line : *lines) {
    if (contains(line, "fsync(") || contains(line, "fdatasync(")) ++calls;
  }
  return calls;
}

TEST(CliDurability, TheSnapshotIsFsyncedWithItsFolderUnlessNoSyncIsGiven) {
  if (!fs::exists("/usr/bin/strace")) GTEST_SKIP() << "strace is not installed";
  const SourceFolder dir(500);
  std::string problem;
  const int durable = fsync_calls_of_a_backup(dir, "durable.sqlite", {}, problem);
  if (durable < 0 && contains(problem, "ptrace")) {
    GTEST_SKIP() << "strace may not trace here (ptrace refused): " << problem;
  }
  ASSERT_GE(durable, 0) << problem;
  EXPECT_GE(durable, 2) << "expected an fsync of the snapshot and one of its folder";
  const int quick = fsync_calls_of_a_backup(dir, "quick.sqlite", {"--no-sync"}, problem);
  ASSERT_GE(quick, 0) << problem;
  EXPECT_EQ(quick, 0) << "--no-sync still synced";
  EXPECT_EQ(count_rows(dir / "quick.sqlite"), 500);
  EXPECT_EQ(query_text(dir / "quick.sqlite", "PRAGMA integrity_check"), "ok");
}

// A live WAL source: the staged copy of its WAL is applied and deleted before the fsync, so
// only the database copy is handed to the disk early (sync_file_range); and the database
// copy, which applying the WAL has grown to exactly the last commit's size, is not cut to
// that size again (XFS writes out all of a file that was cut when it is closed).
class WalSourceTrace : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists("/usr/bin/strace")) GTEST_SKIP() << "strace is not installed";
    if (!owner_available()) GTEST_SKIP() << "tests/support/sqlite_owner was not built";
    owner_.emplace(kOwnerExe, source_, "wal-hold", 20000);
    ASSERT_TRUE(owner_->ready()) << owner_->output();
    ASSERT_GT(fs::file_size(source_.string() + "-wal"), 0U);
    std::string problem;
    auto lines = traced_backup(source_.string(), dir_ / "copy.sqlite", {},
                               "sync_file_range,ftruncate", problem);
    if (!lines && contains(problem, "ptrace")) {
      GTEST_SKIP() << "strace may not trace here (ptrace refused): " << problem;
    }
    ASSERT_TRUE(lines) << problem;
    lines_ = std::move(*lines);
    EXPECT_EQ(count_rows(dir_ / "copy.sqlite"), 20000);
  }
  [[nodiscard]] std::vector<std::string> calls_of(const std::string& name) const {
    std::vector<std::string> out;
    for (const auto& line : lines_) {
      if (contains(line, name + "(")) out.push_back(line);
    }
    return out;
  }

  TempDir dir_;
  fs::path source_ = dir_ / "live.sqlite";
  std::optional<OwnerProcess> owner_;
  std::vector<std::string> lines_;
};

TEST_F(WalSourceTrace, OnlyTheDatabaseCopyIsWrittenBackEarly) {
  const auto calls = calls_of("sync_file_range");
  ASSERT_FALSE(calls.empty()) << "the durable default starts writing the copy out early";
  for (const auto& call : calls) {
    EXPECT_TRUE(contains(call, "live.sqlite>")) << call;
    EXPECT_FALSE(contains(call, "-wal>")) << call;
  }
}

TEST_F(WalSourceTrace, ADatabaseCopyOfTheRightSizeIsNotCut) {
  const auto calls = calls_of("ftruncate");
  EXPECT_TRUE(calls.empty()) << ::testing::PrintToString(calls);
}

}  // namespace
}  // namespace cli_test
