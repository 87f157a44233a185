// What each of the snapshot's checks costs, in process (Google Benchmark). README's "What
// each check costs and catches" quotes these; the tests named there show what each catches.
//   BM_LookAtTheSet         validate::capture: stat + header of database, -wal, -journal, and
//                           the lock probe (taken before the first byte and after the last)
//   BM_ExclusiveLockProbe   io::sqlite_exclusive_lock_held alone (F_OFD_GETLK)
//   BM_LookBetweenChunks    what the commit watch reads between two copy chunks (two headers)
//   BM_WriteWatch           io::WriteWatch started (inotify on the database and its folder),
//                           drained once and closed: what an attempt that sees a commit adds
//   BM_JournalScan/N        validate::journal_in_commit_phase on an N MiB hot journal (every
//                           record's checksum)
//   BM_ContentComparison/N  io::refresh_file_contents of two equal N MiB files (the quiet
//                           path's comparison, and what a retry reads)
//   BM_FreshCopy/N          io::copy_file_contents of N MiB into a new file, for scale
//   BM_ApplyWal/N           recover::apply_wal of an N MiB WAL onto a 200 MiB database (the
//                           frames' checksums, each page written once, the header switched)
//   BM_SqliteReplay/N       the same pair recovered by SQLite instead: opening the copy and
//                           PRAGMA journal_mode=DELETE (index rebuild, checkpoint, switch)
// Built only with a static library: it calls internals that a shared one does not export.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "discover/database_files.hpp"
#include "io/copy.hpp"
#include "io/file.hpp"
#include "io/reader_lock.hpp"
#include "io/write_watch.hpp"
#include "live_db.hpp"
#include "recover/apply_wal.hpp"
#include "scratch.hpp"
#include "validate/set_state.hpp"

namespace {

namespace fs = std::filesystem;
namespace sb = sqlite_backup;
constexpr std::uint64_t kMiB = 1024 * 1024;

sqlite_backup_bench::ScratchFolder& scratch() {
  static sqlite_backup_bench::ScratchFolder instance("sqlite_backup_checks");
  return instance;
}

// A rollback-mode database of about `mib` MiB (made once per size).
fs::path database_of(std::int64_t mib) {
  const fs::path path = scratch().root() / ("db-" + std::to_string(mib) + ".sqlite");
  if (!fs::exists(path))
    sqlite_backup_bench::make_database(path, static_cast<std::uint64_t>(mib) * kMiB);
  return path;
}

void exec(sqlite3* db, const std::string& sql) {
  char* message = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
    const std::string reason = message != nullptr ? message : "?";
    sqlite3_free(message);
    throw std::runtime_error("bench: " + sql + ": " + reason);
  }
}

// A copy of a hot journal of about `mib` MiB: a transaction rewrites rows of a database
// (synchronous=OFF writes the journal's magic at once) and its journal is copied while open.
fs::path hot_journal_of(std::int64_t mib) {
  const fs::path journal = scratch().root() / ("journal-" + std::to_string(mib));
  if (fs::exists(journal)) return journal;
  const fs::path database = scratch().root() / ("for-journal-" + std::to_string(mib) + ".sqlite");
  sqlite_backup_bench::make_database(database, static_cast<std::uint64_t>(mib) * kMiB * 4);
  sqlite3* db = nullptr;
  if (sqlite3_open(database.c_str(), &db) != SQLITE_OK) throw std::runtime_error("bench: open");
  exec(db, "PRAGMA journal_mode=DELETE; PRAGMA synchronous=OFF; PRAGMA cache_size=-1000000;");
  // A quarter of the rows of a database four times the size: about `mib` MiB of originals.
  exec(db, "BEGIN; UPDATE t SET v = randomblob(1000) WHERE id % 4 = 0;");
  fs::copy_file(database.string() + "-journal", journal);
  exec(db, "ROLLBACK");
  sqlite3_close(db);
  return journal;
}

void BM_LookAtTheSet(benchmark::State& state) {
  const sb::discover::DatabaseFiles files(database_of(20));
  for (auto _ : state) benchmark::DoNotOptimize(sb::validate::capture(files));
}
BENCHMARK(BM_LookAtTheSet)->Unit(benchmark::kMicrosecond);

void BM_ExclusiveLockProbe(benchmark::State& state) {
  const fs::path database = database_of(20);
  for (auto _ : state) benchmark::DoNotOptimize(sb::io::sqlite_exclusive_lock_held(database));
}
BENCHMARK(BM_ExclusiveLockProbe)->Unit(benchmark::kMicrosecond);

void BM_LookBetweenChunks(benchmark::State& state) {
  const sb::discover::DatabaseFiles files(database_of(20));
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        sb::validate::capture_member(files.database, sb::validate::kDatabaseHeaderSize));
    benchmark::DoNotOptimize(
        sb::validate::capture_member(files.journal, sb::validate::kJournalHeaderSize));
  }
}
BENCHMARK(BM_LookBetweenChunks)->Unit(benchmark::kMicrosecond);

void BM_WriteWatch(benchmark::State& state) {
  const sb::discover::DatabaseFiles files(database_of(20));
  for (auto _ : state) {
    auto watch = sb::io::WriteWatch::start(files.database, files.journal);
    if (!watch) throw std::runtime_error("bench: no inotify");
    int writes = 0;
    benchmark::DoNotOptimize(watch->drain([&writes](sb::io::Written) { ++writes; }));
    benchmark::DoNotOptimize(writes);
  }
}
BENCHMARK(BM_WriteWatch)->Unit(benchmark::kMicrosecond);

void BM_JournalScan(benchmark::State& state) {
  const fs::path journal = hot_journal_of(state.range(0));
  const sb::validate::MemberState database =
      sb::validate::capture_member(database_of(20), sb::validate::kDatabaseHeaderSize);
  for (auto _ : state) {
    benchmark::DoNotOptimize(sb::validate::journal_in_commit_phase(database, journal));
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(fs::file_size(journal)));
}
BENCHMARK(BM_JournalScan)->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_ContentComparison(benchmark::State& state) {
  const fs::path source = database_of(state.range(0));
  const fs::path copy = scratch().root() / ("copy-" + std::to_string(state.range(0)));
  fs::copy_file(source, copy, fs::copy_options::overwrite_existing);
  const sb::io::UniqueFd in = sb::io::open_source_file(source);
  const sb::io::UniqueFd out(::open(copy.c_str(), O_RDWR | O_CLOEXEC));
  for (auto _ : state) {
    const auto outcome = sb::io::refresh_file_contents(in.get(), source, out.get(), copy);
    if (outcome.bytes_rewritten != 0) state.SkipWithError("the files differ");
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(fs::file_size(source)));
}
BENCHMARK(BM_ContentComparison)->Arg(20)->Arg(200)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_FreshCopy(benchmark::State& state) {
  const fs::path source = database_of(state.range(0));
  const fs::path copy = scratch().root() / ("fresh-" + std::to_string(state.range(0)));
  const sb::io::UniqueFd in = sb::io::open_source_file(source);
  for (auto _ : state) {
    state.PauseTiming();
    fs::remove(copy);
    ::lseek(in.get(), 0, SEEK_SET);
    const sb::io::UniqueFd out(::open(copy.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    state.ResumeTiming();
    benchmark::DoNotOptimize(sb::io::copy_file_contents(in.get(), source, out.get(), copy));
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(fs::file_size(source)));
}
BENCHMARK(BM_FreshCopy)->Arg(20)->Arg(200)->Unit(benchmark::kMillisecond)->UseRealTime();

// A 200 MiB database with a WAL of about `mib` MiB on top, copied while its owner held it
// (made once per size), and the working copy each iteration starts from.
struct WalPair {
  fs::path database;
  fs::path wal;
};

WalPair wal_pair_of(std::int64_t mib) {
  const fs::path folder = scratch().root() / ("wal-pair-" + std::to_string(mib));
  const WalPair pair{folder / "template.sqlite", folder / "template.sqlite-wal"};
  if (fs::exists(pair.wal)) return pair;
  fs::create_directories(folder);
  const fs::path source = folder / "source.sqlite";
  sqlite_backup_bench::make_database(source, 200 * kMiB);
  sqlite_backup_bench::WalOwner owner(source);
  owner.grow_wal_to(static_cast<std::uint64_t>(mib) * kMiB);
  fs::copy_file(source, pair.database);
  fs::copy_file(source.string() + "-wal", pair.wal);
  return pair;
}

WalPair fresh_copy_of(const WalPair& pair) {
  const WalPair work{pair.database.parent_path() / "work.sqlite",
                     pair.database.parent_path() / "work.sqlite-wal"};
  fs::copy_file(pair.database, work.database, fs::copy_options::overwrite_existing);
  fs::copy_file(pair.wal, work.wal, fs::copy_options::overwrite_existing);
  return work;
}

void BM_ApplyWal(benchmark::State& state) {
  const WalPair pair = wal_pair_of(state.range(0));
  for (auto _ : state) {
    state.PauseTiming();
    const WalPair work = fresh_copy_of(pair);
    state.ResumeTiming();
    if (!sb::recover::apply_wal(work.database, work.wal, nullptr, "bench").applied) {
      state.SkipWithError("apply_wal left the WAL to SQLite");
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(fs::file_size(pair.wal)));
}
BENCHMARK(BM_ApplyWal)->Arg(20)->Iterations(7)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_SqliteReplay(benchmark::State& state) {
  const WalPair pair = wal_pair_of(state.range(0));
  for (auto _ : state) {
    state.PauseTiming();
    const WalPair work = fresh_copy_of(pair);
    state.ResumeTiming();
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(work.database.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      sqlite3_close(db);
      throw std::runtime_error("bench: cannot open " + work.database.string());
    }
    exec(db, "PRAGMA synchronous=OFF; PRAGMA journal_mode=DELETE");
    sqlite3_close(db);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(fs::file_size(pair.wal)));
}
BENCHMARK(BM_SqliteReplay)->Arg(20)->Iterations(7)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
