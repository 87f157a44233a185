// In-process benchmarks of the library (Google Benchmark). bench/run runs the whole-program
// comparison against cp and sqlite3; this measures the pieces without process start-up:
//   BM_BackupToFile      sqlite_backup(source, file): the default, safe mode
//   BM_BackupToMemory    sqlite_backup(source): snapshot into an in-memory database
//   BM_CopyAllFiles      copy_all_files: copy the set and validate it, no finalisation
//   BM_AtomicCopy        atomic_copy of the main file alone: the copy primitive
// The argument is the main file's size in MiB; each source also has a WAL of a tenth of that
// (at least 1 MiB), left by a writer killed before it could checkpoint.
// Sources live under $BENCH_DIR (default /var/tmp) and are removed at exit.
#include <benchmark/benchmark.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <sqlite_backup/sqlite_backup.hpp>
#include <stdexcept>
#include <string>
#include <system_error>

#include "live_db.hpp"
#include "scratch.hpp"

namespace {

namespace fs = std::filesystem;
constexpr std::uint64_t kMiB = 1024 * 1024;

sqlite_backup_bench::ScratchFolder& scratch() {
  static sqlite_backup_bench::ScratchFolder instance("sqlite_backup_micro");
  return instance;
}

// Makes the database in a child process that commits the WAL and is then SIGKILLed: the WAL
// stays behind exactly as a crashed (or still running) writer leaves it, and this process
// never holds a connection (or a POSIX lock) on the source.
fs::path make_source_with_wal(std::uint64_t db_bytes, std::uint64_t wal_bytes) {
  const fs::path database = scratch().root() / ("source-" + std::to_string(db_bytes) + ".db");
  int ready[2];
  if (pipe(ready) != 0) throw std::system_error(errno, std::generic_category(), "bench: pipe");
  const pid_t child = fork();
  if (child < 0) throw std::system_error(errno, std::generic_category(), "bench: fork");
  if (child == 0) {
    close(ready[0]);
    try {
      sqlite_backup_bench::make_database(database, db_bytes);
      auto* owner = new sqlite_backup_bench::WalOwner(database);  // never closed: see above
      owner->grow_wal_to(wal_bytes);
      const char byte = 'r';
      if (write(ready[1], &byte, 1) != 1) _exit(1);
      pause();
    } catch (const std::exception& error) {
      std::fprintf(stderr, "%s\n", error.what());
    }
    _exit(1);
  }
  close(ready[1]);
  char byte = 0;
  const bool is_ready = read(ready[0], &byte, 1) == 1;
  close(ready[0]);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  if (!is_ready) throw std::runtime_error("bench: making " + database.string() + " failed");
  return database;
}

const fs::path& source_of_mib(std::int64_t mib) {
  static std::map<std::int64_t, fs::path> sources;
  auto found = sources.find(mib);
  if (found == sources.end()) {
    const std::uint64_t db_bytes = static_cast<std::uint64_t>(mib) * kMiB;
    found =
        sources.emplace(mib, make_source_with_wal(db_bytes, std::max(db_bytes / 10, kMiB))).first;
  }
  return found->second;
}

std::uint64_t set_bytes(const fs::path& database) {
  return fs::file_size(database) + sqlite_backup_bench::wal_size(database);
}

void remove_destination(const fs::path& destination) {
  std::error_code ignored;
  fs::remove_all(destination, ignored);
}

void BM_BackupToFile(benchmark::State& state) {
  const fs::path& source = source_of_mib(state.range(0));
  const fs::path destination = scratch().root() / "backup.db";
  for (auto _ : state) {
    sqlite_backup::sqlite_backup(source, destination);
    state.PauseTiming();
    remove_destination(destination);
    state.ResumeTiming();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(set_bytes(source)));
}

void BM_BackupToMemory(benchmark::State& state) {
  const fs::path& source = source_of_mib(state.range(0));
  for (auto _ : state) {
    auto connection = sqlite_backup::sqlite_backup(source);
    benchmark::DoNotOptimize(connection);
    state.PauseTiming();
    connection.reset();  // freeing the in-memory database is not part of taking it
    state.ResumeTiming();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(set_bytes(source)));
}

void BM_CopyAllFiles(benchmark::State& state) {
  const fs::path& source = source_of_mib(state.range(0));
  const auto files = sqlite_backup::glob_database_files(source);
  const fs::path folder = scratch().root() / "copy_all_files";
  for (auto _ : state) {
    state.PauseTiming();
    remove_destination(folder);
    fs::create_directory(folder);
    state.ResumeTiming();
    const bool validated = sqlite_backup::copy_all_files(files, folder);
    if (!validated)
      state.SkipWithError("copy_all_files: the copy of an idle source did not validate");
  }
  remove_destination(folder);
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(set_bytes(source)));
}

void BM_AtomicCopy(benchmark::State& state) {
  const fs::path& source = source_of_mib(state.range(0));
  const fs::path destination = scratch().root() / "atomic_copy.db";
  for (auto _ : state) {
    state.PauseTiming();
    remove_destination(destination);
    state.ResumeTiming();
    benchmark::DoNotOptimize(sqlite_backup::atomic_copy(source, destination));
  }
  remove_destination(destination);
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(fs::file_size(source)));
}

void sizes(benchmark::internal::Benchmark* benchmark) {
  benchmark->Arg(1)->Arg(16)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK(BM_BackupToFile)->Apply(sizes);
BENCHMARK(BM_BackupToMemory)->Apply(sizes);
BENCHMARK(BM_CopyAllFiles)->Apply(sizes);
BENCHMARK(BM_AtomicCopy)->Apply(sizes);

}  // namespace

BENCHMARK_MAIN();
