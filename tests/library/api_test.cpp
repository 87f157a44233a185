#include <sys/stat.h>

#include <sstream>
// The public API's shape and its basic contracts: how calls read, what they return, the
// reference's `core` helpers, the report and logging.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <sqlite_backup/log.hpp>
#include <sqlite_backup/sqlite_backup.hpp>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "library_fixture.hpp"

namespace {

using namespace sqlite_backup::testing;

class ApiTest : public LibraryTest {};

// The on-disk header says which journal the file uses: bytes 18 and 19 are 1 for rollback
// (DELETE) journals and 2 for WAL.
std::pair<int, int> header_journal_bytes(const fs::path& database) {
  const std::string header = read_file(database).substr(0, 100);
  return {static_cast<unsigned char>(header.at(18)), static_cast<unsigned char>(header.at(19))};
}

TEST_F(ApiTest, DesignatedInitializerCallReadsLikeThePythonCall) {
  create_database(dir_ / "source.sqlite", 25);
  const auto result =
      sb::sqlite_backup(dir_ / "source.sqlite", dir_ / "copy.sqlite", {.wal_checkpoint = false});
  EXPECT_FALSE(result.has_value());
  EXPECT_EQ(count_rows(dir_ / "copy.sqlite"), 25);
}

TEST(ApiShape, OptionsBeginWithTheReferenceParametersInOrder) {
  static_assert(std::is_aggregate_v<sb::Options>);
  // Designated initializers only compile when they follow the declaration order.
  constexpr auto designated = [] {
    return sb::Options{.wal_checkpoint = false,
                       .copy_use_tempdir = false,
                       .copy_retry = 7,
                       .copy_retry_strict = false};
  };
  const sb::Options named = designated();
  EXPECT_FALSE(named.wal_checkpoint);
  EXPECT_FALSE(named.copy_use_tempdir);
  EXPECT_EQ(named.copy_retry, 7);
  EXPECT_FALSE(named.copy_retry_strict);
  // Positional initialization pins the order at run time too (bool, bool, int, bool).
  const sb::Options positional{true, false, 9, false};
  EXPECT_TRUE(positional.wal_checkpoint);
  EXPECT_FALSE(positional.copy_use_tempdir);
  EXPECT_EQ(positional.copy_retry, 9);
  EXPECT_FALSE(positional.copy_retry_strict);
  // The reference's defaults.
  const sb::Options defaults{};
  EXPECT_TRUE(defaults.wal_checkpoint);
  EXPECT_TRUE(defaults.copy_use_tempdir);
  EXPECT_EQ(defaults.copy_retry, 100);
  EXPECT_TRUE(defaults.copy_retry_strict);
  EXPECT_FALSE(static_cast<bool>(defaults.copy_function));
}

TEST_F(ApiTest, MemoryDestinationReturnsAnOpenInMemoryConnectionWithTheRows) {
  create_database(dir_ / "source.sqlite", 42);
  auto connection = sb::sqlite_backup(dir_ / "source.sqlite");
  ASSERT_TRUE(connection.has_value());
  ASSERT_TRUE(static_cast<bool>(*connection));
  EXPECT_EQ(count_rows(connection->get()), 42);
  EXPECT_EQ(table_digest(connection->get()), table_digest(dir_ / "source.sqlite"));
  // In memory: either a plain ":memory:" database (no file name) or one loaded with
  // sqlite3_deserialize, which lives in SQLite's "memdb" VFS.
  const std::string file =
      query_text(connection->get(), "SELECT file FROM pragma_database_list WHERE name = 'main'")
          .value_or("");
  char* vfs_name = nullptr;
  sqlite3_file_control(connection->get(), "main", SQLITE_FCNTL_VFSNAME, &vfs_name);
  const std::string vfs = vfs_name != nullptr ? vfs_name : "";
  sqlite3_free(vfs_name);
  EXPECT_TRUE(file.empty() || vfs.find("memdb") != std::string::npos) << file << " / " << vfs;
  EXPECT_FALSE(fs::exists(file)) << "an in-memory database must not be backed by a file";
}

// A memory snapshot grows as the reference's ":memory:" database does, past the 1 GiB that
// SQLite allows a deserialized database by default (here to 1.1 GB of blobs; without the
// lifted limit the second insert fails with SQLITE_FULL).
TEST_F(ApiTest, MemorySnapshotGrowsPastTheGiBSqliteGivesADeserializedDatabase) {
  create_database(dir_ / "source.sqlite", 42);
  auto connection = sb::sqlite_backup(dir_ / "source.sqlite");
  ASSERT_TRUE(connection.has_value());
  sqlite3* const db = connection->get();
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE big(b)", nullptr, nullptr, nullptr), SQLITE_OK);
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(
        sqlite3_exec(db, "INSERT INTO big VALUES (zeroblob(560000000))", nullptr, nullptr, nullptr),
        SQLITE_OK)
        << "insert " << i << ": " << sqlite3_errmsg(db);
  }
  const auto pages = query_text(db, "PRAGMA page_count").value_or("0");
  const auto page_size = query_text(db, "PRAGMA page_size").value_or("0");
  EXPECT_GT(std::stoll(pages) * std::stoll(page_size), 1LL << 30);
  EXPECT_EQ(count_rows(db), 42);
}

TEST_F(ApiTest, ConnectionReleaseHandsOwnershipToTheCaller) {
  create_database(dir_ / "source.sqlite", 10);
  auto connection = sb::sqlite_backup(dir_ / "source.sqlite");
  ASSERT_TRUE(connection.has_value());
  sqlite3* const lent = connection->get();
  ASSERT_NE(lent, nullptr);

  sb::Connection moved = std::move(*connection);
  EXPECT_EQ(connection->get(),
            nullptr);  // NOLINT(bugprone-use-after-move): the contract under test
  EXPECT_EQ(moved.get(), lent);

  sqlite3* const owned = moved.release();
  EXPECT_EQ(owned, lent);
  EXPECT_EQ(moved.get(), nullptr);
  EXPECT_FALSE(static_cast<bool>(moved));
  EXPECT_EQ(count_rows(owned), 10);  // still open: release() did not close it
  EXPECT_EQ(sqlite3_close(owned), SQLITE_OK);
}

TEST_F(ApiTest, FileDestinationFromALiveWalSourceIsOneFileInRollbackMode) {
  const fs::path source_dir = make_folder(dir_ / "source");
  const fs::path out_dir = make_folder(dir_ / "out");
  OwnerProcess owner(kOwnerExe, source_dir / "live.sqlite", "wal-hold", 300);
  ASSERT_TRUE(owner.ready()) << owner.output();
  ASSERT_EQ(header_journal_bytes(source_dir / "live.sqlite"), std::make_pair(2, 2))
      << "source is not in WAL mode";

  const auto result = sb::sqlite_backup(source_dir / "live.sqlite", out_dir / "copy.sqlite");
  EXPECT_FALSE(result.has_value());
  EXPECT_EQ(list_names(out_dir), std::vector<std::string>{"copy.sqlite"})
      << "no -wal/-shm/-journal beside it";
  EXPECT_EQ(header_journal_bytes(out_dir / "copy.sqlite"), std::make_pair(1, 1))
      << "not journal_mode=DELETE";
  EXPECT_EQ(query_text(out_dir / "copy.sqlite", "PRAGMA journal_mode"), "delete");
  EXPECT_EQ(count_rows(out_dir / "copy.sqlite"), 300);
  // Reading it did not create side files either: it really is a self-contained database.
  EXPECT_EQ(list_names(out_dir), std::vector<std::string>{"copy.sqlite"});
}

TEST_F(ApiTest, ReportIsFilledIn) {
  create_database(dir_ / "source.sqlite", 500);
  sb::Report report;
  sb::sqlite_backup(dir_ / "source.sqlite", dir_ / "copy.sqlite", {.report = &report});
  EXPECT_GE(report.attempts, 1);
  EXPECT_EQ(report.bytes, fs::file_size(dir_ / "copy.sqlite"));
  EXPECT_GT(report.bytes, 0U);
  EXPECT_EQ(report.page_size, query_int(dir_ / "copy.sqlite", "PRAGMA page_size"));
  EXPECT_EQ(static_cast<long long>(report.pages),
            query_int(dir_ / "copy.sqlite", "PRAGMA page_count"));
  EXPECT_EQ(report.bytes, report.pages * static_cast<std::uint64_t>(report.page_size));
  EXPECT_TRUE(report.validated);
  EXPECT_EQ(report.source, dir_ / "source.sqlite");
  EXPECT_EQ(report.destination, dir_ / "copy.sqlite");

  sb::Report memory_report;
  const auto connection =
      sb::sqlite_backup(dir_ / "source.sqlite", std::nullopt, {.report = &memory_report});
  EXPECT_GE(memory_report.attempts, 1);
  EXPECT_GT(memory_report.bytes, 0U);
  EXPECT_GT(memory_report.pages, 0U);
  EXPECT_EQ(memory_report.page_size, report.page_size);
  EXPECT_TRUE(memory_report.destination.empty());
}

TEST_F(ApiTest, WithoutTempdirTheBackupApiReadsTheLiveDatabase) {
  const fs::path source_dir = make_folder(dir_ / "source");
  OwnerProcess owner(kOwnerExe, source_dir / "live.sqlite", "wal-hold", 120);
  ASSERT_TRUE(owner.ready()) << owner.output();
  sb::sqlite_backup(source_dir / "live.sqlite", dir_ / "copy.sqlite", {.copy_use_tempdir = false});
  EXPECT_EQ(count_rows(dir_ / "copy.sqlite"), 120);
  EXPECT_EQ(list_names(dir_.path()), (std::vector<std::string>{"copy.sqlite", "source"}));
  auto memory =
      sb::sqlite_backup(source_dir / "live.sqlite", std::nullopt, {.copy_use_tempdir = false});
  ASSERT_TRUE(memory.has_value());
  EXPECT_EQ(count_rows(memory->get()), 120);
}

TEST_F(ApiTest, BackupKwargsStepThroughThePagesWithProgress) {
  create_database(dir_ / "source.sqlite", 3000);
  const auto pages = query_int(dir_ / "source.sqlite", "PRAGMA page_count");
  ASSERT_TRUE(pages.has_value());
  ASSERT_GT(*pages, 4);
  int steps = 0;
  int last_remaining = -1;
  int last_total = -1;
  int last_status = -1;
  sb::Options options;
  options.sqlite_backup_kwargs.pages = 1;
  options.sqlite_backup_kwargs.progress = [&](int status, int remaining, int total) {
    ++steps;
    last_status = status;
    last_remaining = remaining;
    last_total = total;
  };
  auto memory = sb::sqlite_backup(dir_ / "source.sqlite", std::nullopt, options);
  ASSERT_TRUE(memory.has_value());
  EXPECT_EQ(count_rows(memory->get()), 3000);
  EXPECT_GE(steps, *pages) << "one page per step";
  EXPECT_EQ(last_status, SQLITE_DONE);
  EXPECT_EQ(last_remaining, 0);
  EXPECT_EQ(last_total, *pages);
}

// The reference copies its snapshot into a file destination through the backup API, so a
// progress callback given for a file destination is called too.
TEST_F(ApiTest, BackupProgressIsReportedForFileDestinations) {
  create_database(dir_ / "source.sqlite", 3000);
  int steps = 0;
  int last_status = -1;
  int last_remaining = -1;
  sb::Options options;
  options.sqlite_backup_kwargs.pages = 2;
  options.sqlite_backup_kwargs.progress = [&](int status, int remaining, int /*total*/) {
    ++steps;
    last_status = status;
    last_remaining = remaining;
  };
  sb::sqlite_backup(dir_ / "source.sqlite", dir_ / "copy.sqlite", options);
  EXPECT_GT(steps, 1);
  EXPECT_EQ(last_status, SQLITE_DONE);
  EXPECT_EQ(last_remaining, 0);
  EXPECT_EQ(count_rows(dir_ / "copy.sqlite"), 3000);
  EXPECT_EQ(list_names(dir_.path()), (std::vector<std::string>{"copy.sqlite", "source.sqlite"}));
}

// The memory snapshot can go into a connection the caller opened (a Python sqlite3
// connection's handle, for one): its main database becomes the snapshot, writable.
TEST_F(ApiTest, SnapshotIntoTheCallersOwnConnection) {
  create_database(dir_ / "source.sqlite", 500);
  sqlite3* target = nullptr;
  ASSERT_EQ(sqlite3_open(":memory:", &target), SQLITE_OK);
  sb::sqlite_backup_to_connection(dir_ / "source.sqlite", target);
  EXPECT_EQ(count_rows(target), 500);
  EXPECT_EQ(sqlite3_exec(target, "INSERT INTO t (v) VALUES ('more')", nullptr, nullptr, nullptr),
            SQLITE_OK);
  EXPECT_EQ(count_rows(target), 501);
  sqlite3_close(target);
  EXPECT_THROW(sb::sqlite_backup_to_connection(dir_ / "source.sqlite", nullptr),
               std::invalid_argument);
}

// SQLite's backup API cannot give an in-memory database that has pages another page size
// (SQLITE_READONLY): the error says so, where the result code alone suggests a read-only file;
// for a database created in the connection and for an earlier snapshot deserialized there
// (which SQLite names "x").
TEST_F(ApiTest, ABackupApiCopyIntoAMemoryDatabaseOfOtherPagesSaysWhy) {
  {
    sqlite3* source = nullptr;
    ASSERT_EQ(sqlite3_open((dir_ / "large_pages.sqlite").c_str(), &source), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(source,
                           "PRAGMA page_size = 65536; CREATE TABLE t (v); INSERT INTO t VALUES (1)",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(source);
  }
  create_database(dir_ / "small_pages.sqlite", 5);
  sb::Options options;
  options.sqlite_backup_kwargs.pages = 1;
  for (const bool earlier_snapshot : {false, true}) {
    SCOPED_TRACE(earlier_snapshot ? "an earlier snapshot" : "a table of its own");
    sqlite3* target = nullptr;
    ASSERT_EQ(sqlite3_open(":memory:", &target), SQLITE_OK);
    if (earlier_snapshot) {
      sb::sqlite_backup_to_connection(dir_ / "small_pages.sqlite", target);
    } else {
      ASSERT_EQ(sqlite3_exec(target, "CREATE TABLE t (x)", nullptr, nullptr, nullptr), SQLITE_OK);
    }
    const long long rows = count_rows(target);
    try {
      sb::sqlite_backup_to_connection(dir_ / "large_pages.sqlite", target, options);
      ADD_FAILURE() << "the copy was not refused";
    } catch (const sb::SqliteBackupError& error) {
      EXPECT_EQ(error.kind(), sb::ErrorKind::sqlite);
      EXPECT_EQ(error.path(), dir_ / "large_pages.sqlite");
      const std::string message = error.what();
      EXPECT_NE(message.find("its pages are 4096 bytes and the source's 65536"), std::string::npos)
          << message;
    }
    // The database it had is kept.
    EXPECT_EQ(count_rows(target), rows);
    sqlite3_close(target);
  }
  // A new connection takes it.
  sqlite3* target = nullptr;
  ASSERT_EQ(sqlite3_open(":memory:", &target), SQLITE_OK);
  sb::sqlite_backup_to_connection(dir_ / "large_pages.sqlite", target, options);
  EXPECT_EQ(query_text(target, "PRAGMA page_size"), "65536");
  EXPECT_EQ(count_rows(target), 1);
  sqlite3_close(target);
}

TEST_F(ApiTest, BackupToFdStreamsAWholeDatabase) {
  create_database(dir_ / "source.sqlite", 64);
  {
    const int fd =
        ::open((dir_ / "streamed.sqlite").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    sb::sqlite_backup_to_fd(dir_ / "source.sqlite", fd);
    EXPECT_EQ(::fcntl(fd, F_GETFD), FD_CLOEXEC) << "the descriptor was closed";
    ::close(fd);
  }
  EXPECT_EQ(count_rows(dir_ / "streamed.sqlite"), 64);
  EXPECT_EQ(query_text(dir_ / "streamed.sqlite", "PRAGMA integrity_check"), "ok");
}

TEST_F(ApiTest, VerifyChecksTheResultAndSaysSoInTheReport) {
  create_database(dir_ / "source.sqlite", 64);
  sb::Report report;
  sb::sqlite_backup(dir_ / "source.sqlite", dir_ / "copy.sqlite",
                    {.verify = sb::Verify::full, .report = &report});
  EXPECT_EQ(report.verified, sb::Verify::full);
  EXPECT_EQ(count_rows(dir_ / "copy.sqlite"), 64);
}

TEST_F(ApiTest, OutOfRangeCopyRetryIsAnInvalidArgument) {
  create_database(dir_ / "source.sqlite", 5);
  EXPECT_THROW(sb::sqlite_backup(dir_ / "source.sqlite", dir_ / "copy.sqlite", {.copy_retry = 0}),
               std::invalid_argument);
  EXPECT_FALSE(fs::exists(dir_ / "copy.sqlite"));
}

// ---- The reference's core helpers ---------------------------------------------------

TEST_F(ApiTest, GlobDatabaseFilesListsTheDatabaseThenWalAndJournalButNeverShm) {
  const fs::path db = dir_ / "app.db";
  write_file(db, "x");
  EXPECT_EQ(sb::glob_database_files(db), std::vector<fs::path>{db});

  write_file(dir_ / "app.db-shm", "x");
  EXPECT_EQ(sb::glob_database_files(db), std::vector<fs::path>{db}) << "-shm must never be copied";

  write_file(dir_ / "app.db-wal", "x");
  write_file(dir_ / "app.db-journal", "x");
  write_file(dir_ / "other.db-wal", "x");  // another database's side file
  const auto files = sb::glob_database_files(db);
  ASSERT_FALSE(files.empty());
  EXPECT_EQ(files.front(), db) << "the database comes first";
  std::vector<fs::path> sorted(files.begin(), files.end());
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<fs::path>{db, dir_ / "app.db-journal", dir_ / "app.db-wal"}));
}

TEST_F(ApiTest, AtomicCopyOfAQuietFileCopiesItAndReportsSuccess) {
  const std::string contents = random_bytes(300'000);
  write_file(dir_ / "quiet.bin", contents);
  write_file(dir_ / "copy.bin",
             "old, longer content that must be truncated away entirely............");
  EXPECT_TRUE(sb::atomic_copy(dir_ / "quiet.bin", dir_ / "copy.bin"));
  EXPECT_EQ(read_file(dir_ / "copy.bin"), contents);
  EXPECT_TRUE(sb::atomic_copy(dir_ / "quiet.bin", dir_ / "fresh.bin"));
  EXPECT_EQ(read_file(dir_ / "fresh.bin"), contents);
}

// Cancelled before it begins, a helper touches nothing; cancelled during the copy (the
// Python package's Ctrl-C, tested there with a copy long enough to interrupt), it removes
// what it wrote.
TEST_F(ApiTest, CancelledHelpersLeaveTheDestinationAsItWas) {
  write_file(dir_ / "quiet.bin", random_bytes(100'000));
  write_file(dir_ / "old-copy.bin", "an earlier copy");
  const std::atomic<bool> cancel{true};
  try {
    sb::atomic_copy(dir_ / "quiet.bin", dir_ / "old-copy.bin", &cancel);
    ADD_FAILURE() << "a cancelled atomic_copy returned";
  } catch (const sb::SqliteBackupError& error) {
    EXPECT_EQ(error.kind(), sb::ErrorKind::cancelled) << error.what();
  }
  EXPECT_EQ(read_file(dir_ / "old-copy.bin"), "an earlier copy");

  create_database(dir_ / "db.sqlite", 5);
  const fs::path into = make_folder(dir_ / "into");
  write_file(into / "db.sqlite", "an earlier copy");
  try {
    sb::copy_all_files({dir_ / "db.sqlite"}, into, {}, 3, &cancel);
    ADD_FAILURE() << "a cancelled copy_all_files returned";
  } catch (const sb::SqliteBackupError& error) {
    EXPECT_EQ(error.kind(), sb::ErrorKind::cancelled) << error.what();
  }
  EXPECT_EQ(read_file(into / "db.sqlite"), "an earlier copy");
}

TEST_F(ApiTest, SqliteConnectImmutableOpensACopyReadOnly) {
  create_database(dir_ / "copy.sqlite", 12);
  const auto before = folder_state(dir_.path());
  sb::Connection connection = sb::sqlite_connect_immutable(dir_ / "copy.sqlite");
  ASSERT_TRUE(static_cast<bool>(connection));
  EXPECT_EQ(count_rows(connection.get()), 12);
  EXPECT_EQ(sqlite3_db_readonly(connection.get(), "main"), 1);
  char* message = nullptr;
  const int rc = sqlite3_exec(connection.get(), "INSERT INTO t(v) VALUES ('nope')", nullptr,
                              nullptr, &message);
  sqlite3_free(message);
  EXPECT_EQ(rc & 0xFF, SQLITE_READONLY);
  connection = sb::Connection();  // closes it
  EXPECT_EQ(describe_difference(before, folder_state(dir_.path())), "");
}

// A database that is not there at the first look was never there: "deleted while it was being
// copied" is for one that went away between attempts.
TEST_F(ApiTest, CopyAllFilesOfAMissingDatabaseSaysItDoesNotExist) {
  const fs::path into = make_folder(dir_ / "into");
  try {
    (void)sb::copy_all_files({dir_ / "never.sqlite"}, into);
    ADD_FAILURE() << "copy_all_files of a missing database returned";
  } catch (const sb::SqliteBackupError& error) {
    EXPECT_NE(std::string(error.what()).find("does not exist"), std::string::npos) << error.what();
    EXPECT_EQ(error.cause().system_errno, ENOENT);
  }
  EXPECT_TRUE(list_names(into).empty());
}

TEST_F(ApiTest, CopyAllFilesCopiesTheSetIntoTheFolder) {
  const fs::path source_dir = make_folder(dir_ / "source");
  const fs::path into = make_folder(dir_ / "into");
  OwnerProcess owner(kOwnerExe, source_dir / "live.sqlite", "wal-hold", 50);
  ASSERT_TRUE(owner.ready()) << owner.output();
  const auto files = sb::glob_database_files(source_dir / "live.sqlite");
  EXPECT_TRUE(sb::copy_all_files(files, into));
  EXPECT_EQ(list_names(into), (std::vector<std::string>{"live.sqlite", "live.sqlite-wal"}));
  EXPECT_EQ(count_rows(into / "live.sqlite"), 50);  // SQLite recovers the copied WAL
}

// ---- Logging ------------------------------------------------------------------------

TEST(Logging, ParseLogLevelUsesPythonsNumericScale) {
  EXPECT_EQ(sb::parse_log_level("10"), sb::LogLevel::debug);
  EXPECT_EQ(sb::parse_log_level("20"), sb::LogLevel::info);
  EXPECT_EQ(sb::parse_log_level("30"), sb::LogLevel::warning);
  EXPECT_EQ(sb::parse_log_level("40"), sb::LogLevel::error);
  EXPECT_EQ(sb::parse_log_level("25"), sb::LogLevel::info) << "between levels rounds down";
  EXPECT_EQ(sb::parse_log_level("garbage"), sb::LogLevel::warning);
  EXPECT_EQ(sb::parse_log_level(""), sb::LogLevel::warning);
}

// Captures the log records of one test, restoring the process-wide settings afterwards.
class LoggingTest : public ApiTest {
 protected:
  void SetUp() override {
    saved_level_ = sb::log_level();
    sb::set_log_sink([this](const sb::LogRecord& record) {
      const std::lock_guard lock(mutex_);
      records_.push_back({record.level, std::string(record.message)});
    });
  }
  void TearDown() override {
    sb::set_log_sink({});
    sb::set_log_level(saved_level_);
    ApiTest::TearDown();
  }
  std::vector<std::pair<sb::LogLevel, std::string>> records() {
    const std::lock_guard lock(mutex_);
    return records_;
  }
  // How many records so far contain `text`.
  std::ptrdiff_t mentions(const std::string& text) {
    const auto captured = records();
    return std::count_if(captured.begin(), captured.end(), [&](const auto& record) {
      return record.second.find(text) != std::string::npos;
    });
  }

  sb::LogLevel saved_level_ = sb::LogLevel::warning;
  std::mutex mutex_;
  std::vector<std::pair<sb::LogLevel, std::string>> records_;
};

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

TEST_F(LoggingTest, DebugLevelReportsCopyingAndAttemptsToTheSink) {
  create_database(dir_ / "source.sqlite", 20);
  sb::set_log_level(sb::LogLevel::debug);
  EXPECT_EQ(sb::log_level(), sb::LogLevel::debug);
  sb::sqlite_backup(dir_ / "source.sqlite", dir_ / "copy.sqlite");
  const auto captured = records();
  const bool has_debug_about_copying =
      std::any_of(captured.begin(), captured.end(), [](const auto& record) {
        const std::string text = lower(record.second);
        return record.first == sb::LogLevel::debug &&
               (text.find("cop") != std::string::npos || text.find("attempt") != std::string::npos);
      });
  EXPECT_TRUE(has_debug_about_copying)
      << "no debug record mentions copying or attempts; got " << captured.size() << " records";
}

// The staged WAL of a live source is applied by the library itself (recover/apply_wal),
// not replayed by SQLite, for file and memory destinations alike; with a caller's own URI
// parameters (which may change how SQLite reads the files) SQLite replays it.
TEST_F(LoggingTest, ALiveWalIsAppliedByTheLibraryUnlessTheCallerConfiguresSqlitesOpen) {
  const fs::path source_dir = make_folder(dir_ / "source");
  OwnerProcess owner(kOwnerExe, source_dir / "live.sqlite", "wal-hold", 300);
  ASSERT_TRUE(owner.ready()) << owner.output();
  sb::set_log_level(sb::LogLevel::debug);

  sb::sqlite_backup(source_dir / "live.sqlite", dir_ / "copy.sqlite");
  EXPECT_EQ(count_rows(dir_ / "copy.sqlite"), 300);
  const auto memory = sb::sqlite_backup(source_dir / "live.sqlite");
  ASSERT_TRUE(memory.has_value());
  EXPECT_EQ(count_rows(memory->get()), 300);
  EXPECT_EQ(mentions("applied the WAL of the snapshot"), 2);

  sb::Options options;
  options.sqlite_connect_kwargs.uri_parameters = "cache=private";
  sb::sqlite_backup(source_dir / "live.sqlite", dir_ / "by_sqlite.sqlite", options);
  EXPECT_EQ(count_rows(dir_ / "by_sqlite.sqlite"), 300);
  EXPECT_EQ(mentions("applied the WAL of the snapshot"), 2) << "not SQLite's replay";
}

TEST_F(LoggingTest, WarningLevelDropsDebugRecords) {
  create_database(dir_ / "source.sqlite", 20);
  sb::set_log_level(sb::LogLevel::warning);
  sb::sqlite_backup(dir_ / "source.sqlite", dir_ / "copy.sqlite");
  for (const auto& [level, message] : records()) {
    EXPECT_GE(static_cast<int>(level), static_cast<int>(sb::LogLevel::warning)) << message;
  }
}

// A thread's ScopedLogSink takes every record of the calls it makes, including those logged on
// the threads the library starts for them (the snapshot runs on a thread of its own, with a
// descriptor table of its own); a backup on another thread at the same time still logs to the
// process-wide sink.
TEST_F(LoggingTest, AScopedSinkTakesTheRecordsOfItsThreadsCallsAndNoOthers) {
  const fs::path live_dir = make_folder(dir_ / "live");
  OwnerProcess owner(kOwnerExe, live_dir / "live.sqlite", "wal-hold", 300);
  ASSERT_TRUE(owner.ready()) << owner.output();
  create_database(dir_ / "quiet.sqlite", 20);
  sb::set_log_level(sb::LogLevel::debug);

  std::mutex scoped_mutex;
  std::vector<std::string> scoped;
  std::thread with_scope([&] {
    const sb::ScopedLogSink scope([&](const sb::LogRecord& record) {
      const std::lock_guard lock(scoped_mutex);
      scoped.emplace_back(record.message);
    });
    sb::sqlite_backup(live_dir / "live.sqlite", dir_ / "live_copy.sqlite");
    EXPECT_EQ(count_rows(sb::sqlite_backup(live_dir / "live.sqlite").value().get()), 300);
  });
  std::thread without_scope([&] {
    for (int i = 0; i < 5; ++i) {
      sb::sqlite_backup(dir_ / "quiet.sqlite",
                        dir_ / ("quiet_copy" + std::to_string(i) + ".sqlite"));
    }
  });
  with_scope.join();
  without_scope.join();

  const auto count = [](const std::vector<std::string>& texts, const std::string& text) {
    return std::count_if(texts.begin(), texts.end(), [&](const std::string& message) {
      return message.find(text) != std::string::npos;
    });
  };
  std::vector<std::string> global;
  for (const auto& record : records()) global.push_back(record.second);
  // Logged on the snapshot's own thread, and on the calling thread.
  EXPECT_EQ(count(scoped, "one consistent state"), 2) << ::testing::PrintToString(scoped);
  EXPECT_EQ(count(scoped, "applied the WAL of the snapshot"), 2);
  EXPECT_GT(count(scoped, "live.sqlite"), 0);
  EXPECT_EQ(count(scoped, "quiet"), 0) << "another thread's records";
  EXPECT_EQ(count(global, "live"), 0) << ::testing::PrintToString(global);
  EXPECT_EQ(count(global, "one consistent state"), 5);
}

// Each scope has a lock of its own: a scoped sink that blocks holds up its own call only, not
// the logging of a backup on another thread (with one process-wide lock, the other backup
// waited at its first record, and this test ran into its wait's limit).
TEST_F(LoggingTest, AScopedSinkThatBlocksHoldsUpNoOtherThread) {
  create_database(dir_ / "a.sqlite", 20);
  create_database(dir_ / "b.sqlite", 20);
  sb::set_log_level(sb::LogLevel::debug);
  std::mutex mutex;
  std::condition_variable changed;
  bool blocking = false;
  bool other_done = false;
  bool waited_out = false;
  std::thread blocked([&] {
    bool first = true;
    const sb::ScopedLogSink scope([&](const sb::LogRecord&) {
      if (!std::exchange(first, false)) return;
      std::unique_lock lock(mutex);
      blocking = true;
      changed.notify_all();
      waited_out = !changed.wait_for(lock, std::chrono::seconds(10), [&] { return other_done; });
    });
    sb::sqlite_backup(dir_ / "a.sqlite", dir_ / "a_copy.sqlite");
  });
  std::thread other([&] {
    {
      std::unique_lock lock(mutex);
      changed.wait(lock, [&] { return blocking; });
    }
    sb::sqlite_backup(dir_ / "b.sqlite", dir_ / "b_copy.sqlite");
    const std::lock_guard lock(mutex);
    other_done = true;
    changed.notify_all();
  });
  other.join();
  blocked.join();
  EXPECT_FALSE(waited_out) << "the other thread's backup waited for this thread's sink";
  EXPECT_GT(mentions("b.sqlite"), 0);
  EXPECT_EQ(mentions("a.sqlite"), 0);
  EXPECT_EQ(count_rows(dir_ / "a_copy.sqlite"), 20);
}

TEST_F(ApiTest, TheLibraryWritesNothingToStdout) {
  create_database(dir_ / "source.sqlite", 20);
  const sb::LogLevel saved_level = sb::log_level();
  sb::set_log_sink({});  // the default sink, at the chattiest level
  sb::set_log_level(sb::LogLevel::debug);
  CaptureFd capture(STDOUT_FILENO);
  sb::sqlite_backup(dir_ / "source.sqlite", dir_ / "copy.sqlite");
  auto connection = sb::sqlite_backup(dir_ / "source.sqlite");
  try {
    sb::sqlite_backup(dir_ / "missing.sqlite", dir_ / "other.sqlite");
  } catch (const std::exception&) {
  }
  const std::string written = capture.finish();
  sb::set_log_level(saved_level);
  EXPECT_EQ(written, "");
}

}  // namespace

namespace {

// The POSIX (process-associated) record locks this process holds on `file`, from /proc/locks:
// "1: POSIX  ADVISORY  READ 1234 fd:01:5678 1073741826 1073742335".
std::set<std::string> own_posix_locks_on(const fs::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return {};
  const std::string inode_suffix = ":" + std::to_string(st.st_ino);
  const std::string pid = std::to_string(::getpid());
  // One read() of the whole table: the kernel builds it page by page, and a table read in
  // several calls while other processes lock and unlock can repeat or skip lines.
  std::string table(std::size_t{1} << 22, '\0');
  const int fd = ::open("/proc/locks", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  const ssize_t got = ::read(fd, table.data(), table.size());
  ::close(fd);
  table.resize(got > 0 ? static_cast<std::size_t>(got) : 0);
  std::set<std::string> locks;
  std::istringstream lines(table);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    std::string number, kind, advisory, type, owner, device_inode;
    fields >> number >> kind;
    if (kind == "->") fields >> kind;  // a waiting lock
    fields >> advisory >> type >> owner >> device_inode;
    if (kind == "POSIX" && owner == pid && device_inode.size() > inode_suffix.size() &&
        device_inode.ends_with(inode_suffix)) {
      // Without the ordinal in front: it changes as other processes lock and unlock.
      locks.insert(line.substr(line.find(':') + 1));
    }
  }
  return locks;
}

}  // namespace

// A program that backs up a database it has open itself keeps its SQLite locks: closing any
// descriptor of a file drops all of the process's POSIX locks on it, so the library must
// never close a source descriptor in the caller's descriptor table.
TEST_F(ApiTest, TheCallersOwnSqliteLocksOnTheSourceSurviveABackup) {
  const fs::path source = dir_ / "source.sqlite";
  create_database(source, 200);
  sqlite3* own = nullptr;
  ASSERT_EQ(sqlite3_open(source.c_str(), &own), SQLITE_OK);
  // A read transaction: SQLite holds a SHARED lock (a POSIX read lock) until COMMIT.
  ASSERT_EQ(sqlite3_exec(own, "BEGIN; SELECT count(*) FROM t;", nullptr, nullptr, nullptr),
            SQLITE_OK);
  const auto held = own_posix_locks_on(source);
  ASSERT_FALSE(held.empty()) << "SQLite took no POSIX lock; the test cannot see anything";

  sb::sqlite_backup(source, dir_ / "to-file.sqlite");
  EXPECT_EQ(own_posix_locks_on(source), held) << "after a backup to a file";
  auto memory = sb::sqlite_backup(source);
  EXPECT_EQ(own_posix_locks_on(source), held) << "after a backup into memory";
  EXPECT_TRUE(sb::atomic_copy(source, dir_ / "atomic.sqlite"));
  EXPECT_EQ(own_posix_locks_on(source), held) << "after atomic_copy";

  EXPECT_EQ(sqlite3_exec(own, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(own);
  EXPECT_EQ(count_rows(dir_ / "to-file.sqlite"), 200);
}

// The default reads the source on a thread of its own (the calling thread waits);
// private_descriptor_table = false, for a process with no SQLite connection to the source
// (the CLI), reads it on the calling thread, and the backup is as good.
TEST_F(ApiTest, WithoutAPrivateDescriptorTableTheSourceIsReadOnTheCallingThread) {
  const fs::path source = dir_ / "source.sqlite";
  create_database(source, 200);
  for (const bool private_table : {true, false}) {
    sb::Options options;
    options.private_descriptor_table = private_table;
    std::set<std::thread::id> readers;
    options.on_progress = [&](const sb::CopyProgress&) {
      readers.insert(std::this_thread::get_id());
    };
    const fs::path destination = dir_ / (private_table ? "private.sqlite" : "shared.sqlite");
    sb::sqlite_backup(source, destination, options);
    ASSERT_EQ(readers.size(), 1U);
    EXPECT_EQ(*readers.begin() == std::this_thread::get_id(), !private_table);
    EXPECT_EQ(count_rows(destination), 200);
  }
}

namespace {

std::string serialized(sqlite3* db) {
  sqlite3_int64 size = 0;
  unsigned char* bytes = sqlite3_serialize(db, "main", &size, 0);
  std::string image(reinterpret_cast<const char*>(bytes), static_cast<std::size_t>(size));
  sqlite3_free(bytes);
  return image;
}

}  // namespace

// A memory snapshot of a live-WAL source is read straight into memory, its WAL applied there
// (nothing staged), and is, byte for byte, the file the same snapshot makes on disk. With a
// caller's URI parameters SQLite must read the files itself: that snapshot goes through
// staged files, and is as good.
TEST_F(LoggingTest, AMemorySnapshotOfALiveWalIsReadStraightIntoMemoryAndEqualsTheFile) {
  const fs::path source_dir = make_folder(dir_ / "source");
  OwnerProcess owner(kOwnerExe, source_dir / "live.sqlite", "wal-hold", 3000);
  ASSERT_TRUE(owner.ready()) << owner.output();
  sb::set_log_level(sb::LogLevel::debug);
  sb::sqlite_backup(source_dir / "live.sqlite", dir_ / "copy.sqlite");
  const std::string file_image = read_file(dir_ / "copy.sqlite");

  const auto memory = sb::sqlite_backup(source_dir / "live.sqlite");
  ASSERT_TRUE(memory.has_value());
  EXPECT_EQ(mentions("straight into memory"), 1);
  EXPECT_EQ(count_rows(memory->get()), 3000);
  EXPECT_TRUE(serialized(memory->get()) == file_image) << "memory and file snapshots differ";
  EXPECT_EQ(query_text(memory->get(), "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(query_text(memory->get(), "PRAGMA journal_mode"), "memory");

  sb::Options options;
  options.sqlite_connect_kwargs.uri_parameters = "cache=private";
  const auto replayed = sb::sqlite_backup(source_dir / "live.sqlite", std::nullopt, options);
  ASSERT_TRUE(replayed.has_value());
  EXPECT_EQ(mentions("straight into memory"), 1);
  EXPECT_EQ(count_rows(replayed->get()), 3000);
  EXPECT_EQ(query_text(replayed->get(), "PRAGMA integrity_check"), "ok");
}

// From 32 MiB on the database is read into memory in two halves at once; the result is still
// the file snapshot byte for byte (here with the WAL growing the database past its file).
TEST_F(LoggingTest, ALargeLiveWalDatabaseReadInTwoHalvesEqualsTheFileSnapshot) {
  const fs::path source = dir_ / "large.sqlite";
  exec_sql(source,
           "PRAGMA journal_mode=WAL; CREATE TABLE big(id INTEGER PRIMARY KEY, x BLOB);"
           "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)"
           " INSERT INTO big(x) SELECT randomblob(4000) FROM n;");
  ASSERT_GE(fs::file_size(source), std::uintmax_t{36} << 20);  // past the two-halves threshold
  sqlite3* owner = nullptr;  // keeps the WAL live: a connection with checkpoints off
  ASSERT_EQ(sqlite3_open(source.c_str(), &owner), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(owner,
                   "PRAGMA wal_autocheckpoint=0;"
                   "UPDATE big SET x = randomblob(4000) WHERE id % 7 = 0;"
                   "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)"
                   " INSERT INTO big(x) SELECT randomblob(4000) FROM n;",
                   nullptr, nullptr, nullptr),
      SQLITE_OK);
  ASSERT_GT(fs::file_size(source.string() + "-wal"), std::uintmax_t{4} << 20);
  sb::set_log_level(sb::LogLevel::debug);

  sb::sqlite_backup(source, dir_ / "copy.sqlite");
  const auto memory = sb::sqlite_backup(source);
  ASSERT_TRUE(memory.has_value());
  EXPECT_GT(mentions("straight into memory"), 0);
  EXPECT_TRUE(serialized(memory->get()) == read_file(dir_ / "copy.sqlite"))
      << "memory and file snapshots differ";
  EXPECT_EQ(query_int(memory->get(), "SELECT count(*) FROM big"), 10500);
  sqlite3_close(owner);
}
