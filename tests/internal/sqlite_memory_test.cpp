// io::SqliteMemory: the image a memory destination hands to a connection. Where it lives in a
// memory file (the default), its mapping must last exactly as long as the connection uses it:
// mapped while the database is open, unmapped when the connection closes or takes the next
// snapshot, never while SQLite still points into it. Both kinds of memory must give a
// writable database that grows.
#include "io/sqlite_memory.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <system_error>

#include "io/file.hpp"
#include "small_heap_images.hpp"
#include "test_support.hpp"

namespace sqlite_backup::testing {
namespace {

// How many mappings of our memory files this process holds (/proc/self/maps names them
// "/memfd:sqlite_backup snapshot (deleted)").
int snapshot_mappings() {
  std::ifstream maps("/proc/self/maps");
  int found = 0;
  for (std::string line; std::getline(maps, line);) {
    if (line.find("/memfd:sqlite_backup snapshot") != std::string::npos) ++found;
  }
  return found;
}

// A database of `rows` rows, read whole into a new image.
io::SqliteMemory image_of(const TempDir& dir, const std::string& name, int rows) {
  const fs::path file = dir / name;
  create_database(file, rows);
  const io::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  io::SqliteMemory memory;
  io::read_file_into(fd.get(), file, memory, {});
  return memory;
}

sqlite3* open_memory() {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(":memory:", &db), SQLITE_OK);
  return db;
}

class SqliteMemoryTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { io::set_memory_files_allowed(GetParam()); }
  void TearDown() override { io::set_memory_files_allowed(true); }
  [[nodiscard]] static bool in_memory_files() { return GetParam(); }
  // The mappings `images` held images add to those there before the test.
  [[nodiscard]] int mappings_with(int images) const {
    return before_ + (in_memory_files() ? images : 0);
  }
  // A new connection holding an image of a.db, 10 rows.
  [[nodiscard]] sqlite3* connection_with_ten_rows() const {
    sqlite3* db = open_memory();
    EXPECT_EQ(image_of(dir_, "a.db", 10).hand_to(db), SQLITE_OK);
    EXPECT_EQ(count_rows(db), 10);
    return db;
  }
  // Closes `db`, and every mapping it held must go with it.
  void close_and_expect_nothing_mapped(sqlite3* db) const {
    ASSERT_EQ(sqlite3_close(db), SQLITE_OK);
    EXPECT_EQ(snapshot_mappings(), before_);
  }

  TempDir dir_;
  const int before_ = snapshot_mappings();
};

// How many descriptors of our memory files this process holds.
int snapshot_descriptors() {
  int found = 0;
  for (const auto& entry : fs::directory_iterator("/proc/self/fd")) {
    std::error_code error;
    const fs::path target = fs::read_symlink(entry.path(), error);
    if (!error && target.string().find("memfd:sqlite_backup snapshot") != std::string::npos) {
      ++found;
    }
  }
  return found;
}

// The image is read through a memory file, mapped, whose descriptor stays open until the
// image is handed over or closed: it must be closed on the thread that opened it (a thread
// with a descriptor table of its own must not leave one behind). Heap memory has neither.
TEST_P(SqliteMemoryTest, AMemoryFilesDescriptorLastsUntilTheImageIsHandedOverOrClosed) {
  const int descriptors = snapshot_descriptors();
  io::SqliteMemory handed = image_of(dir_, "a.db", 100);
  EXPECT_GT(handed.size(), 0U);
  EXPECT_EQ(snapshot_mappings(), mappings_with(1));
  EXPECT_EQ(snapshot_descriptors(), descriptors + (in_memory_files() ? 1 : 0));
  EXPECT_EQ(handed.memory_file() >= 0, in_memory_files());
  sqlite3* db = open_memory();
  ASSERT_EQ(handed.hand_to(db), SQLITE_OK);
  EXPECT_EQ(snapshot_descriptors(), descriptors);

  io::SqliteMemory closed = image_of(dir_, "b.db", 100);
  closed.close_memory_file();
  EXPECT_EQ(closed.memory_file(), -1);
  EXPECT_EQ(snapshot_descriptors(), descriptors);
  EXPECT_EQ(snapshot_mappings(), mappings_with(2));
  ASSERT_EQ(closed.hand_to(db), SQLITE_OK);  // (replacing the first image: its mapping goes)
  EXPECT_EQ(snapshot_mappings(), mappings_with(1));
  EXPECT_EQ(*query_text(db, "PRAGMA integrity_check"), "ok");
  close_and_expect_nothing_mapped(db);
}

// A connection handed the image reads it, writes it and grows it well past its size; the
// memory file's mapping stays while the connection is open and goes when it closes.
TEST_P(SqliteMemoryTest, TheConnectionReadsWritesAndGrowsItAndItsCloseFreesTheMapping) {
  io::SqliteMemory memory = image_of(dir_, "a.db", 200);
  const std::uint64_t size = memory.size();
  sqlite3* db = open_memory();
  ASSERT_EQ(memory.hand_to(db), SQLITE_OK);
  EXPECT_EQ(memory.data(), nullptr);  // SQLite's now
  EXPECT_EQ(count_rows(db), 200);
  // 8 MiB more than the snapshot: past any room a heap image is given up front.
  ASSERT_EQ(sqlite3_exec(db,
                         "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                         "WHERE i < 1024) INSERT INTO t(v) SELECT randomblob(8192) FROM n",
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  EXPECT_EQ(count_rows(db), 1224);
  EXPECT_GT(*query_int(db, "PRAGMA page_count") * *query_int(db, "PRAGMA page_size"),
            static_cast<long long>(size) + (8 << 20));
  EXPECT_EQ(*query_text(db, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(snapshot_mappings(), mappings_with(1));
  close_and_expect_nothing_mapped(db);
}

// A second snapshot into the same connection unmaps the first one's memory (no longer in
// use) and leaves its own, which the connection then reads.
TEST_P(SqliteMemoryTest, ASecondImageHandedToTheSameConnectionFreesTheFirst) {
  sqlite3* db = connection_with_ten_rows();
  ASSERT_EQ(image_of(dir_, "b.db", 20).hand_to(db), SQLITE_OK);
  EXPECT_EQ(snapshot_mappings(), mappings_with(1));
  EXPECT_EQ(count_rows(db), 20);
  EXPECT_EQ(*query_text(db, "PRAGMA integrity_check"), "ok");
  close_and_expect_nothing_mapped(db);
}

// An image handed to a connection with a statement still running is refused before
// anything is replaced (SQLite 3.40 would replace the database under the statement): the
// image is freed at once, and the connection keeps the database it had.
TEST_P(SqliteMemoryTest, AnImageIsRefusedWhileAStatementRunsAndTheConnectionKeepsItsDatabase) {
  sqlite3* db = connection_with_ten_rows();
  sqlite3_stmt* reading = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT id FROM t", -1, &reading, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(reading), SQLITE_ROW);
  io::SqliteMemory refused = image_of(dir_, "b.db", 20);
  EXPECT_EQ(refused.hand_to(db), SQLITE_BUSY);
  EXPECT_EQ(refused.data(), nullptr);
  EXPECT_EQ(snapshot_mappings(), mappings_with(1));
  EXPECT_EQ(sqlite3_step(reading), SQLITE_ROW);  // still reading the first image
  sqlite3_finalize(reading);
  EXPECT_EQ(count_rows(db), 10);
  close_and_expect_nothing_mapped(db);
}

// An image SQLite itself refuses (here an authorizer denies the ATTACH that
// sqlite3_deserialize runs) is freed at once, and the connection keeps its database.
TEST_P(SqliteMemoryTest, AnImageSqliteRefusesIsFreedAndTheConnectionKeepsItsDatabase) {
  sqlite3* db = connection_with_ten_rows();
  sqlite3_set_authorizer(
      db,
      [](void*, int action, const char*, const char*, const char*, const char*) {
        return action == SQLITE_ATTACH ? SQLITE_DENY : SQLITE_OK;
      },
      nullptr);
  io::SqliteMemory refused = image_of(dir_, "b.db", 20);
  EXPECT_NE(refused.hand_to(db), SQLITE_OK);
  EXPECT_EQ(refused.data(), nullptr);
  sqlite3_set_authorizer(db, nullptr, nullptr);
  EXPECT_EQ(snapshot_mappings(), mappings_with(1));
  EXPECT_EQ(count_rows(db), 10);
  close_and_expect_nothing_mapped(db);
}

// An image never handed over is freed with its owner.
TEST_P(SqliteMemoryTest, AnImageNeverHandedOverIsFreed) {
  { const io::SqliteMemory memory = image_of(dir_, "a.db", 10); }
  EXPECT_EQ(snapshot_mappings(), before_);
}

// The process's address space in bytes (VmSize).
std::uint64_t address_space() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmSize:", 0) == 0) return std::stoull(line.substr(7)) * 1024;
  }
  return 0;
}

// In a forked child (the limit and any signal are the child's): sets `resource` to `bytes`,
// reads `file` (a database of `rows` rows) into a new image, which must be heap memory, hands
// it to a new connection, runs `then` on it (SQL, or empty) and counts the rows, which must
// be `rows_after`. The child's exit status says which step failed (see `failures`).
void expect_heap_image_under_limit(int resource, rlim_t bytes, const fs::path& file,
                                   const char* then, long long rows_after) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const rlimit limit{bytes, bytes};
    int code = ::setrlimit(resource, &limit) == 0 ? 0 : 10;
    const io::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    io::SqliteMemory memory;
    io::read_file_into(fd.get(), file, memory, {});
    if (code == 0 && (memory.memory_file() != -1 || snapshot_mappings() != 0)) code = 11;
    sqlite3* db = nullptr;
    sqlite3_open(":memory:", &db);
    if (code == 0 && memory.hand_to(db) != SQLITE_OK) code = 12;
    if (code == 0 && then != nullptr &&
        sqlite3_exec(db, then, nullptr, nullptr, nullptr) != SQLITE_OK) {
      code = 13;
    }
    if (code == 0 && count_rows(db) != rows_after) code = 14;
    sqlite3_close(db);
    ::_exit(code);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "ended by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "10: no limit set; 11: a memory file despite the limit; 12: not handed over; 13: "
         "the database did not grow; 14: rows lost";
}

// Under an address-space limit (ulimit -v) that leaves no room for a memory file's mapping
// to grow, the image takes heap memory, which grows with the database, rather than a mapping
// without room (its first write past the snapshot would fail) that takes what is left. Run in
// a child: the limit is the process's. (Not under AddressSanitizer, whose shadow memory is
// most of the address space.)
TEST(SqliteMemoryLimits, WithoutRoomForAMappingTheImageTakesHeapMemoryThatGrows) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer reserves most of the address space for itself";
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  GTEST_SKIP() << "AddressSanitizer reserves most of the address space for itself";
#endif
#endif
  TempDir dir;
  const fs::path file = dir / "a.db";
  create_database(file, 200);
  // Room for the work, well short of the mapping's 4 GiB of room; then 64 MiB more than the
  // snapshot.
  expect_heap_image_under_limit(RLIMIT_AS, address_space() + (std::uint64_t{1} << 30), file,
                                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                                "WHERE i < 8192) INSERT INTO t(v) SELECT randomblob(8192) FROM n",
                                8392);
}

// Under a file size limit (ulimit -f) below a memory file's size with its room, the kernel
// would end the process (SIGXFSZ) at the memory file's ftruncate: the image takes heap memory
// instead. Run in a child, where the limit and the signal are the child's.
TEST(SqliteMemoryLimits, UnderAFileSizeLimitTheImageTakesHeapMemoryAndTheProcessLives) {
  TempDir dir;
  const fs::path file = dir / "a.db";
  create_database(file, 200);
  expect_heap_image_under_limit(RLIMIT_FSIZE, std::uint64_t{64} << 20, file, nullptr, 200);
}

// A snapshot in heap memory handed to a connection that holds an earlier one in a memory
// file frees that one's mapping, as a second memory file would.
TEST(SqliteMemoryLimits, AHeapImageAfterAMemoryFileFreesTheMemoryFile) {
  TempDir dir;
  const int before = snapshot_mappings();
  sqlite3* db = open_memory();
  ASSERT_EQ(image_of(dir, "a.db", 10).hand_to(db), SQLITE_OK);
  EXPECT_EQ(snapshot_mappings(), before + 1);
  io::set_memory_files_allowed(false);
  io::SqliteMemory heap = image_of(dir, "b.db", 20);
  io::set_memory_files_allowed(true);
  ASSERT_EQ(heap.hand_to(db), SQLITE_OK);
  EXPECT_EQ(snapshot_mappings(), before);
  EXPECT_EQ(count_rows(db), 20);
  ASSERT_EQ(sqlite3_close(db), SQLITE_OK);
}

// An image past what heap memory could let grow (io::kLargestHeapImage) is reserved only in a
// memory file with its room; where none can be had nothing is reserved and the caller takes
// SQLite's backup API. (Reserving touches no page: the sizes cost address space only.)
TEST(SqliteMemoryLimits, AnImagePastTheHeapsLimitTakesAMemoryFileOrNothing) {
  const fs::path source = "source.db";
  constexpr std::uint64_t kLarge = io::kLargestHeapImage + 1;
  {
    io::SqliteMemory memory;
    ASSERT_TRUE(memory.reserve_image(kLarge, source));
    EXPECT_GE(memory.memory_file(), 0);
    EXPECT_GE(memory.capacity(), kLarge + (std::uint64_t{4} << 30)) << "no room to grow";
  }
  io::set_memory_files_allowed(false);
  {
    io::SqliteMemory memory;
    EXPECT_FALSE(memory.reserve_image(kLarge, source));
    EXPECT_EQ(memory.data(), nullptr);
    EXPECT_EQ(memory.capacity(), 0U);
    // Up to the limit, heap memory serves.
    io::SqliteMemory small;
    ASSERT_TRUE(small.reserve_image(std::uint64_t{1} << 20, source));
    EXPECT_EQ(small.memory_file(), -1);
    EXPECT_GE(small.capacity(), std::uint64_t{1} << 20);
  }
  io::set_memory_files_allowed(true);
  // Under a file size limit the memory file is refused too; in a child, whose limit it is.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const rlim_t bytes = rlim_t{64} << 20;
    const rlimit limit{bytes, bytes};
    io::SqliteMemory memory;
    ::_exit(::setrlimit(RLIMIT_FSIZE, &limit) != 0 ? 10
            : memory.reserve_image(kLarge, source) ? 11
            : memory.capacity() != 0               ? 12
                                                   : 0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "ended by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10: no limit set; 11: reserved despite the limit; 12: "
                                       "something reserved";
}

INSTANTIATE_TEST_SUITE_P(Memory, SqliteMemoryTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& param_info) {
                           return param_info.param ? std::string("MemoryFile")
                                                   : std::string("Heap");
                         });

constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;

// What read_while_growing() saw: the bytes read, or the error ImageOutgrewHeapMemory.
struct GrowingRead {
  std::optional<std::uint64_t> bytes;
  std::optional<io::ImageOutgrewHeapMemory> error;
  std::uint64_t capacity = 0;
  bool grown = false;
};

// Reads a file of 1.5 MiB into heap memory bounded at 2 MiB (reserved for its size and one
// byte more at the start), appending `growth` bytes to it once its first chunk was read.
GrowingRead read_while_growing(const fs::path& file, std::uint64_t growth) {
  const SmallHeapImages heap_only(2 * kMiB);
  write_file(file, std::string(3 * kMiB / 2, 'a'));
  const io::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  io::SqliteMemory memory;
  GrowingRead read;
  if (!memory.reserve_image(fs::file_size(file) + 1, file) || memory.memory_file() != -1) {
    ADD_FAILURE() << "not in heap memory";
    return read;
  }
  const auto grow_once = [&](std::uint64_t) {
    if (!read.grown) {
      std::ofstream(file, std::ios::app) << std::string(growth, 'b');
      read.grown = true;
    }
    return true;
  };
  try {
    read.bytes = io::read_file_into(fd.get(), file, memory, grow_once);
  } catch (const io::ImageOutgrewHeapMemory& error) {
    read.error = error;
  }
  read.capacity = memory.capacity();
  return read;
}

// A file that grows while it is read into heap memory past the bound reserve_image() set for
// heap memory (io::kLargestHeapImage: past about 2 GiB SQLite's allocator gives no block at
// all) is not read on into more heap memory: ImageOutgrewHeapMemory, naming the file, for a
// caller to take another way. Here the file grows to 3.5 MiB.
TEST(SqliteMemoryLimits, HeapMemoryDoesNotGrowPastItsBoundForAFileGrowingDuringTheRead) {
  TempDir dir;
  const GrowingRead read = read_while_growing(dir / "growing.db", 2 * kMiB);
  EXPECT_TRUE(read.grown);
  EXPECT_FALSE(read.bytes) << "read on into " << read.capacity << " bytes of heap memory";
  ASSERT_TRUE(read.error);
  EXPECT_EQ(read.error->kind(), ErrorKind::io);
  EXPECT_EQ(read.error->path(), dir / "growing.db");
  EXPECT_NE(std::string(read.error->what()).find("grew to at least"), std::string::npos)
      << read.error->what();
  EXPECT_LE(read.capacity, 2 * kMiB);
}

// Up to the bound a growing file is read on: the room heap memory is given for growth (a
// quarter more) stops at the bound rather than refusing a file that needs less. Here the
// file grows to 1.75 MiB.
TEST(SqliteMemoryLimits, HeapMemoryGrowsUpToItsBoundForAFileGrowingDuringTheRead) {
  TempDir dir;
  const GrowingRead read = read_while_growing(dir / "growing.db", kMiB / 4);
  EXPECT_TRUE(read.grown);
  EXPECT_EQ(read.bytes, std::optional<std::uint64_t>(7 * kMiB / 4))
      << (read.error ? read.error->what() : "");
  EXPECT_LE(read.capacity, 2 * kMiB);
}

}  // namespace
}  // namespace sqlite_backup::testing
