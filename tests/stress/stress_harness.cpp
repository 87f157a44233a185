// See stress_harness.hpp.
#include "stress_harness.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace stress {

using sqlite_backup::testing::ChildProcess;
using sqlite_backup::testing::describe;
using sqlite_backup::testing::list_names;
using sqlite_backup::testing::ProcessResult;
using sqlite_backup::testing::run_process;
using sqlite_backup::testing::ScopedEnv;
using sqlite_backup::testing::TempDir;
using sqlite_backup::testing::write_file;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kStatusBytes = 4096;
constexpr int kWarmUpTransactions = 5;
constexpr auto kWarmUpTimeout = std::chrono::seconds(30);
constexpr auto kBackupTimeout = std::chrono::seconds(60);
constexpr auto kCheckTimeout = std::chrono::seconds(120);
constexpr const char* kSourceName = "live.db";
constexpr const char* kSnapshotName = "snapshot.db";

[[noreturn]] void fail(const std::string& operation, const fs::path& path, int error) {
  throw std::runtime_error(operation + " " + path.string() + ": " + std::strerror(error));
}

std::string env_or(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The source folder's entries created while it is watched: a backup must never add a file
// there (not even briefly: a -shm created and removed again is caught too).
class CreationWatch {
 public:
  explicit CreationWatch(const fs::path& folder) : folder_(folder) {
    fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd_ < 0) fail("inotify_init1 for", folder, errno);
    if (inotify_add_watch(fd_, folder.c_str(), IN_CREATE | IN_MOVED_TO) < 0) {
      const int error = errno;
      ::close(fd_);
      fail("inotify_add_watch", folder, error);
    }
  }
  CreationWatch(const CreationWatch&) = delete;
  CreationWatch& operator=(const CreationWatch&) = delete;
  ~CreationWatch() { ::close(fd_); }

  // Names created since the last call; "<inotify queue overflow>" when events were lost.
  std::vector<std::string> drain() {
    std::vector<std::string> names;
    alignas(inotify_event) char buffer[64 * 1024];
    for (;;) {
      const ssize_t got = ::read(fd_, buffer, sizeof buffer);
      if (got <= 0) break;
      for (ssize_t offset = 0; offset < got;) {
        inotify_event event{};
        std::memcpy(&event, buffer + offset, sizeof event);
        if ((event.mask & IN_Q_OVERFLOW) != 0) names.emplace_back("<inotify queue overflow>");
        if (event.len > 0) names.emplace_back(buffer + offset + sizeof(inotify_event));
        offset += static_cast<ssize_t>(sizeof(inotify_event) + event.len);
      }
    }
    return names;
  }

 private:
  fs::path folder_;
  int fd_ = -1;
};

struct Worker {
  std::string label;  // "writer 1", "checkpointer"
  bool writer = true;
  std::unique_ptr<StatusView> status;
  std::unique_ptr<ChildProcess> process;
};

std::int64_t max_over_writers(const std::vector<Worker>& workers, StatusField field) {
  std::int64_t best = 0;
  for (const auto& worker : workers) {
    if (worker.writer) best = std::max(best, worker.status->load(field));
  }
  return best;
}

std::int64_t sum_over_all(const std::vector<Worker>& workers, StatusField field) {
  std::int64_t total = 0;
  for (const auto& worker : workers) total += worker.status->load(field);
  return total;
}

std::string dead_worker_report(std::vector<Worker>& workers) {
  std::string report;
  for (auto& worker : workers) {
    if (!worker.process->running()) {
      const ProcessResult result = worker.process->wait(std::chrono::seconds(1));
      report += worker.label + " died: " + describe(result) + "\n";
    }
  }
  return report;
}

// Stops every worker with SIGTERM; a worker that does not exit 0 is a harness error.
void stop_workers(std::vector<Worker>& workers, std::vector<std::string>& harness_errors) {
  for (auto& worker : workers) {
    if (worker.process->running()) worker.process->send_signal(SIGTERM);
  }
  for (auto& worker : workers) {
    const ProcessResult result = worker.process->wait(std::chrono::seconds(20));
    if (result.exit_code != 0) {
      harness_errors.push_back(worker.label + " ended badly: " + describe(result));
    }
  }
}

}  // namespace

bool uses_cli(Via via) { return via == Via::cli || via == Via::library_and_cli; }

std::vector<std::string> spilling_writer_flags(const std::string& journal) {
  return {"--journal",   journal, "--cache-size",   "64",
          "--txn-pages", "large", "--max-sleep-us", "3000"};
}

namespace {

std::string via_name(Via via, int index) {
  switch (via) {
    case Via::library:
      return "library";
    case Via::cli:
      return "cli";
    case Via::library_and_cli:
      return index % 2 == 0 ? "library" : "cli";
    case Via::library_and_memory:
      return index % 2 == 0 ? "library" : "memory";
  }
  return "library";
}

// Runs one backup of `source` into `destination`; returns an error text, empty on success.
std::string take_backup(const std::string& via, const fs::path& source,
                        const fs::path& destination) {
  if (via == "cli") {
    const ProcessResult result =
        run_process({kCliExe.string(), source.string(), destination.string()}, kBackupTimeout);
    if (result.exit_code != 0) return "sqlite_backup CLI: " + describe(result);
    return {};
  }
  // In-process: a worker thread, so a hang becomes a cancelled, reported failure.
  std::atomic<bool> cancel{false};
  sqlite_backup::Options options;
  options.cancel = &cancel;
  auto task = std::async(std::launch::async, [&]() -> std::string {
    try {
      if (via == "memory") {
        auto connection = sqlite_backup::sqlite_backup(source, std::nullopt, options);
        if (!connection || !*connection) return "sqlite_backup(src) returned no connection";
        sqlite3_int64 size = 0;
        unsigned char* bytes = sqlite3_serialize(connection->get(), "main", &size, 0);
        if (bytes == nullptr) return "sqlite3_serialize of the in-memory backup failed";
        std::string data(reinterpret_cast<const char*>(bytes), static_cast<std::size_t>(size));
        sqlite3_free(bytes);
        write_file(destination, data);
        return {};
      }
      sqlite_backup::sqlite_backup(source, destination, options);
      return {};
    } catch (const std::exception& error) {
      return std::string("sqlite_backup threw: ") + error.what();
    }
  });
  if (task.wait_for(kBackupTimeout) == std::future_status::timeout) {
    cancel = true;
    const std::string after_cancel = task.get();
    return "sqlite_backup did not finish within " + std::to_string(kBackupTimeout.count()) +
           " s (cancelled; then: " + after_cancel + ")";
  }
  return task.get();
}

// Byte 18 and 19 of the header: 1 for rollback-journal databases, 2 for WAL.
bool header_says_wal(const fs::path& database) {
  std::ifstream file(database, std::ios::binary);
  char header[20] = {};
  file.read(header, sizeof header);
  return file.gcount() == sizeof header && (header[18] == 2 || header[19] == 2);
}

std::string join(const std::vector<std::string>& names) {
  std::string text;
  for (const auto& name : names) text += (text.empty() ? "" : ", ") + name;
  return text;
}

// Sets the outcome of a backup from its error (empty: it reported success), the snapshot's
// check, and what it left beside the destination and in the temporary folder.
void classify(BackupRecord& record, const std::string& error, const fs::path& destination,
              const std::vector<std::string>& beside,
              const std::vector<std::string>& temporary_leftovers, const fs::path& scratch) {
  if (!error.empty()) {
    record.outcome = "tool-error";
    record.detail = error;
    // A failed backup leaves nothing behind either.
    if (!beside.empty()) {
      record.outcome = "leftover";
      record.detail = error + "; and left beside the destination: " + join(beside);
    } else if (!temporary_leftovers.empty()) {
      record.outcome = "temp-leftover";
      record.detail = error + "; and left in the temporary folder: " + join(temporary_leftovers);
    }
  } else if (!fs::exists(destination)) {
    record.outcome = "tool-error";
    record.detail = "backup reported success but " + destination.string() + " does not exist";
  } else {
    const CheckResult check =
        stress::check_snapshot(destination, record.required_min, record.upper, scratch);
    record.k = check.k;
    record.outcome = check.exit_code == 0 ? "ok" : check.verdict.substr(0, check.verdict.find(':'));
    record.detail = check.exit_code == 0 ? "" : check.verdict;
    if (record.outcome == "ok" && !beside.empty()) {
      record.outcome = "leftover";
      record.detail = "left beside the destination: " + join(beside);
    } else if (record.outcome == "ok" && !temporary_leftovers.empty()) {
      record.outcome = "temp-leftover";
      record.detail = "left in the temporary folder: " + join(temporary_leftovers);
    } else if (record.outcome == "ok" && header_says_wal(destination)) {
      record.outcome = "wal-header";
      record.detail =
          "snapshot is in WAL mode (header bytes 18/19 = 2), expected journal_mode=DELETE";
    }
  }
  if (record.outcome != "ok") {
    record.detail += " [K=" + std::to_string(record.k) + ", committed before start " +
                     std::to_string(record.required_min) + ", started by end " +
                     std::to_string(record.upper) + "]";
  }
}

std::vector<Worker> start_workers(const Scenario& scenario, const fs::path& root,
                                  const fs::path& source) {
  std::vector<Worker> workers;
  for (std::size_t i = 0; i < scenario.writers.size(); ++i) {
    Worker worker;
    worker.label = "writer " + std::to_string(i + 1);
    worker.status = std::make_unique<StatusView>(root / ("status-writer-" + std::to_string(i + 1)));
    std::vector<std::string> argv = {kChurnExe.string(),
                                     "write",
                                     "--db",
                                     source.string(),
                                     "--status",
                                     worker.status->path().string(),
                                     "--writer-id",
                                     std::to_string(i + 1)};
    argv.insert(argv.end(), scenario.writers[i].begin(), scenario.writers[i].end());
    worker.process = std::make_unique<ChildProcess>(argv);
    workers.push_back(std::move(worker));
  }
  if (scenario.checkpointer) {
    Worker worker;
    worker.label = "checkpointer";
    worker.writer = false;
    worker.status = std::make_unique<StatusView>(root / "status-checkpointer");
    worker.process = std::make_unique<ChildProcess>(
        std::vector<std::string>{kChurnExe.string(), "checkpoint", "--db", source.string(),
                                 "--status", worker.status->path().string()});
    workers.push_back(std::move(worker));
  }
  return workers;
}

// Returns once every writer has committed a few transactions (WAL grown, journals in use) and
// the checkpointer is running, the observable state the backups must face; or what went wrong.
std::string warm_up(std::vector<Worker>& workers) {
  const auto warm_up_deadline = Clock::now() + kWarmUpTimeout;
  for (;;) {
    const std::string dead = dead_worker_report(workers);
    if (!dead.empty()) return "during warm-up: " + dead;
    const bool warm = std::all_of(workers.begin(), workers.end(), [](const Worker& worker) {
      return worker.writer ? worker.status->load(StatusField::transactions) >= kWarmUpTransactions
                           : worker.status->load(StatusField::ready) == 1;
    });
    if (warm) return {};
    if (Clock::now() > warm_up_deadline) {
      return "writers did not commit " + std::to_string(kWarmUpTransactions) +
             " transactions each within " + std::to_string(kWarmUpTimeout.count()) + " s";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace

// ---------------------------------------------------------------------------------- StatusView

StatusView::StatusView(const fs::path& path) : path_(path) {
  write_file(path, std::string(kStatusBytes, '\0'));
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("open status file", path, errno);
  void* map = mmap(nullptr, kStatusBytes, PROT_READ, MAP_SHARED, fd, 0);
  const int error = errno;
  ::close(fd);
  if (map == MAP_FAILED) fail("mmap status file", path, error);
  slots_ = static_cast<const std::int64_t*>(map);
}

StatusView::~StatusView() {
  if (slots_ != nullptr) munmap(const_cast<std::int64_t*>(slots_), kStatusBytes);
}

std::int64_t StatusView::load(StatusField field) const {
  return __atomic_load_n(&slots_[static_cast<std::size_t>(field)], __ATOMIC_ACQUIRE);
}

// ---------------------------------------------------------------------------------- settings

namespace {

// A positive number from the environment, or `fallback` when unset; anything else is an error
// (a typo must not silently shrink a long manual run back to the defaults).
double positive_from_env(const char* name, double fallback) {
  const std::string text = env_or(name);
  if (text.empty()) return fallback;
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || *end != '\0' || !(value > 0)) {
    throw std::runtime_error("environment variable " + std::string(name) +
                             " must be a positive number, got '" + text + "'");
  }
  return value;
}

}  // namespace

int backups_per_scenario() {
  return static_cast<int>(positive_from_env("SQLITE_BACKUP_STRESS_BACKUPS", 20));
}

double seconds_per_scenario() { return positive_from_env("SQLITE_BACKUP_STRESS_SECONDS", 8.0); }

double database_mib() { return positive_from_env("SQLITE_BACKUP_STRESS_MB", 12.0); }

// ---------------------------------------------------------------------------------- check

CheckResult check_snapshot(const fs::path& database, std::int64_t min_seq, std::int64_t max_seq,
                           const fs::path& scratch) {
  std::vector<std::string> argv = {kChurnExe.string(), "check",         "--db",
                                   database.string(),  "--min-seq",     std::to_string(min_seq),
                                   "--scratch",        scratch.string()};
  if (max_seq >= 0) {
    argv.insert(argv.end(), {"--max-seq", std::to_string(max_seq)});
  }
  const ProcessResult result = run_process(argv, kCheckTimeout);
  CheckResult check;
  check.exit_code = result.exit_code;
  check.raw = describe(result);
  std::istringstream lines(result.out);
  std::string first;
  std::getline(lines, first);
  std::getline(lines, check.verdict);
  if (first.rfind("K=", 0) == 0) {
    check.k = std::strtoll(first.c_str() + 2, nullptr, 10);
  }
  if (check.verdict.empty()) {
    check.verdict = "checker crashed: " + check.raw;
  }
  return check;
}

// ---------------------------------------------------------------------------------- scenario

ScenarioResult run_scenario(const Scenario& scenario) {
  ScenarioResult result;
  TempDir root("sqlite_backup_stress_" + scenario.name);
  const fs::path source_folder = root / "src";
  const fs::path backups_folder = root / "bk";
  const fs::path scratch = root / "scratch";
  const fs::path staging = root / "tmp";
  for (const auto& folder : {source_folder, backups_folder, scratch, staging}) {
    fs::create_directories(folder);
  }
  const fs::path source = source_folder / kSourceName;

  std::vector<std::string> prime = {
      kChurnExe.string(),
      "prime",
      "--db",
      source.string(),
      "--mb",
      std::to_string(scenario.database_mib > 0 ? scenario.database_mib : database_mib()),
      "--journal",
      scenario.prime_journal};
  prime.insert(prime.end(), scenario.prime_flags.begin(), scenario.prime_flags.end());
  const ProcessResult primed = run_process(prime);
  if (primed.exit_code != 0) {
    result.harness_errors.push_back("sqlite_churn prime failed: " + describe(primed));
    return result;
  }

  std::set<std::string> allowed{kSourceName};
  for (const auto& suffix : scenario.allowed_source_suffixes) {
    allowed.insert(std::string(kSourceName) + suffix);
  }
  CreationWatch watch(source_folder);

  std::vector<Worker> workers = start_workers(scenario, root.path(), source);
  if (const std::string problem = warm_up(workers); !problem.empty()) {
    result.harness_errors.push_back(problem);
    stop_workers(workers, result.harness_errors);
    return result;
  }

  const int backups = backups_per_scenario();
  const double seconds = seconds_per_scenario();
  const std::int64_t transactions_before = sum_over_all(workers, StatusField::transactions);
  const std::int64_t checkpoints_before = sum_over_all(workers, StatusField::checkpoints);
  const std::int64_t big_before = sum_over_all(workers, StatusField::big_transactions);
  const std::int64_t spills_before = sum_over_all(workers, StatusField::cache_spills);
  const auto evidence_missing = [&] {
    return sum_over_all(workers, StatusField::checkpoints) - checkpoints_before <
               scenario.min_checkpoints ||
           sum_over_all(workers, StatusField::big_transactions) - big_before <
               scenario.min_big_transactions ||
           sum_over_all(workers, StatusField::cache_spills) - spills_before <
               scenario.min_cache_spills;
  };
  std::int64_t best_k = 0;
  std::set<std::string> litter_seen;
  const auto loop_start = Clock::now();
  {
    // The library (and the CLI, which inherits it) stage their copies in the temporary folder:
    // point it at a private one, so that leftovers there are seen.
    ScopedEnv private_tmp("TMPDIR", staging.string());
    const int at_least = std::min(kMinimumBackups, backups);
    const auto another = [&](int index) {
      const double elapsed = seconds_since(loop_start);
      if (index < at_least && elapsed < kSlowMachineFactor * seconds) return true;
      return elapsed < seconds && (index < backups || evidence_missing());
    };
    for (int index = 0; another(index); ++index) {
      const std::string dead = dead_worker_report(workers);
      if (!dead.empty()) {
        result.harness_errors.push_back("during backup #" + std::to_string(index) + ": " + dead);
        break;
      }
      BackupRecord record;
      record.index = index;
      record.via = via_name(scenario.via, index);
      const std::int64_t committed_at_start = max_over_writers(workers, StatusField::committed);
      record.required_min = std::max(committed_at_start, best_k);
      const fs::path folder = backups_folder / std::to_string(index);
      fs::create_directories(folder);
      const fs::path destination = folder / kSnapshotName;

      const auto started = Clock::now();
      const std::string error = take_backup(record.via, source, destination);
      record.seconds = seconds_since(started);
      record.upper = max_over_writers(workers, StatusField::pending);
      if (max_over_writers(workers, StatusField::committed) > committed_at_start) {
        ++result.backups_overlapping_commits;
      }

      // Created at any moment (inotify) or present now (listing): only SQLite's own files.
      std::vector<std::string> source_names = watch.drain();
      const std::vector<std::string> listed = list_names(source_folder);
      source_names.insert(source_names.end(), listed.begin(), listed.end());
      for (const auto& name : source_names) {
        if (!allowed.contains(name) && litter_seen.insert(name).second) {
          result.source_litter.push_back(name + " (seen after backup #" + std::to_string(index) +
                                         ")");
        }
      }
      const std::vector<std::string> temporary_leftovers = list_names(staging);
      std::vector<std::string> beside = list_names(folder);
      beside.erase(std::remove(beside.begin(), beside.end(), kSnapshotName), beside.end());

      classify(record, error, destination, beside, temporary_leftovers, scratch);
      if (record.outcome == "ok") best_k = std::max(best_k, record.k);
      result.backups.push_back(record);
      std::error_code ignored;
      fs::remove_all(folder, ignored);
      for (const auto& name : temporary_leftovers) fs::remove_all(staging / name, ignored);
    }
  }
  result.loop_seconds = seconds_since(loop_start);
  result.transactions_during =
      sum_over_all(workers, StatusField::transactions) - transactions_before;
  result.checkpoints_during = sum_over_all(workers, StatusField::checkpoints) - checkpoints_before;
  result.big_transactions_during =
      sum_over_all(workers, StatusField::big_transactions) - big_before;
  result.cache_spills_during = sum_over_all(workers, StatusField::cache_spills) - spills_before;

  stop_workers(workers, result.harness_errors);
  // The workload itself must hold: the source, once quiet, satisfies every invariant.
  const CheckResult final_check =
      check_snapshot(source, max_over_writers(workers, StatusField::committed),
                     max_over_writers(workers, StatusField::pending), scratch);
  if (final_check.exit_code != 0) {
    result.harness_errors.push_back("final check of the source: " + final_check.verdict);
  }
  return result;
}

std::string summarize(const Scenario& scenario, const ScenarioResult& result) {
  std::map<std::string, int> counts;
  std::vector<double> times;
  for (const auto& record : result.backups) {
    ++counts[record.outcome];
    times.push_back(record.seconds);
  }
  std::sort(times.begin(), times.end());
  std::ostringstream text;
  text << "[" << scenario.name << "] " << result.backups.size() << " backups:";
  for (const auto& [outcome, count] : counts) text << " " << outcome << "=" << count;
  if (!times.empty()) {
    text.precision(3);
    text << std::fixed << "; backup median " << times[times.size() / 2] << " s, max "
         << times.back() << " s";
  }
  text.precision(1);
  text << "; " << result.transactions_during << " commits in " << result.loop_seconds << " s";
  text << ", " << result.backups_overlapping_commits << " backups overlapped a commit";
  if (result.checkpoints_during > 0) {
    text << ", " << result.checkpoints_during << " explicit checkpoints";
  }
  if (result.cache_spills_during > 0) {
    text << ", " << result.cache_spills_during << " pages spilled before COMMIT";
  }
  if (result.big_transactions_during > 0) {
    text << ", " << result.big_transactions_during << " big transactions";
  }
  return text.str();
}

}  // namespace stress
