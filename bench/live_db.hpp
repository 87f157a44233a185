// Databases for the benchmarks: a main file of a chosen size, then a live WAL on top of it.
//
// The WAL is what makes a backup of a live database more than a file copy: the committed
// state is the main file plus the WAL's frames, so every benchmark source has one. Its pages
// are both new rows (past the main file's end) and rewritten old rows (pages that the WAL
// overrides), as an application's writes would leave them.
#pragma once

#include <cstdint>
#include <filesystem>

struct sqlite3;

namespace sqlite_backup_bench {

// Creates `database` (which must not exist) with page_size 4096 in journal_mode=WAL and
// fills table t(id INTEGER PRIMARY KEY, v BLOB) with incompressible 1000-byte rows until the
// file holds at least `bytes`. Everything ends up in the main file (no -wal is left).
void make_database(const std::filesystem::path& database, std::uint64_t bytes);

// One connection that writes to the database with automatic checkpoints off, so what it
// commits stays in the -wal for as long as the connection (or its process) lives.
class WalOwner {
 public:
  explicit WalOwner(const std::filesystem::path& database);
  WalOwner(const WalOwner&) = delete;
  WalOwner& operator=(const WalOwner&) = delete;
  // Closing would checkpoint the WAL into the main file and delete it; callers that want
  // the WAL to outlive them end their process instead (_exit or SIGKILL).
  ~WalOwner();

  // Commits inserts and updates, up to 1 MiB per transaction, until the -wal holds at
  // least `bytes`. Returns the -wal's size.
  std::uint64_t grow_wal_to(std::uint64_t bytes);

 private:
  std::filesystem::path database_;
  sqlite3* db_ = nullptr;
};

// Size of the -wal beside `database` (0 when there is none).
std::uint64_t wal_size(const std::filesystem::path& database);

}  // namespace sqlite_backup_bench
