// The sqlite_backup command's failures: every documented exit code, each with one line on
// stderr naming the path, no partial destination and no temporary leftovers; and
// SIGINT/SIGTERM in the middle of a backup.
#include <gtest/gtest.h>
#include <sys/mount.h>

#include "cli_harness.hpp"

namespace cli_test {
namespace {

// ---- 2: usage errors -------------------------------------------------------------------

TEST(CliUsage, MissingSource) {
  TempDir dir;
  const std::string source = (dir / "missing.sqlite").string();
  const Result result = run_cli({source, (dir / "copy.sqlite").string()});
  expect_failure(result, 2, source);
  EXPECT_TRUE(contains(result.err, "does not exist")) << result.err;
  EXPECT_TRUE(list_names(dir.path()).empty());
}

TEST(CliUsage, SourceIsAFolder) {
  TempDir dir;
  fs::create_directory(dir / "folder.sqlite");
  const std::string source = (dir / "folder.sqlite").string();
  const Result result = run_cli({source, (dir / "copy.sqlite").string()});
  expect_failure(result, 2, source);
  EXPECT_TRUE(contains(result.err, "is a folder")) << result.err;
  EXPECT_EQ(list_names(dir.path()), std::vector<std::string>{"folder.sqlite"});
}

TEST(CliUsage, SourceIsAFifo) {
  TempDir dir;
  ASSERT_EQ(::mkfifo((dir / "fifo.sqlite").c_str(), 0600), 0);
  const std::string source = (dir / "fifo.sqlite").string();
  const Result result = run_cli({source, (dir / "copy.sqlite").string()});
  expect_failure(result, 2, source);
  EXPECT_EQ(list_names(dir.path()), std::vector<std::string>{"fifo.sqlite"});
}

TEST(CliUsage, UnknownFlag) {
  const SourceFolder dir(100);
  const Result result = run_cli({"--frobnicate", dir.source(), (dir / "copy.sqlite").string()});
  expect_failure(result, 2, "--frobnicate");
  EXPECT_EQ(list_names(dir.path()), std::vector<std::string>{"source.sqlite"});
}

TEST(CliUsage, CopyRetryMustBeAtLeastOne) {
  const SourceFolder dir(100);
  for (const char* value : {"0", "-3", "many"}) {
    const Result result =
        run_cli({"--copy-retry", value, dir.source(), (dir / "copy.sqlite").string()});
    EXPECT_EQ(result.exit_code, 2) << value << ": " << describe(result);
    EXPECT_EQ(one_error_line_naming(result, "--copy-retry"), "") << describe(result);
    EXPECT_NE(result.err.find(std::string("'") + value + "' is not a number of attempts"),
              std::string::npos)
        << describe(result);
  }
  EXPECT_EQ(list_names(dir.path()), std::vector<std::string>{"source.sqlite"});
}

TEST(CliUsage, NeedsASourceAndADestination) {
  const SourceFolder dir(100);
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{}, std::vector<std::string>{dir.source()}}) {
    const Result result = run_cli(args);
    expect_failure(result, 2, "DESTINATION");
  }
  EXPECT_EQ(list_names(dir.path()), std::vector<std::string>{"source.sqlite"});
}

// ---- 0: an empty file is an empty database, as SQLite sees it -----------------------------

TEST(CliSource, EmptyFileIsAnEmptyDatabase) {
  TempDir dir;
  write_file(dir / "empty.sqlite", "");
  const Result result = run_cli({(dir / "empty.sqlite").string(), (dir / "copy.sqlite").string()});
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_EQ(query_int(dir / "copy.sqlite", "SELECT count(*) FROM sqlite_schema"), 0);
}

// ---- 3: not a usable database --------------------------------------------------------------

TEST(CliExitCodes, NotADatabaseIsThree) {
  TempDir dir;
  write_file(dir / "notes.sqlite", std::string(8192, 'n'));
  fs::create_directory(dir / "out");
  const std::string source = (dir / "notes.sqlite").string();
  const Result result = run_cli({source, (dir / "out").string()});
  expect_failure(result, 3, source);
  EXPECT_TRUE(list_names(dir / "out").empty()) << "no partial destination, no temporary leftovers";
}

// ---- 4: the source never holds still -------------------------------------------------------

TEST(CliExitCodes, UnstableSourceIsFour) {
  if (!owner_available()) GTEST_SKIP() << "sqlite_owner is not built";
  const StompedSource stomped;
  ASSERT_TRUE(stomped.owner().ready()) << stomped.owner().output();
  const std::string source = stomped.source();
  const Result result = run_cli({"--copy-retry", "3", source, stomped.out().string()});
  expect_failure(result, 4, source);
  EXPECT_TRUE(contains(result.err, "3 times")) << result.err;
  EXPECT_TRUE(list_names(stomped.out()).empty());
}

// ---- 5: I/O errors ---------------------------------------------------------------------

// A folder the backup cannot fill: a tiny tmpfs when we may mount (root), else a folder we
// may not write into (not root). Unmounted at the end.
class FullOrLockedFolder {
 public:
  explicit FullOrLockedFolder(const fs::path& folder) : folder_(folder) {
    fs::create_directory(folder_);
    if (::geteuid() == 0) {
      mounted_ = ::mount("tmpfs", folder_.c_str(), "tmpfs", 0, "size=64k") == 0;
      if (!mounted_) why_not_ = "running as root but cannot mount a tmpfs (no CAP_SYS_ADMIN?)";
    } else {
      fs::permissions(folder_, fs::perms::owner_read | fs::perms::owner_exec);
      locked_ = true;
    }
  }
  FullOrLockedFolder(const FullOrLockedFolder&) = delete;
  FullOrLockedFolder& operator=(const FullOrLockedFolder&) = delete;
  ~FullOrLockedFolder() {
    if (mounted_) ::umount2(folder_.c_str(), MNT_DETACH);
    if (locked_) fs::permissions(folder_, fs::perms::owner_all);
  }
  [[nodiscard]] bool usable() const { return mounted_ || locked_; }
  [[nodiscard]] const std::string& why_not() const { return why_not_; }

 private:
  fs::path folder_;
  bool mounted_ = false;
  bool locked_ = false;
  std::string why_not_;
};

TEST(CliExitCodes, DestinationFolderFullOrUnwritableIsFive) {
  TempDir dir;
  create_database(dir / "big.sqlite", 20000);  // well over 64 KiB
  const fs::path out = dir / "out";
  FullOrLockedFolder folder(out);
  if (!folder.usable()) GTEST_SKIP() << folder.why_not();
  const std::string source = (dir / "big.sqlite").string();
  const Result result = run_cli({source, out.string()});
  expect_failure(result, 5, out.string());
  EXPECT_TRUE(list_names(out).empty()) << "no partial destination, no temporary leftovers";
}

// A file-size limit (`ulimit -f`, systemd's LimitFSIZE=) makes the kernel send SIGXFSZ on the
// write past it, and that signal's default action kills the process: exit 153 with no line of
// our own and the staging folder left behind. Ignored, the write fails with EFBIG instead.
TEST(CliExitCodes, AFileSizeLimitIsAnIoErrorNotASignal) {
  TempDir dir;
  create_database(dir / "big.sqlite", 20000);
  ASSERT_GT(fs::file_size(dir / "big.sqlite"), 256U << 10U);
  const fs::path out = dir / "out";
  fs::create_directory(out);
  RunSettings settings;
  settings.file_size_limit = 128U << 10U;
  const Result result = run_cli({(dir / "big.sqlite").string(), out.string()}, settings);
  expect_failure(result, 5, out.string());
  EXPECT_NE(result.err.find("File too large"), std::string::npos) << result.err;
  EXPECT_TRUE(list_names(out).empty()) << "no partial destination, no temporary leftovers";
}

// Too few descriptors (`ulimit -n`): whichever open fails, one line and exit 5, and nothing
// left in the destination folder. With 4 the staging folder could not be listed for removal
// (that took a descriptor too): it stayed, with a second line about it.
TEST(CliExitCodes, TooFewDescriptorsIsOneLineAndLeavesNothing) {
  TempDir dir;
  create_database(dir / "small.sqlite", 200);
  const fs::path out = dir / "out";
  fs::create_directory(out);
  // (Descriptors the child inherits, from a CI runner say, leave it fewer: with too few the
  // dynamic loader fails before our code runs, exit 127, and that limit proves nothing.)
  int failures_of_ours = 0;
  bool sanitizer_ran_short = false;
  for (rlim_t limit = 4; limit <= 16; ++limit) {
    RunSettings settings;
    settings.open_files_limit = limit;
    const Result result = run_cli({(dir / "small.sqlite").string(), out.string()}, settings);
    if (result.exit_code == 127 && contains(result.err, "error while loading shared libraries")) {
      continue;
    }
    // Under the sanitizers their runtime needs descriptors too (UBSan's type checks read the
    // process's map): short of them it reports errors of its own, and the limit proves nothing.
    if (contains(result.err, "runtime error:") || contains(result.err, "Sanitizer")) {
      sanitizer_ran_short = true;
      continue;
    }
    if (result.exit_code != 0) ++failures_of_ours;
    if (result.exit_code == 0) {
      EXPECT_EQ(count_rows(out / "small.sqlite"), 200) << limit;
      fs::remove(out / "small.sqlite");
    } else {
      EXPECT_EQ(result.exit_code, 5) << limit << ": " << describe(result);
      EXPECT_EQ(lines_of(result.err).size(), 1U) << limit << ": " << result.err;
      EXPECT_NE(result.err.find("Too many open files"), std::string::npos) << result.err;
    }
    EXPECT_TRUE(list_names(out).empty())
        << limit << ": " << ::testing::PrintToString(list_names(out));
  }
  if (failures_of_ours == 0 && sanitizer_ran_short) {
    GTEST_SKIP() << "the sanitizers' runtime ran short of descriptors before our code did";
  }
  EXPECT_GT(failures_of_ours, 0) << "no limit made our own code run short of descriptors";
}

// ---- 6: --verify failed --------------------------------------------------------------------

// A database whose index i no longer matches its definition: quick_check does not look at
// index contents and passes, integrity_check finds every row missing from the index.
void make_database_with_a_bad_index(const fs::path& database) {
  exec_sql(database,
           "CREATE TABLE t(a, b); CREATE INDEX i ON t(a);"
           "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 200)"
           "  INSERT INTO t SELECT x, 1000 - x FROM n;"
           "PRAGMA writable_schema = ON;"
           "UPDATE sqlite_schema SET sql = 'CREATE INDEX i ON t(b)' WHERE name = 'i';");
}

TEST(CliExitCodes, VerifyFailureIsSixAndWritesNothing) {
  TempDir dir;
  make_database_with_a_bad_index(dir / "damaged.sqlite");
  fs::create_directory(dir / "out");
  const std::string source = (dir / "damaged.sqlite").string();
  const Result result = run_cli({"--verify", source, (dir / "out").string()});
  expect_failure(result, 6, source);
  EXPECT_TRUE(contains(result.err, "integrity_check")) << result.err;
  EXPECT_TRUE(list_names(dir / "out").empty()) << "no destination, no temporary leftovers";
  // Without --verify the same source is copied as it is.
  const Result unverified = run_cli({source, (dir / "out").string()});
  EXPECT_EQ(unverified.exit_code, 0) << describe(unverified);
}

// A page SQLite cannot even parse makes the check itself fail with SQLITE_CORRUPT rather
// than list problems; it is the same finding, and the same exit code (it was 3).
void overwrite_page_3_with_noise(const fs::path& database) {
  std::string bytes = read_file(database);
  const std::size_t page_size =
      (static_cast<unsigned char>(bytes[16]) << 8) | static_cast<unsigned char>(bytes[17]);
  ASSERT_GE(bytes.size(), 4 * page_size);
  for (std::size_t i = 2 * page_size; i < 3 * page_size; ++i) bytes[i] = static_cast<char>(0xff);
  write_file(database, bytes);
}

TEST(CliExitCodes, VerifyRunningIntoACorruptPageIsSixToo) {
  TempDir dir;
  exec_sql(dir / "corrupt.sqlite",
           "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
           "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 500)"
           "  INSERT INTO t(v) SELECT printf('%.200c', 'x') FROM n;"
           "CREATE INDEX i ON t(v);");  // page 3: the root of index i
  overwrite_page_3_with_noise(dir / "corrupt.sqlite");
  fs::create_directory(dir / "out");
  const std::string source = (dir / "corrupt.sqlite").string();
  for (const char* verify : {"--verify", "--verify=quick"}) {
    const Result result = run_cli({verify, source, (dir / "out").string()});
    expect_failure(result, 6, source);
    EXPECT_TRUE(contains(result.err, "malformed")) << result.err;
    EXPECT_TRUE(list_names(dir / "out").empty()) << "no destination, no temporary leftovers";
  }
}

// ---- `-`: a snapshot that fails writes no byte --------------------------------------------

// What a reader of `sqlite_backup SRC - | restic backup --stdin` gets when the snapshot fails
// before it is finished and checked: nothing (restic then refuses the empty stream; the README's
// "Many machines" rests on this). Each failure of the pipeline's stages, to a pipe.
TEST(CliStdout, ASnapshotThatFailsWritesNoByte) {
  TempDir dir;
  TempDir staging;  // TMPDIR of the child: where `-` stages its snapshot
  RunSettings settings;
  settings.environment["TMPDIR"] = staging.path().string();
  const auto expect_nothing_written = [&](const std::vector<std::string>& arguments, int exit_code,
                                          const std::string& source) {
    const Result result = run_cli(arguments, settings);
    expect_failure(result, exit_code, source);
    EXPECT_TRUE(result.out.empty())
        << result.out.size() << " bytes on stdout; " << describe(result);
    EXPECT_TRUE(list_names(staging.path()).empty()) << "the staged snapshot is removed";
  };
  // 2: no source. 3: not a database.
  expect_nothing_written({(dir / "missing.sqlite").string(), "-"}, 2, "missing.sqlite");
  write_file(dir / "notes.sqlite", std::string(200000, 'n'));  // more than a pipe holds
  expect_nothing_written({(dir / "notes.sqlite").string(), "-"}, 3, "notes.sqlite");
  // 6: --verify found the snapshot damaged, after it was taken and recovered.
  make_database_with_a_bad_index(dir / "damaged.sqlite");
  exec_sql(dir / "damaged.sqlite",
           "CREATE TABLE pad(v); INSERT INTO pad WITH RECURSIVE "
           "n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 100) "
           "SELECT randomblob(2000) FROM n;");
  expect_nothing_written({"--verify", (dir / "damaged.sqlite").string(), "-"}, 6, "damaged.sqlite");
  // 4: the source never held still for --copy-retry copies.
  if (!owner_available()) GTEST_SKIP() << "sqlite_owner is not built: exit 4 not checked";
  const StompedSource stomped;
  ASSERT_TRUE(stomped.owner().ready()) << stomped.owner().output();
  expect_nothing_written({"--copy-retry", "3", stomped.source(), "-"}, 4, stomped.source());
}

// ---- 130 / 143: interrupted ---------------------------------------------------------------

// The library's debug line when an attempt was spoiled and it tries again.
bool says_copying_again(const std::string& err) { return contains(err, "copying again"); }

void expect_clean_interrupt(int signal_number, int expected_exit_code,
                            const std::string& signal_name) {
  if (!owner_available()) GTEST_SKIP() << "sqlite_owner is not built";
  const StompedSource stomped;
  ASSERT_TRUE(stomped.owner().ready()) << stomped.owner().output();
  const std::string source = stomped.source();
  Child cli(kCliExe, {"--debug", "--copy-retry", "1000000", source, stomped.out().string()});
  // Observable state: the backup is retrying, in the middle of its work.
  const bool retrying = cli.read_until(says_copying_again);
  ASSERT_TRUE(retrying) << cli.err_so_far();
  cli.send(signal_number);
  const Result result = cli.finish();
  EXPECT_EQ(result.killed_by, 0) << "one signal ends it through the handler, not by default action";
  EXPECT_EQ(result.exit_code, expected_exit_code) << describe(result);
  // Debug lines start with '['; everything else is what a user reads: one line.
  std::vector<std::string> user_lines;
  for (const auto& line : lines_of(result.err)) {
    if (line.front() != '[') user_lines.push_back(line);
  }
  ASSERT_EQ(user_lines.size(), 1u) << result.err;
  EXPECT_TRUE(contains(user_lines[0], "sqlite_backup: error: interrupted by " + signal_name))
      << user_lines[0];
  EXPECT_TRUE(contains(user_lines[0], source)) << user_lines[0];
  EXPECT_TRUE(contains(user_lines[0], "nothing was written")) << user_lines[0];
  EXPECT_TRUE(list_names(stomped.out()).empty()) << "no destination, no temporary leftovers";
}

TEST(CliSignals, SigintMidBackupExits130AndLeavesNothing) {
  expect_clean_interrupt(SIGINT, 130, "SIGINT");
}

TEST(CliSignals, SigtermMidBackupExits143AndLeavesNothing) {
  expect_clean_interrupt(SIGTERM, 143, "SIGTERM");
}

// A closed terminal (HUP) and ^\ (QUIT) stop a backup just as cleanly: by default they would
// end the process on the spot and leave its staging folder beside the destination.
TEST(CliSignals, SighupMidBackupExits129AndLeavesNothing) {
  expect_clean_interrupt(SIGHUP, 129, "SIGHUP");
}

TEST(CliSignals, SigquitMidBackupExits131AndLeavesNothing) {
  expect_clean_interrupt(SIGQUIT, 131, "SIGQUIT");
}

// Streaming to stdout, an interrupt cannot say "nothing was written": bytes may have gone
// down the pipe (here none had: the backup was still retrying). It says so without claiming
// either, and its staging folder in TMPDIR is gone.
TEST(CliSignals, SigintWhileStreamingSaysWhatReachedStdoutIsIncomplete) {
  if (!owner_available()) GTEST_SKIP() << "sqlite_owner is not built";
  const StompedSource stomped;
  ASSERT_TRUE(stomped.owner().ready()) << stomped.owner().output();
  const TempDir temporary;
  RunSettings settings;
  settings.environment["TMPDIR"] = temporary.path().string();
  Child cli(kCliExe, {"--debug", "--copy-retry", "1000000", stomped.source(), "-"}, settings);
  ASSERT_TRUE(cli.read_until(says_copying_again)) << cli.err_so_far();
  cli.send(SIGINT);
  const Result result = cli.finish();
  EXPECT_EQ(result.exit_code, 130) << describe(result);
  std::vector<std::string> user_lines;
  for (const auto& line : lines_of(result.err)) {
    if (line.front() != '[') user_lines.push_back(line);
  }
  ASSERT_EQ(user_lines.size(), 1u) << result.err;
  EXPECT_TRUE(contains(user_lines[0], "interrupted by SIGINT")) << user_lines[0];
  EXPECT_TRUE(contains(user_lines[0], "what reached stdout, if anything, is incomplete"))
      << user_lines[0];
  EXPECT_FALSE(contains(user_lines[0], "nothing was written")) << user_lines[0];
  EXPECT_TRUE(result.out.empty()) << "the stream had not begun";
  EXPECT_TRUE(list_names(temporary.path()).empty()) << "no staging folder left in TMPDIR";
}

// The staging folders in `folder` (".<name>.sqlite_backup-XXXXXX").
std::vector<std::string> staging_folders_in(const fs::path& folder) {
  std::vector<std::string> found;
  for (const auto& name : list_names(folder)) {
    if (contains(name, ".sqlite_backup-")) found.push_back(name);
  }
  return found;
}

// SIGKILL cannot be handled: a run killed so leaves its staging folder. The next run beside
// it removes it (its owner's lock died with it), and keeps the folder of a run still going.
TEST(CliSignals, FolderOfARunKilledOutrightIsRemovedByTheNextOneButNotThatOfALiveRun) {
  if (!owner_available()) GTEST_SKIP() << "sqlite_owner is not built";
  const StompedSource stomped;
  ASSERT_TRUE(stomped.owner().ready()) << stomped.owner().output();
  const std::vector<std::string> retry_forever = {"--debug", "--copy-retry", "1000000"};
  const auto backup_of_stomped = [&](const std::string& name) {
    std::vector<std::string> args = retry_forever;
    args.push_back(stomped.source());
    args.push_back((stomped.out() / name).string());
    return args;
  };

  // A run that keeps going (its folder is in use throughout), then one killed outright (its
  // own start left the live run's folder alone).
  Child live(kCliExe, backup_of_stomped("live.sqlite"));
  ASSERT_TRUE(live.read_until(says_copying_again)) << live.err_so_far();
  const auto live_folder = staging_folders_in(stomped.out());
  ASSERT_EQ(live_folder.size(), 1u);
  Child killed(kCliExe, backup_of_stomped("killed.sqlite"));
  ASSERT_TRUE(killed.read_until(says_copying_again)) << killed.err_so_far();
  killed.send(SIGKILL);
  EXPECT_EQ(killed.finish().killed_by, SIGKILL);
  auto left_by_killed = staging_folders_in(stomped.out());
  ASSERT_EQ(left_by_killed.size(), 2u) << "SIGKILL leaves the folder (nothing can remove it)";
  EXPECT_TRUE(contains(left_by_killed[0] + left_by_killed[1], "killed.sqlite"));

  // Any later run beside them tidies up.
  const SourceFolder small(20);
  const Result next = run_cli({small.source(), (stomped.out() / "next.sqlite").string()});
  ASSERT_EQ(next.exit_code, 0) << describe(next);
  const auto after_next = staging_folders_in(stomped.out());
  EXPECT_EQ(after_next, live_folder) << "the killed run's folder is gone, the live run's kept";

  live.send(SIGINT);
  const Result live_result = live.finish();
  EXPECT_EQ(live_result.exit_code, 130) << describe(live_result);
  EXPECT_EQ(list_names(stomped.out()), std::vector<std::string>{"next.sqlite"});
}

}  // namespace
}  // namespace cli_test

namespace cli_test {
namespace {

TEST(CliSignals, InterruptWithSeveralSourcesStopsAndSaysWhatWasNotAttempted) {
  if (!owner_available()) GTEST_SKIP() << "sqlite_owner is not built";
  const StompedSource stomped;
  const TempDir& dir = stomped.dir();
  create_database(dir / "first.sqlite", 5);
  create_database(dir / "last.sqlite", 7);
  ASSERT_TRUE(stomped.owner().ready()) << stomped.owner().output();
  Child cli(kCliExe, {"--debug", "--copy-retry", "1000000", (dir / "first.sqlite").string(),
                      stomped.source(), (dir / "last.sqlite").string(), stomped.out().string()});
  const bool retrying = cli.read_until(says_copying_again);
  ASSERT_TRUE(retrying) << cli.err_so_far();
  cli.send(SIGINT);
  const Result result = cli.finish();
  EXPECT_EQ(result.exit_code, 130) << describe(result);
  // The one before the signal is kept; the interrupted one and the one after are not there.
  EXPECT_EQ(list_names(stomped.out()), std::vector<std::string>{"first.sqlite"});
  const auto lines = lines_of(result.err);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back(),
            "sqlite_backup: backed up 1 of 3; failed: " + stomped.source() +
                "; not attempted (interrupted by SIGINT): " + (dir / "last.sqlite").string())
      << result.err;
}

}  // namespace
}  // namespace cli_test

namespace cli_test {
namespace {

// ---- 5: a source we may not reach ----------------------------------------------------------

// A folder on the way that we may not search: permission denied, an I/O error (5) as for an
// unreadable file, not a usage error. (As root, the command runs as nobody: root may search
// any folder.)
TEST(CliSource, ASourceInAFolderWeMayNotSearchIsAnIoError) {
  TempDir dir;
  fs::create_directory(dir / "private");
  create_database(dir / "private" / "secret.sqlite", 10);
  // (The test folder itself must be searchable by nobody.)
  fs::permissions(dir.path(), fs::perms::owner_all | fs::perms::others_exec);
  fs::permissions(dir / "private", ::getuid() == 0 ? fs::perms::owner_all : fs::perms::none);
  RunSettings settings;
  settings.drop_root = true;
  if (run_cli({"--version"}, settings).exit_code != 0) {
    fs::permissions(dir / "private", fs::perms::owner_all);
    GTEST_SKIP() << "the user nobody cannot run " << kCliExe << " (a folder on its way is private)";
  }
  const std::string source = (dir / "private" / "secret.sqlite").string();
  const Result result = run_cli({source, "/nonexistent-folder/copy.sqlite"}, settings);
  fs::permissions(dir / "private", fs::perms::owner_all);
  EXPECT_EQ(result.exit_code, 5) << describe(result);
  EXPECT_EQ(one_error_line_naming(result, source), "") << describe(result);
  EXPECT_TRUE(contains(result.err, "Permission denied")) << result.err;
}

// ---- The standard descriptors: closed, full, or the source itself ---------------------------

// Without descriptor 1 the first file the backup opens would take its number, and `-` would
// stream the database into that file (seen: the staging folder's lock file) and report
// success.
TEST(CliOutput, StreamingToAClosedStdoutFailsAndStagesNothing) {
  const SourceFolder dir(100);
  const TempDir temporary;
  RunSettings settings;
  settings.close_stdout = true;
  settings.environment["TMPDIR"] = temporary.path().string();
  const Result result = run_cli({dir.source(), "-"}, settings);
  EXPECT_EQ(result.exit_code, 5) << describe(result);
  EXPECT_EQ(one_error_line_naming(result, "standard output"), "") << describe(result);
  EXPECT_TRUE(contains(result.err, "closed")) << result.err;
  EXPECT_TRUE(list_names(temporary.path()).empty());
  EXPECT_EQ(list_names(dir.path()), std::vector<std::string>{"source.sqlite"});
}

// Runs the command with its stdout or stderr (`fd`) on /dev/full, where every write fails
// (ENOSPC).
Result run_cli_onto_dev_full(const std::vector<std::string>& args, int fd) {
  const int full = ::open("/dev/full", O_WRONLY | O_CLOEXEC);
  if (full < 0) throw std::runtime_error("cannot open /dev/full");
  RunSettings settings;
  (fd == STDOUT_FILENO ? settings.stdout_fd : settings.stderr_fd) = full;
  Result result = run_cli(args, settings);
  ::close(full);
  return result;
}

// A message that cannot be written (stderr full, or closed) changes nothing about the backup:
// it completes and exits 0 (it used to end in std::terminate, 134, after the rename).
TEST(CliOutput, AnUnwritableStderrDoesNotStopTheBackup) {
  const SourceFolder dir(100);
  const Result first =
      run_cli_onto_dev_full({dir.source(), (dir / "to-full.sqlite").string()}, STDERR_FILENO);
  EXPECT_EQ(first.exit_code, 0) << describe(first);
  EXPECT_EQ(count_rows(dir / "to-full.sqlite"), 100);
  RunSettings closed;
  closed.close_stderr = true;
  const Result second = run_cli({dir.source(), (dir / "closed.sqlite").string()}, closed);
  EXPECT_EQ(second.exit_code, 0) << describe(second);
  EXPECT_EQ(count_rows(dir / "closed.sqlite"), 100);
  EXPECT_EQ(list_names(dir.path()),
            (std::vector<std::string>{"closed.sqlite", "source.sqlite", "to-full.sqlite"}));
}

// --json records are the command's output: when stdout does not take them the command fails
// (5), saying so, though the backup itself is kept.
TEST(CliOutput, JsonRecordsThatCannotBeWrittenFailTheCommand) {
  const SourceFolder dir(100);
  const Result result = run_cli_onto_dev_full(
      {"--json", dir.source(), (dir / "copy.sqlite").string()}, STDOUT_FILENO);
  EXPECT_EQ(result.exit_code, 5) << describe(result);
  EXPECT_TRUE(contains(result.err, "cannot write the --json records to standard output"))
      << result.err;
  EXPECT_EQ(count_rows(dir / "copy.sqlite"), 100);
  RunSettings closed;
  closed.close_stdout = true;
  const Result refused = run_cli({"--json", dir.source(), (dir / "never.sqlite").string()}, closed);
  EXPECT_EQ(refused.exit_code, 5) << describe(refused);
  EXPECT_FALSE(fs::exists(dir / "never.sqlite"));
}

// A snapshot streamed onto a full stdout: one line naming it as Linux does (/dev/fd/1, no
// pseudo-name in quotes), exit 5.
TEST(CliOutput, AStreamOntoAFullStdoutNamesIt) {
  const SourceFolder dir(100);
  const Result result = run_cli_onto_dev_full({dir.source(), "-"}, STDOUT_FILENO);
  EXPECT_EQ(result.exit_code, 5) << describe(result);
  EXPECT_EQ(result.err, "sqlite_backup: error: cannot write /dev/fd/1: No space left on device\n")
      << describe(result);
  EXPECT_EQ(list_names(dir.path()), std::vector<std::string>{"source.sqlite"});
}

// `sqlite_backup db - >> db`: stdout is the source itself. Refused before anything is read,
// and the source is untouched.
TEST(CliOutput, AStdoutOpenOnTheSourceIsRefused) {
  const SourceFolder dir(100);
  const std::string before = read_file(dir / "source.sqlite");
  for (const std::string& file :
       {std::string("source.sqlite"), std::string("source.sqlite-journal")}) {
    const int fd = ::open((dir / file).c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    RunSettings settings;
    settings.stdout_fd = fd;
    const Result result = run_cli({dir.source(), "-"}, settings);
    ::close(fd);
    EXPECT_EQ(result.exit_code, 1) << file << ": " << describe(result);
    EXPECT_TRUE(contains(result.err, "a file of the source")) << result.err;
    EXPECT_EQ(fs::file_size(dir / file), file == "source.sqlite" ? before.size() : 0U) << file;
    fs::remove(dir / "source.sqlite-journal");
  }
  EXPECT_EQ(read_file(dir / "source.sqlite"), before);
}

// A signal the command was started ignoring stays ignored (nohup's SIGHUP; SIGINT for a
// shell's background job): it does not cancel the backup. Another signal still does.
TEST(CliSignals, ASignalIgnoredAtStartDoesNotStopTheBackup) {
  if (!owner_available()) GTEST_SKIP() << "sqlite_owner is not built";
  const StompedSource stomped;
  ASSERT_TRUE(stomped.owner().ready()) << stomped.owner().output();
  RunSettings settings;
  settings.ignored_signals = {SIGHUP};
  Child cli(kCliExe,
            {"--debug", "--copy-retry", "1000000", stomped.source(), stomped.out().string()},
            settings);
  ASSERT_TRUE(cli.read_until(says_copying_again)) << cli.err_so_far();
  cli.send(SIGHUP);
  // Still retrying after the ignored signal: a further "copying again" line comes.
  const std::size_t seen = cli.err_so_far().size();
  ASSERT_TRUE(cli.read_until([seen](const std::string& err) {
    return err.find("copying again", seen) != std::string::npos;
  })) << cli.err_so_far();
  cli.send(SIGTERM);
  const Result result = cli.finish();
  EXPECT_EQ(result.exit_code, 143) << describe(result);
  EXPECT_TRUE(list_names(stomped.out()).empty());
}

// --json promises a record per named source: those a signal left unattempted get one too.
TEST(CliSignals, JsonHasARecordForEachSourceASignalLeftUnattempted) {
  if (!owner_available()) GTEST_SKIP() << "sqlite_owner is not built";
  const StompedSource stomped;
  const TempDir& dir = stomped.dir();
  create_database(dir / "last.sqlite", 7);
  ASSERT_TRUE(stomped.owner().ready()) << stomped.owner().output();
  Child cli(kCliExe, {"--debug", "--json", "--copy-retry", "1000000", stomped.source(),
                      (dir / "last.sqlite").string(), stomped.out().string()});
  ASSERT_TRUE(cli.read_until(says_copying_again)) << cli.err_so_far();
  cli.send(SIGINT);
  const Result result = cli.finish();
  EXPECT_EQ(result.exit_code, 130) << describe(result);
  const auto records = lines_of(result.out);
  ASSERT_EQ(records.size(), 2U) << result.out;
  EXPECT_TRUE(contains(records[1], "last.sqlite")) << records[1];
  EXPECT_TRUE(contains(records[1], "not attempted: interrupted by SIGINT")) << records[1];
  EXPECT_TRUE(contains(records[1], "\"ok\":false") || contains(records[1], "\"ok\": false"))
      << records[1];
}

}  // namespace
}  // namespace cli_test
