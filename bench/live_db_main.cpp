// bench_live_db: makes a benchmark source and stays its owner.
//
//   bench_live_db --db PATH --db-bytes N --wal-bytes M
//
// Creates PATH with at least N bytes in the main file, then, on a connection with automatic
// checkpoints off, commits until PATH-wal holds at least M bytes. It then prints one line,
//   ready db_bytes=<size of PATH> wal_bytes=<size of PATH-wal>
// and keeps the connection open until its stdin reaches end of file (or it is killed), so
// the WAL stays live, with an owner, while the benchmark runs. It exits without closing the
// connection: closing would checkpoint the WAL away.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>
#include <string_view>

#include "live_db.hpp"

namespace {

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "bench_live_db: %s\nusage: bench_live_db --db PATH --db-bytes N --wal-bytes M\n",
               why);
  std::exit(2);
}

std::uint64_t parse_bytes(std::string_view flag, const char* text) {
  char* end = nullptr;
  const unsigned long long value = std::strtoull(text, &end, 10);
  if (end == text || *end != '\0') usage((std::string(flag) + " needs a number of bytes").c_str());
  return value;
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path database;
  std::uint64_t db_bytes = 0;
  std::uint64_t wal_bytes = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (i + 1 >= argc) usage(("missing value after " + std::string(flag)).c_str());
    const char* value = argv[++i];
    if (flag == "--db") {
      database = value;
    } else if (flag == "--db-bytes") {
      db_bytes = parse_bytes(flag, value);
    } else if (flag == "--wal-bytes") {
      wal_bytes = parse_bytes(flag, value);
    } else {
      usage(("unknown flag " + std::string(flag)).c_str());
    }
  }
  if (database.empty()) usage("--db is required");

  try {
    sqlite_backup_bench::make_database(database, db_bytes);
    // Leaked on purpose: the process ends with _exit so that the WAL is never checkpointed.
    auto* owner = new sqlite_backup_bench::WalOwner(database);
    const std::uint64_t wal = owner->grow_wal_to(wal_bytes);
    std::printf("ready db_bytes=%llu wal_bytes=%llu\n",
                static_cast<unsigned long long>(std::filesystem::file_size(database)),
                static_cast<unsigned long long>(wal));
    std::fflush(stdout);
    char buffer[256];
    while (read(STDIN_FILENO, buffer, sizeof buffer) > 0) {
    }
    _exit(0);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s\n", error.what());
    return 1;
  }
}
