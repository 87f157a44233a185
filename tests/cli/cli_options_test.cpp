// The sqlite_backup command's flags: --help, --version, each flag accepted with the
// reference's default, --debug, --json, --verify, --progress.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cctype>

#include "cli_harness.hpp"

namespace cli_test {
namespace {

TEST(CliHelp, ExplainsEveryFlagTheDestinationRulesAndTheExitCodes) {
  const Result result = run_cli({"--help"});
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  for (const char* flag :
       {"--debug", "--wal-checkpoint", "--no-wal-checkpoint", "--copy-use-tempdir",
        "--no-copy-use-tempdir", "--copy-retry N", "--copy-retry-strict", "--no-copy-retry-strict",
        "--verify [=full|quick]", "--sync", "--no-sync", "--progress", "--no-progress", "--json",
        "--version", "--help"}) {
    EXPECT_TRUE(contains(result.out, flag)) << "--help does not mention " << flag << "\n"
                                            << result.out;
  }
  EXPECT_TRUE(
      contains(result.out, "Usage: sqlite_backup [OPTIONS] SOURCE_DATABASE... DESTINATION"));
  EXPECT_TRUE(contains(result.out, "(default: 100)")) << "the --copy-retry default";
  EXPECT_TRUE(contains(result.out, "an existing folder")) << "destination rules";
  EXPECT_TRUE(contains(result.out, "never overwrites")) << "destination rules";
  EXPECT_TRUE(contains(result.out, "its parent folder must exist")) << "destination rules";
  EXPECT_TRUE(contains(result.out, "stream the finished database to stdout"))
      << "the - destination";
  EXPECT_TRUE(contains(result.out, "SEVERAL SOURCES"));
  EXPECT_TRUE(contains(result.out, "SQLITE_BACKUP_LOGS"));
  ASSERT_TRUE(contains(result.out, "EXIT CODES"));
  const std::string codes = result.out.substr(result.out.find("EXIT CODES"));
  for (const char* code :
       {"\n  0 ", "\n  1 ", "\n  2 ", "\n  3 ", "\n  4 ", "\n  5 ", "\n  6 ", "130", "143"}) {
    EXPECT_TRUE(contains(codes, code)) << "exit code '" << code << "' not listed";
  }
  // 4 covers an exclusive owner that hides its state though it did not change.
  EXPECT_TRUE(contains(codes, "locking_mode=EXCLUSIVE hid its state")) << codes;
}

TEST(CliHelp, VersionPrintsTheVersion) {
  const Result result = run_cli({"--version"});
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_TRUE(contains(result.out, "sqlite_backup ")) << result.out;
  EXPECT_TRUE(result.err.empty()) << result.err;
}

struct FlagCase {
  std::vector<std::string> flags;
};

void PrintTo(const FlagCase& flag_case, std::ostream* out) {
  for (const auto& flag : flag_case.flags) *out << flag << ' ';
}

class CliEveryFlag : public ::testing::TestWithParam<FlagCase> {};

// Each flag (both spellings of the negatable ones) is accepted and still yields a good copy.
TEST_P(CliEveryFlag, IsAcceptedAndTheBackupIsGood) {
  const SourceFolder dir(50);
  std::vector<std::string> args = GetParam().flags;
  args.push_back(dir.source());
  args.push_back((dir / "copy.sqlite").string());
  const Result result = run_cli(args);
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_EQ(count_rows(dir / "copy.sqlite"), 50);
  EXPECT_TRUE(integrity_ok(dir / "copy.sqlite"));
  EXPECT_EQ(list_names(dir.path()), (std::vector<std::string>{"copy.sqlite", "source.sqlite"}));
}

INSTANTIATE_TEST_SUITE_P(
    Flags, CliEveryFlag,
    ::testing::Values(FlagCase{{"--debug"}}, FlagCase{{"--wal-checkpoint"}},
                      FlagCase{{"--no-wal-checkpoint"}}, FlagCase{{"--copy-use-tempdir"}},
                      FlagCase{{"--no-copy-use-tempdir"}}, FlagCase{{"--copy-retry", "5"}},
                      FlagCase{{"--copy-retry=1"}}, FlagCase{{"--copy-retry-strict"}},
                      FlagCase{{"--no-copy-retry-strict"}}, FlagCase{{"--verify"}},
                      FlagCase{{"--verify=full"}}, FlagCase{{"--verify=quick"}},
                      FlagCase{{"--sync"}}, FlagCase{{"--no-sync"}}, FlagCase{{"--progress"}},
                      FlagCase{{"--no-progress"}}, FlagCase{{"--json"}}),
    [](const ::testing::TestParamInfo<FlagCase>& param_info) {
      // "--copy-retry=1" -> "copy_retry_1": test names may hold only letters, digits and '_'.
      std::string name;
      for (const auto& flag : param_info.param.flags) {
        for (char c : flag) {
          if (std::isalnum(static_cast<unsigned char>(c))) {
            name += c;
          } else if (!name.empty() && name.back() != '_') {
            name += '_';
          }
        }
        if (!name.empty() && name.back() != '_') name += '_';
      }
      while (!name.empty() && name.back() == '_') name.pop_back();
      return name;
    });

TEST(CliOutput, SuccessPrintsExactlyTheBackedUpLine) {
  const SourceFolder dir(100);
  const std::string source = dir.source();
  const std::string destination = (dir / "copy.sqlite").string();
  const Result result = run_cli({source, destination});
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_EQ(result.err, "Backed up " + source + " to " + destination + "\n");
  EXPECT_TRUE(result.out.empty()) << "nothing on stdout without --json";
}

// Quoted as in the error lines, so that a path with a space reads as one path.
TEST(CliOutput, TheBackedUpLineQuotesPathsWithSpaces) {
  const SourceFolder dir(100);
  const std::string destination = (dir / "my copy.sqlite").string();
  const Result result = run_cli({dir.source(), destination});
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_EQ(result.err, "Backed up " + dir.source() + " to '" + destination + "'\n");
  // A control character (printed as a space) quotes the path too.
  const std::string odd = (dir /
                           "a\x01"
                           "b.sqlite")
                              .string();
  const Result control = run_cli({dir.source(), odd});
  ASSERT_EQ(control.exit_code, 0) << describe(control);
  EXPECT_EQ(control.err,
            "Backed up " + dir.source() + " to '" + (dir / "a b.sqlite").string() + "'\n");
}

TEST(CliOutput, DebugShowsWhatWasCopiedAndTheAttempts) {
  const SourceFolder dir(100);
  const Result result = run_cli({"--debug", dir.source(), (dir / "copy.sqlite").string()});
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_TRUE(contains(result.err, "DEBUG")) << result.err;
  EXPECT_TRUE(contains(result.err, "copied " + dir.source())) << result.err;
  EXPECT_TRUE(contains(result.err, "attempt 1")) << result.err;
  // Without --debug (and with no SQLITE_BACKUP_LOGS) none of it shows.
  const Result quiet = run_cli({dir.source(), (dir / "quiet.sqlite").string()});
  ASSERT_EQ(quiet.exit_code, 0) << describe(quiet);
  EXPECT_FALSE(contains(quiet.err, "DEBUG")) << quiet.err;
}

TEST(CliOutput, SqliteBackupLogsIsHonouredWithoutDebug) {
  const SourceFolder dir(100);
  RunSettings settings;
  settings.environment["SQLITE_BACKUP_LOGS"] = "10";
  const Result result = run_cli({dir.source(), (dir / "copy.sqlite").string()}, settings);
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_TRUE(contains(result.err, "DEBUG")) << result.err;
}

TEST(CliOutput, NoCopyUseTempdirWarnsThatTheLiveDatabaseIsReadDirectly) {
  const SourceFolder dir(100);
  const std::string source = dir.source();
  const Result result = run_cli({"--no-copy-use-tempdir", source, (dir / "copy.sqlite").string()});
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_TRUE(contains(result.err,
                       "sqlite_backup: warning: --no-copy-use-tempdir: read the live database " +
                           source + " directly"))
      << result.err;
  // The default takes no such risk and says nothing.
  const Result quiet = run_cli({source, (dir / "default.sqlite").string()});
  ASSERT_EQ(quiet.exit_code, 0) << describe(quiet);
  EXPECT_FALSE(contains(quiet.err, "warning")) << quiet.err;
}

// A failure is one line, also in the live mode (the warning printed first made it two), and
// a rollback-mode source's folder gets nothing: SQLite reads it read-only.
TEST(CliOutput, NoCopyUseTempdirFailureIsOneLineAndTheSourceFolderIsLeftAlone) {
  TempDir dir;
  fs::create_directory(dir / "source");
  write_file(dir / "source" / "notes.sqlite", std::string(8192, 'n'));
  const std::string source = (dir / "source" / "notes.sqlite").string();
  const Result failed = run_cli({"--no-copy-use-tempdir", source, (dir / "copy.sqlite").string()});
  expect_failure(failed, 3, source);
  EXPECT_TRUE(contains(failed.err, "--no-copy-use-tempdir")) << failed.err;
  EXPECT_FALSE(fs::exists(dir / "copy.sqlite"));

  create_database(dir / "source" / "rollback.sqlite", 50);
  const Result done =
      run_cli({"--no-copy-use-tempdir", (dir / "source" / "rollback.sqlite").string(),
               (dir / "copy.sqlite").string()});
  ASSERT_EQ(done.exit_code, 0) << describe(done);
  EXPECT_EQ(list_names(dir / "source"),
            (std::vector<std::string>{"notes.sqlite", "rollback.sqlite"}));
}

TEST(CliJson, OneRecordPerBackupWithEveryField) {
  const SourceFolder dir(200);
  const std::string source = dir.source();
  const std::string destination = (dir / "copy.sqlite").string();
  const Result result = run_cli({"--json", source, destination});
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  const auto records = lines_of(result.out);
  ASSERT_EQ(records.size(), 1u) << result.out;
  const std::string& record = records[0];
  EXPECT_EQ(record.front(), '{');
  EXPECT_EQ(record.back(), '}');
  EXPECT_TRUE(contains(record, "\"source\":\"" + source + "\"")) << record;
  EXPECT_TRUE(contains(record, "\"destination\":\"" + destination + "\"")) << record;
  const long long pages = *query_int(destination, "PRAGMA page_count");
  const long long page_size = *query_int(destination, "PRAGMA page_size");
  EXPECT_TRUE(contains(record, "\"pages\":" + std::to_string(pages) + ",")) << record;
  EXPECT_TRUE(contains(record, "\"page_size\":" + std::to_string(page_size) + ",")) << record;
  EXPECT_TRUE(contains(record, "\"bytes\":" + std::to_string(pages * page_size) + ",")) << record;
  EXPECT_TRUE(contains(record, "\"attempts\":1,")) << record;
  EXPECT_TRUE(contains(record, "\"duration_s\":")) << record;
  EXPECT_TRUE(contains(record, "\"verified\":\"none\"")) << "verify is off by default: " << record;
  EXPECT_TRUE(contains(record, "\"ok\":true")) << record;
  EXPECT_FALSE(contains(record, "\"error\"")) << record;
}

TEST(CliJson, EscapesPathsProperly) {
  TempDir dir;
  const std::string name = "we\"ird\\na\tme.sqlite";
  create_database(dir / name, 100);
  fs::create_directory(dir / "out");
  const Result result = run_cli({"--json", (dir / name).string(), (dir / "out").string()});
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_TRUE(contains(result.out, "we\\\"ird\\\\na\\tme.sqlite")) << result.out;
  EXPECT_EQ(lines_of(result.out).size(), 1u);
}

// A path's bytes that are not UTF-8 come out as Python's surrogateescape decodes them
// (U+DC80 + the byte), so the record is JSON and os.fsencode() gives the bytes back; U+FFFD
// would have lost them.
TEST(CliJson, BytesThatAreNotUtf8ComeOutAsSurrogateEscapes) {
  TempDir dir;
  const std::string name = "caf\xe9-\xff.sqlite";  // Latin-1, not UTF-8
  create_database(dir / name, 100);
  fs::create_directory(dir / "out");
  const Result result = run_cli({"--json", (dir / name).string(), (dir / "out").string()});
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_TRUE(contains(result.out, "caf\\udce9-\\udcff.sqlite")) << result.out;
  EXPECT_EQ(count_rows(dir / "out" / name), 100);
}

TEST(CliJson, FailureRecordCarriesTheError) {
  TempDir dir;
  write_file(dir / "junk.sqlite", std::string(4096, 'x'));
  const Result result =
      run_cli({"--json", (dir / "junk.sqlite").string(), (dir / "copy.sqlite").string()});
  ASSERT_EQ(result.exit_code, 3) << describe(result);
  const auto records = lines_of(result.out);
  ASSERT_EQ(records.size(), 1u) << result.out;
  EXPECT_TRUE(contains(records[0], "\"ok\":false")) << records[0];
  EXPECT_TRUE(contains(records[0], "\"error\":\"")) << records[0];
  EXPECT_TRUE(contains(records[0], "junk.sqlite")) << records[0];
}

// One record per named source, whatever stopped it: a source refused before any backup began
// (missing, a folder, a FIFO) gets one too, as does each source of a refused command.
TEST(CliJson, EverySourceRefusedUpFrontGetsARecord) {
  TempDir dir;
  fs::create_directory(dir / "folder.sqlite");
  ASSERT_EQ(::mkfifo((dir / "fifo.sqlite").c_str(), 0600), 0);
  for (const char* name : {"missing.sqlite", "folder.sqlite", "fifo.sqlite"}) {
    const std::string source = (dir / name).string();
    const Result result = run_cli({"--json", source, (dir / "copy.sqlite").string()});
    EXPECT_EQ(result.exit_code, 2) << name << ": " << describe(result);
    const auto records = lines_of(result.out);
    ASSERT_EQ(records.size(), 1u) << name << ": " << describe(result);
    EXPECT_TRUE(contains(records[0], "\"source\":\"" + source + "\"")) << records[0];
    EXPECT_TRUE(contains(records[0], "\"ok\":false,\"exit_code\":2")) << records[0];
    EXPECT_EQ(one_error_line_naming(result, source), "") << describe(result);
  }
  create_database(dir / "a.sqlite", 5);
  create_database(dir / "b.sqlite", 5);
  const Result several = run_cli({"--json", (dir / "a.sqlite").string(),
                                  (dir / "b.sqlite").string(), (dir / "not-a-folder").string()});
  EXPECT_EQ(several.exit_code, 1) << describe(several);
  const auto records = lines_of(several.out);
  ASSERT_EQ(records.size(), 2u) << describe(several);
  EXPECT_TRUE(contains(records[0], "a.sqlite") && contains(records[0], "\"ok\":false"))
      << records[0];
  EXPECT_TRUE(contains(records[1], "b.sqlite") && contains(records[1], "\"ok\":false"))
      << records[1];
  EXPECT_FALSE(fs::exists(dir / "copy.sqlite"));
}

TEST(CliVerify, GoodDatabaseIsVerifiedAndSaysHow) {
  const SourceFolder dir(300);
  const std::string source = dir.source();
  const Result full = run_cli({"--json", "--verify", source, (dir / "full.sqlite").string()});
  ASSERT_EQ(full.exit_code, 0) << describe(full);
  EXPECT_TRUE(contains(full.out, "\"verified\":\"full\"")) << full.out;
  const Result quick =
      run_cli({"--json", "--verify=quick", source, (dir / "quick.sqlite").string()});
  ASSERT_EQ(quick.exit_code, 0) << describe(quick);
  EXPECT_TRUE(contains(quick.out, "\"verified\":\"quick\"")) << quick.out;
  EXPECT_EQ(count_rows(dir / "full.sqlite"), 300);
  EXPECT_EQ(count_rows(dir / "quick.sqlite"), 300);
}

TEST(CliVerify, LevelAfterASpaceIsExplainedNotTakenForASource) {
  const SourceFolder dir(100);
  fs::create_directory(dir / "out");
  const Result result = run_cli({"--verify", "quick", dir.source(), (dir / "out").string()});
  expect_failure(result, 2, "--verify=quick");
  EXPECT_TRUE(list_names(dir / "out").empty());
}

// "--copy-retry=" took the next argument (the source) as its value, and "--verify=" meant
// --verify=full: an option with nothing after '=' is a usage error naming it.
TEST(CliUsage, AnOptionWithNothingAfterTheEqualsSignIsRefused) {
  const SourceFolder dir(100);
  for (const char* option : {"--copy-retry=", "--verify=", "--source-lock="}) {
    const Result result = run_cli({option, dir.source(), (dir / "copy.sqlite").string()});
    expect_failure(result, 2, option);
    EXPECT_TRUE(contains(result.err, "nothing after '='")) << result.err;
    EXPECT_EQ(list_names(dir.path()), std::vector<std::string>{"source.sqlite"});
  }
}

// Only our own options are checked so: a path that merely looks like "--x=" is a path, as it
// was (here one the parser takes as a positional, and one after "--").
TEST(CliUsage, PathsEndingInAnEqualsSignAreStillPaths) {
  const SourceFolder dir(100);
  RunSettings in_folder;
  in_folder.working_directory = dir.path();
  const Result odd = run_cli({"source.sqlite", "---x="}, in_folder);
  ASSERT_EQ(odd.exit_code, 0) << describe(odd);
  EXPECT_EQ(count_rows(dir / "---x="), 100);
  const Result escaped = run_cli({"--", "source.sqlite", "--copy-retry="}, in_folder);
  ASSERT_EQ(escaped.exit_code, 0) << describe(escaped);
  EXPECT_EQ(count_rows(dir / "--copy-retry="), 100);
}

TEST(CliVerify, RejectsAnUnknownLevel) {
  const SourceFolder dir(100);
  const Result result =
      run_cli({"--verify=thorough", dir.source(), (dir / "copy.sqlite").string()});
  expect_failure(result, 2, "--verify");
  EXPECT_EQ(list_names(dir.path()), std::vector<std::string>{"source.sqlite"});
}

// Defaults that only show in behaviour. Strict retrying: CliExitCodes.UnstableSourceIsFour
// passes no strict flag. 100 attempts: the library's debug line for a spoiled attempt says
// "attempt N of <copy_retry>"; one such line is enough (waiting for 100 spoiled attempts
// would need the stomping owner to win every single race on a loaded machine).
TEST(CliDefaults, CopyRetryIsOneHundredAttempts) {
  if (!owner_available()) GTEST_SKIP() << "sqlite_owner is not built";
  const StompedSource stomped;
  ASSERT_TRUE(stomped.owner().ready()) << stomped.owner().output();
  Child cli(kCliExe, {"--debug", stomped.source(), stomped.out().string()});
  const bool retrying =
      cli.read_until([](const std::string& err) { return contains(err, " of 100: "); });
  cli.send(SIGTERM);
  const Result result = cli.finish();
  ASSERT_TRUE(retrying) << describe(result);
  EXPECT_EQ(result.exit_code, 143) << describe(result);
  EXPECT_TRUE(list_names(stomped.out()).empty());
}

TEST(CliDefaults, NoCopyRetryStrictKeepsTheLastCopy) {
  if (!owner_available()) GTEST_SKIP() << "sqlite_owner is not built";
  const StompedSource stomped;
  ASSERT_TRUE(stomped.owner().ready()) << stomped.owner().output();
  const Result result = run_cli({"--json", "--copy-retry", "2", "--no-copy-retry-strict",
                                 stomped.source(), stomped.out().string()});
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_TRUE(contains(result.out, "\"attempts\":2,")) << result.out;
  EXPECT_TRUE(contains(result.out, "\"validated\":false")) << result.out;
  EXPECT_EQ(list_names(stomped.out()), std::vector<std::string>{"stomped.sqlite"});
}

TEST(CliDefaults, CopyUseTempdirReadsADatabaseWhoseOwnerHoldsAnExclusiveLock) {
  if (!owner_available()) GTEST_SKIP() << "sqlite_owner is not built";
  TempDir dir;
  fs::create_directory(dir / "out");
  OwnerProcess owner(kOwnerExe, dir / "locked.sqlite", "exclusive", 120);
  ASSERT_TRUE(owner.ready()) << owner.output();
  const Result result = run_cli({(dir / "locked.sqlite").string(), (dir / "out").string()});
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_EQ(count_rows(dir / "out" / "locked.sqlite"), 120)
      << "the rows that live only in the -wal";
  // wal_checkpoint is on by default: nothing but the database beside it.
  EXPECT_EQ(list_names(dir / "out"), std::vector<std::string>{"locked.sqlite"});
}

// A pseudo-terminal for the child's stderr or stdout; skips the test when there is none.
class Terminal {
 public:
  Terminal() {
    master_ = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master_ < 0 || ::grantpt(master_) != 0 || ::unlockpt(master_) != 0) return;
    const char* name = ::ptsname(master_);
    if (name == nullptr) return;
    slave_ = ::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  }
  Terminal(const Terminal&) = delete;
  Terminal& operator=(const Terminal&) = delete;
  ~Terminal() {
    if (slave_ >= 0) ::close(slave_);
    if (master_ >= 0) ::close(master_);
  }
  [[nodiscard]] bool usable() const { return slave_ >= 0; }
  [[nodiscard]] int slave() const { return slave_; }
  // Everything written so far (call after the child ended and the slave is closed).
  std::string drain() {
    if (slave_ >= 0) {
      ::close(slave_);
      slave_ = -1;
    }
    std::string text;
    char buffer[4096];
    while (true) {
      pollfd entry{master_, POLLIN, 0};
      if (::poll(&entry, 1, 100) <= 0) break;
      const ssize_t got = ::read(master_, buffer, sizeof buffer);
      if (got <= 0) break;  // EIO once the slave side is closed and drained
      text.append(buffer, static_cast<std::size_t>(got));
    }
    return text;
  }

 private:
  int master_ = -1;
  int slave_ = -1;
};

TEST(CliProgress, DrawnOnATerminalWithProgressAndErasedAtTheEnd) {
  Terminal terminal;
  if (!terminal.usable()) GTEST_SKIP() << "no pseudo-terminal available (posix_openpt failed)";
  const SourceFolder dir(2000);
  RunSettings settings;
  settings.stderr_fd = terminal.slave();
  const Result result =
      run_cli({"--progress", dir.source(), (dir / "copy.sqlite").string()}, settings);
  const std::string screen = terminal.drain();
  ASSERT_EQ(result.exit_code, 0) << describe(result) << screen;
  // (A terminal turns "\n" into "\r\n", so look for the bar's own carriage return.)
  EXPECT_TRUE(contains(screen, "\rsource.sqlite [")) << screen;
  EXPECT_TRUE(contains(screen, "100%")) << screen;
  EXPECT_TRUE(contains(screen, "\r\033[K"))
      << "the bar is erased before the final line: " << screen;
  EXPECT_TRUE(contains(screen, "Backed up ")) << screen;
}

TEST(CliProgress, NotDrawnForSmallSourcesByDefaultNorWhenAsked) {
  Terminal terminal;
  if (!terminal.usable()) GTEST_SKIP() << "no pseudo-terminal available (posix_openpt failed)";
  const SourceFolder dir(2000);
  RunSettings settings;
  settings.stderr_fd = terminal.slave();
  const Result automatic = run_cli({dir.source(), (dir / "auto.sqlite").string()}, settings);
  ASSERT_EQ(automatic.exit_code, 0) << describe(automatic);
  const Result refused =
      run_cli({"--no-progress", dir.source(), (dir / "no.sqlite").string()}, settings);
  ASSERT_EQ(refused.exit_code, 0) << describe(refused);
  const std::string screen = terminal.drain();
  EXPECT_FALSE(contains(screen, "%")) << "a small source gets no bar by default: " << screen;
}

TEST(CliProgress, DrawnByDefaultOnATerminalForALargeSource) {
  Terminal terminal;
  if (!terminal.usable()) GTEST_SKIP() << "no pseudo-terminal available (posix_openpt failed)";
  TempDir dir;
  // 66 MiB, just over the 64 MiB threshold: big pages of zeroes are quick to write.
  exec_sql(dir / "large.sqlite",
           "PRAGMA page_size = 65536; CREATE TABLE blobs(b BLOB);"
           "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 66)"
           "  INSERT INTO blobs SELECT zeroblob(1048576) FROM n;");
  ASSERT_GE(fs::file_size(dir / "large.sqlite"), 64u << 20);
  RunSettings settings;
  settings.stderr_fd = terminal.slave();
  const Result result =
      run_cli({(dir / "large.sqlite").string(), (dir / "copy.sqlite").string()}, settings);
  const std::string screen = terminal.drain();
  ASSERT_EQ(result.exit_code, 0) << describe(result) << screen;
  EXPECT_TRUE(contains(screen, "\rlarge.sqlite [")) << screen;
  EXPECT_TRUE(contains(screen, "100%")) << screen;
}

TEST(CliProgress, NeverDrawnIntoAPipe) {
  const SourceFolder dir(2000);
  const Result result = run_cli({"--progress", dir.source(), (dir / "copy.sqlite").string()});
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_FALSE(contains(result.err, "\r")) << result.err;
  EXPECT_FALSE(contains(result.err, "%")) << result.err;
}

TEST(CliSourceLock, EveryPolicyBacksUpAndAnUnknownOneIsAUsageError) {
  const SourceFolder dir(200);
  for (const std::string policy : {"never", "when-needed", "always"}) {
    const fs::path destination = dir / (policy + ".sqlite");
    const Result result = run_cli({"--source-lock=" + policy, dir.source(), destination.string()});
    ASSERT_EQ(result.exit_code, 0) << policy << ": " << describe(result);
    EXPECT_EQ(count_rows(destination), 200) << policy;
  }
  const Result bad =
      run_cli({"--source-lock=sometimes", dir.source(), (dir / "bad.sqlite").string()});
  expect_failure(bad, 2, "--source-lock");
  EXPECT_FALSE(fs::exists(dir / "bad.sqlite"));
}

}  // namespace
}  // namespace cli_test
