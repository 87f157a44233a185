// sqlite_churn: the workload of the stress tests, as one executable with four subcommands.
//
//   sqlite_churn prime --db PATH --mb M --journal wal|delete [--page-size N]
//                [--auto-vacuum none|full|incremental] [--seed S]
//   sqlite_churn write --db PATH --status FILE [--journal wal|delete|persist|truncate]
//                [--locking exclusive] [--autocheckpoint N] [--cache-size N] [--txn-pages
//                small|large|in-place]
//                [--big-every-ms N --big-mb M|MIN-MAX] [--self-checkpoint-pct P] [--max-sleep-us U]
//                [--writer-id N] [--seed S] [--busy-timeout-ms MS] [--transactions N]
//   sqlite_churn checkpoint --db PATH [--modes truncate,restart,passive,full] [--status FILE]
//   sqlite_churn check --db PATH [--min-seq K] [--max-seq K2] [--scratch DIR]
//
// Every write transaction keeps these invariants, so any snapshot that is the state after one
// committed transaction K satisfies all of them, and a torn or half-applied copy breaks some:
//   - accounts: ACCOUNTS rows whose balances always sum to ACCOUNTS * INITIAL_BALANCE, and each
//     balance equals the initial one plus the replay of every recorded transfer (xfer);
//   - blobs: each payload matches its stored crc32, and its last_seq is the highest seq that
//     bw records for it;
//   - log holds seq 1..K, xfer and bw cover exactly seq 1..K, meta.last_seq = K.
// With --txn-pages in-place a writer changes rows only in place from seq S on (it records S in
// table in_place): transfers, and no log, xfer or bw rows, so that no transaction takes, frees
// or appends a page (an owner in locking_mode=EXCLUSIVE then leaves the change counter where
// it is). The invariants then hold up to S, and after it the balances' sum and last_seq <= K.
//
// Status file (write/checkpoint): the writer maps it MAP_SHARED and publishes aligned int64
// counters with atomic 8-byte stores, so a reader that maps it too and loads them atomically
// never sees a torn value. Offsets (bytes): 0 committed seq (after COMMIT returned), 8 pending
// seq (the seq of the transaction in progress, published before its first write), 16 committed
// transactions, 24 busy retries, 32 completed checkpoints, 40 big transactions, 48 ready flag
// (1 once the process has opened the database), 56 pages spilled into the database file before
// a COMMIT (SQLITE_DBSTATUS_CACHE_SPILL, cumulative). The file is created/extended to 4096 bytes.
//
// check prints two lines, "K=<seq>" (-1 when unknown) and the verdict ("ok", "corrupt: ...",
// "inconsistent: ...", "stale: ..."), and exits 0 only for ok; 2 corrupt, 3 inconsistent,
// 4 stale, 64 usage error. It checks a private copy (database plus any -wal/-journal beside it),
// so it never changes the file it is given.
//
// write and checkpoint run until SIGTERM/SIGINT (exit 0), or until their parent process dies;
// write --transactions N stops after N commits (for tests that need an exact history).
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "churn_status.hpp"

namespace {

namespace fs = std::filesystem;

constexpr int kAccounts = 5000;
constexpr std::int64_t kInitialBalance = 1000;
constexpr std::int64_t kTotalBalance = kAccounts * kInitialBalance;
constexpr int kBlobSize = 16 * 1024;

constexpr const char* kSchema = R"sql(
CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
CREATE TABLE log(seq INTEGER PRIMARY KEY, writer INTEGER, ts REAL, nx INTEGER, nb INTEGER, pad BLOB);
CREATE TABLE xfer(seq INTEGER NOT NULL, a INTEGER NOT NULL, b INTEGER NOT NULL, amt INTEGER NOT NULL);
CREATE INDEX xfer_seq ON xfer(seq);
CREATE TABLE bw(seq INTEGER NOT NULL, blob_id INTEGER NOT NULL);
CREATE INDEX bw_blob ON bw(blob_id, seq);
CREATE TABLE blobs(id INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL, crc INTEGER NOT NULL, payload BLOB NOT NULL);
CREATE TABLE meta(id INTEGER PRIMARY KEY CHECK (id = 0), last_seq INTEGER NOT NULL, nblobs INTEGER NOT NULL);
)sql";

// ---------------------------------------------------------------------------------- errors

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An SQLite call failed; code() lets the writer tell "busy, retry" from real failures.
class SqlError : public std::runtime_error {
 public:
  SqlError(int code, const std::string& message) : std::runtime_error(message), code_(code) {}
  [[nodiscard]] int code() const noexcept { return code_; }
  [[nodiscard]] bool busy() const noexcept {
    const int primary = code_ & 0xff;
    return primary == SQLITE_BUSY || primary == SQLITE_LOCKED;
  }

 private:
  int code_;
};

// ---------------------------------------------------------------------------------- crc32

// zlib's crc32 (reflected 0xEDB88320), so the values match what other tools would compute.
std::uint32_t crc32(const void* data, std::size_t size) {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1U) != 0 ? 0xEDB88320U ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  std::uint32_t crc = 0xFFFFFFFFU;
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < size; ++i) crc = table[(crc ^ bytes[i]) & 0xFFU] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFU;
}

// ---------------------------------------------------------------------------------- SQLite RAII

class Database {
 public:
  Database(const fs::path& path, int flags) : path_(path) {
    const int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
    if (rc != SQLITE_OK) {
      const std::string reason = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
      sqlite3_close(db_);
      db_ = nullptr;
      throw SqlError(rc, "open " + path.string() + ": " + reason);
    }
    sqlite3_extended_result_codes(db_, 1);
  }
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  ~Database() {
    if (db_ != nullptr) sqlite3_close_v2(db_);
  }

  [[nodiscard]] sqlite3* get() const noexcept { return db_; }
  [[nodiscard]] const fs::path& path() const noexcept { return path_; }

  void exec(const std::string& sql) const {
    char* message = nullptr;
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message);
    if (rc != SQLITE_OK) {
      const std::string reason = message != nullptr ? message : sqlite3_errstr(rc);
      sqlite3_free(message);
      throw SqlError(sqlite3_extended_errcode(db_),
                     "exec '" + sql + "' on " + path_.string() + ": " + reason);
    }
  }

  [[nodiscard]] std::string error_text(const std::string& what) const {
    return what + " on " + path_.string() + ": " + sqlite3_errmsg(db_);
  }

 private:
  fs::path path_;
  sqlite3* db_ = nullptr;
};

class Statement {
 public:
  Statement(const Database& db, const std::string& sql) : db_(&db), sql_(sql) {
    const int rc = sqlite3_prepare_v2(db.get(), sql.c_str(), -1, &stmt_, nullptr);
    if (rc != SQLITE_OK)
      throw SqlError(sqlite3_extended_errcode(db.get()), db.error_text("prepare '" + sql + "'"));
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement() { sqlite3_finalize(stmt_); }

  Statement& bind(int index, std::int64_t value) {
    check_bind(sqlite3_bind_int64(stmt_, index, value));
    return *this;
  }
  Statement& bind(int index, double value) {
    check_bind(sqlite3_bind_double(stmt_, index, value));
    return *this;
  }
  Statement& bind_blob(int index, const std::vector<unsigned char>& value) {
    check_bind(sqlite3_bind_blob(stmt_, index, value.data(), static_cast<int>(value.size()),
                                 SQLITE_STATIC));
    return *this;
  }

  // true while a row is available; throws on errors (BUSY included: SqlError::busy()).
  bool step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    const int code = sqlite3_extended_errcode(db_->get());
    const std::string message = db_->error_text("step '" + sql_ + "'");
    sqlite3_reset(stmt_);
    throw SqlError(code, message);
  }
  // Runs a statement that returns no rows (or whose rows are ignored), then resets it.
  void run() {
    while (step()) {
    }
    reset();
  }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  [[nodiscard]] std::int64_t int64(int column) const { return sqlite3_column_int64(stmt_, column); }
  [[nodiscard]] double real(int column) const { return sqlite3_column_double(stmt_, column); }
  [[nodiscard]] bool is_null(int column) const {
    return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
  }
  [[nodiscard]] std::string text(int column) const {
    const auto* p = sqlite3_column_text(stmt_, column);
    return p != nullptr ? reinterpret_cast<const char*>(p) : "";
  }
  [[nodiscard]] std::pair<const void*, std::size_t> blob(int column) const {
    const void* p = sqlite3_column_blob(stmt_, column);
    return {p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column))};
  }

 private:
  void check_bind(int rc) const {
    if (rc != SQLITE_OK) throw SqlError(rc, db_->error_text("bind for '" + sql_ + "'"));
  }
  const Database* db_;
  std::string sql_;
  sqlite3_stmt* stmt_ = nullptr;
};

// ---------------------------------------------------------------------------------- arguments

class Arguments {
 public:
  Arguments(int argc, char** argv, int first) {
    for (int i = first; i < argc; ++i) {
      std::string key = argv[i];
      if (key.rfind("--", 0) != 0) throw UsageError("unexpected argument '" + key + "'");
      if (i + 1 >= argc) throw UsageError("option " + key + " needs a value");
      values_[key.substr(2)] = argv[++i];
    }
  }
  [[nodiscard]] std::optional<std::string> get(const std::string& name) {
    used_.push_back(name);
    const auto it = values_.find(name);
    if (it == values_.end()) return std::nullopt;
    return it->second;
  }
  [[nodiscard]] std::string required(const std::string& name) {
    auto value = get(name);
    if (!value) throw UsageError("option --" + name + " is required");
    return *value;
  }
  [[nodiscard]] std::int64_t integer(const std::string& name, std::int64_t fallback) {
    const auto value = get(name);
    return value ? parse_integer(name, *value) : fallback;
  }
  [[nodiscard]] std::optional<std::int64_t> optional_integer(const std::string& name) {
    const auto value = get(name);
    if (!value) return std::nullopt;
    return parse_integer(name, *value);
  }
  // Every option given must have been asked for, so a typo is a usage error, not a silent default.
  void reject_unknown() const {
    for (const auto& [key, value] : values_) {
      if (std::find(used_.begin(), used_.end(), key) == used_.end()) {
        throw UsageError("unknown option --" + key);
      }
    }
  }
  static std::int64_t parse_integer(const std::string& name, const std::string& text) {
    try {
      std::size_t used = 0;
      const long long v = std::stoll(text, &used);
      if (used != text.size()) throw std::invalid_argument(text);
      return v;
    } catch (const std::exception&) {
      throw UsageError("option --" + name + " expects an integer, got '" + text + "'");
    }
  }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> used_;
};

// "3-8" or "5" (then both bounds are 5): a range of numbers.
std::pair<double, double> parse_range(const std::string& name, const std::string& text) {
  try {
    const auto dash = text.find('-');
    if (dash == std::string::npos) {
      const double v = std::stod(text);
      return {v, v};
    }
    const double low = std::stod(text.substr(0, dash));
    const double high = std::stod(text.substr(dash + 1));
    if (high < low) throw std::invalid_argument(text);
    return {low, high};
  } catch (const std::exception&) {
    throw UsageError("option --" + name + " expects N or MIN-MAX, got '" + text + "'");
  }
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// ---------------------------------------------------------------------------------- stopping

volatile sig_atomic_t g_stop = 0;

extern "C" void on_stop_signal(int /*signal*/) { g_stop = 1; }

// Ends the loop on SIGTERM/SIGINT, and when the test process that started us dies, so a
// crashed test never leaves writers running.
class StopCondition {
 public:
  StopCondition() : parent_(getppid()) {
    struct sigaction action {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, nullptr);
    sigaction(SIGINT, &action, nullptr);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
  }
  [[nodiscard]] bool stop_requested() const { return g_stop != 0 || getppid() != parent_; }

 private:
  pid_t parent_;
};

// ---------------------------------------------------------------------------------- status file

using sqlite_backup::testing::churn::kStatusBytes;
using sqlite_backup::testing::churn::StatusField;

class StatusFile {
 public:
  // Without a path (checkpoint --status is optional) every set() is a no-op.
  explicit StatusFile(const std::optional<fs::path>& optional_path) {
    if (!optional_path) return;
    const fs::path& path = *optional_path;
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
      throw std::runtime_error("open status file " + path.string() + ": " + std::strerror(errno));
    struct stat info {};
    if (fstat(fd, &info) != 0 || (static_cast<std::size_t>(info.st_size) < kStatusBytes &&
                                  ftruncate(fd, static_cast<off_t>(kStatusBytes)) != 0)) {
      const int error = errno;
      ::close(fd);
      throw std::runtime_error("size status file " + path.string() + ": " + std::strerror(error));
    }
    void* map = mmap(nullptr, kStatusBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    const int error = errno;
    ::close(fd);
    if (map == MAP_FAILED)
      throw std::runtime_error("mmap status file " + path.string() + ": " + std::strerror(error));
    slots_ = static_cast<std::int64_t*>(map);
  }
  StatusFile(const StatusFile&) = delete;
  StatusFile& operator=(const StatusFile&) = delete;
  ~StatusFile() {
    if (slots_ != nullptr) munmap(slots_, kStatusBytes);
  }

  // An aligned 8-byte atomic store into a shared mapping: a reader of the same page sees the
  // old or the new value, never a mix. A no-op without a status file.
  void set(StatusField field, std::int64_t value) {
    if (slots_ != nullptr)
      __atomic_store_n(&slots_[static_cast<std::size_t>(field)], value, __ATOMIC_RELEASE);
  }

 private:
  std::int64_t* slots_ = nullptr;
};

// ---------------------------------------------------------------------------------- prime

int command_prime(Arguments& args) {
  const fs::path db_path = args.required("db");
  const std::string mb_text = args.required("mb");
  double mb = 0;
  try {
    mb = std::stod(mb_text);
  } catch (const std::exception&) {
    throw UsageError("option --mb expects a number, got '" + mb_text + "'");
  }
  const std::string journal = lower(args.required("journal"));
  const auto page_size = args.optional_integer("page-size");
  const std::string auto_vacuum = lower(args.get("auto-vacuum").value_or("none"));
  const auto seed = static_cast<std::uint64_t>(args.integer("seed", 1));
  args.reject_unknown();
  if (journal != "wal" && journal != "delete") throw UsageError("--journal must be wal or delete");
  if (auto_vacuum != "none" && auto_vacuum != "full" && auto_vacuum != "incremental") {
    throw UsageError("--auto-vacuum must be none, full or incremental");
  }
  if (mb <= 0) throw UsageError("--mb must be positive");

  const std::int64_t nblobs =
      std::max<std::int64_t>(8, static_cast<std::int64_t>(mb * 1024 * 1024) / kBlobSize);
  Database db(db_path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  // page_size only takes effect before the first table exists.
  if (page_size) db.exec("PRAGMA page_size=" + std::to_string(*page_size));
  // So does auto_vacuum: with FULL every commit that frees pages cuts the file, and the next
  // one that needs pages grows it again.
  db.exec("PRAGMA auto_vacuum=" + auto_vacuum);
  db.exec("PRAGMA journal_mode=DELETE");
  db.exec("PRAGMA synchronous=OFF");
  db.exec(kSchema);
  db.exec("BEGIN");
  {
    Statement insert_account(db, "INSERT INTO accounts(id, balance) VALUES(?, ?)");
    for (int id = 1; id <= kAccounts; ++id) {
      insert_account.bind(1, std::int64_t{id}).bind(2, kInitialBalance).run();
    }
    Statement insert_blob(db, "INSERT INTO blobs(id, last_seq, crc, payload) VALUES(?, 0, ?, ?)");
    std::mt19937_64 rng(seed);
    std::vector<unsigned char> payload(kBlobSize);
    for (std::int64_t id = 1; id <= nblobs; ++id) {
      for (auto& byte : payload) byte = static_cast<unsigned char>(rng());
      insert_blob.bind(1, id)
          .bind(2, std::int64_t{crc32(payload.data(), payload.size())})
          .bind_blob(3, payload)
          .run();
    }
    Statement insert_meta(db, "INSERT INTO meta(id, last_seq, nblobs) VALUES(0, 0, ?)");
    insert_meta.bind(1, nblobs).run();
  }
  db.exec("COMMIT");
  if (journal == "wal") db.exec("PRAGMA journal_mode=WAL");
  std::printf("primed %s: %lld blobs of %d bytes, journal %s\n", db_path.c_str(),
              static_cast<long long>(nblobs), kBlobSize, journal.c_str());
  return 0;
}

// ---------------------------------------------------------------------------------- write

struct WriterSettings {
  int min_transfers = 1, max_transfers = 4;
  int min_blobs = 1, max_blobs = 3;
  std::optional<std::int64_t> big_every_ms;
  std::pair<double, double> big_mb{3.0, 8.0};
  double self_checkpoint_fraction = 0.0;
  int max_sleep_us = 2000;
  std::int64_t writer_id = 1;
  bool in_place = false;  // --txn-pages in-place
};

// One writer's prepared statements: everything a transaction does, keeping every invariant.
class Writer {
 public:
  Writer(const Database& db, WriterSettings settings, std::uint64_t seed, StatusFile& status)
      : db_(db),
        settings_(settings),
        rng_(seed),
        status_(status),
        begin_(db, "BEGIN IMMEDIATE"),
        commit_(db, "COMMIT"),
        rollback_(db, "ROLLBACK"),
        read_meta_(db, "SELECT last_seq, nblobs FROM meta WHERE id = 0"),
        debit_(db, "UPDATE accounts SET balance = balance - ? WHERE id = ?"),
        credit_(db, "UPDATE accounts SET balance = balance + ? WHERE id = ?"),
        insert_xfer_(db, "INSERT INTO xfer(seq, a, b, amt) VALUES(?, ?, ?, ?)"),
        update_blob_(db, "UPDATE blobs SET payload = ?, crc = ?, last_seq = ? WHERE id = ?"),
        insert_bw_(db, "INSERT INTO bw(seq, blob_id) VALUES(?, ?)"),
        insert_log_(db, "INSERT INTO log(seq, writer, ts, nx, nb, pad) VALUES(?, ?, ?, ?, ?, ?)"),
        update_meta_(db, "UPDATE meta SET last_seq = ? WHERE id = 0") {}

  // Commits one transaction; returns its seq. Throws SqlError (busy() for lock contention)
  // after rolling back whatever it had started.
  std::int64_t transaction(bool big) {
    begin_.run();
    try {
      if (!read_meta_.step()) {
        throw std::runtime_error("meta row missing in " + db_.path().string());
      }
      const std::int64_t seq = read_meta_.int64(0) + 1;
      const std::int64_t nblobs = read_meta_.int64(1);
      read_meta_.reset();
      status_.set(StatusField::pending, seq);

      const int transfers = uniform(settings_.min_transfers, settings_.max_transfers);
      for (int i = 0; i < transfers; ++i) {
        const std::int64_t from = uniform(1, kAccounts);
        const std::int64_t to = uniform(1, kAccounts);
        const std::int64_t amount = uniform(1, 100);
        debit_.bind(1, amount).bind(2, from).run();
        credit_.bind(1, amount).bind(2, to).run();
        if (!settings_.in_place) {
          insert_xfer_.bind(1, seq).bind(2, from).bind(3, to).bind(4, amount).run();
        }
      }

      if (settings_.in_place) {
        // (A blob rewritten with a crc of another length is freed and written anew: pages
        // taken and freed. Transfers change integers in place.)
        update_meta_.bind(1, seq).run();
        commit_with_retry();
        return seq;
      }
      std::int64_t blob_count = 0;
      if (big) {
        const double mb = std::uniform_real_distribution<double>(settings_.big_mb.first,
                                                                 settings_.big_mb.second)(rng_);
        blob_count = static_cast<std::int64_t>(mb * 1024 * 1024) / kBlobSize;
      } else {
        blob_count = uniform(settings_.min_blobs, settings_.max_blobs);
      }
      blob_count = std::clamp<std::int64_t>(blob_count, 1, nblobs);
      for (const std::int64_t id : distinct_ids(nblobs, blob_count)) {
        for (auto& byte : payload_) byte = static_cast<unsigned char>(rng_());
        update_blob_.bind_blob(1, payload_)
            .bind(2, std::int64_t{crc32(payload_.data(), payload_.size())})
            .bind(3, seq)
            .bind(4, id)
            .run();
        insert_bw_.bind(1, seq).bind(2, id).run();
      }

      std::vector<unsigned char> pad(static_cast<std::size_t>(uniform(16, 300)));
      for (auto& byte : pad) byte = static_cast<unsigned char>(rng_());
      const double now =
          std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
              .count();
      insert_log_.bind(1, seq)
          .bind(2, settings_.writer_id)
          .bind(3, now)
          .bind(4, std::int64_t{transfers})
          .bind(5, blob_count)
          .bind_blob(6, pad)
          .run();
      update_meta_.bind(1, seq).run();
      commit_with_retry();
      return seq;
    } catch (...) {
      read_meta_.reset();
      if (sqlite3_get_autocommit(db_.get()) == 0) {
        try {
          rollback_.run();
        } catch (const SqlError&) {
          // The transaction may already be gone (SQLite rolls back on some errors).
        }
      }
      throw;
    }
  }

  void maybe_sleep() {
    if (settings_.max_sleep_us > 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(uniform(0, settings_.max_sleep_us)));
    }
  }
  bool chance(double fraction) {
    return std::uniform_real_distribution<double>(0, 1)(rng_) < fraction;
  }
  std::int64_t uniform(std::int64_t low, std::int64_t high) {
    return std::uniform_int_distribution<std::int64_t>(low, high)(rng_);
  }
  int uniform(int low, int high) { return std::uniform_int_distribution<int>(low, high)(rng_); }

 private:
  // A rollback-journal COMMIT can return BUSY while it waits for readers to leave; the
  // transaction is still open then, so try again (the busy handler already waited).
  void commit_with_retry() {
    for (int attempt = 0;; ++attempt) {
      try {
        commit_.run();
        return;
      } catch (const SqlError& error) {
        if (!error.busy() || attempt >= 20) throw;
      }
    }
  }

  std::vector<std::int64_t> distinct_ids(std::int64_t nblobs, std::int64_t count) {
    std::vector<std::int64_t> ids;
    if (count * 2 > nblobs) {
      ids.resize(static_cast<std::size_t>(nblobs));
      std::iota(ids.begin(), ids.end(), 1);
      std::shuffle(ids.begin(), ids.end(), rng_);
      ids.resize(static_cast<std::size_t>(count));
      return ids;
    }
    while (static_cast<std::int64_t>(ids.size()) < count) {
      const std::int64_t id = uniform(std::int64_t{1}, nblobs);
      if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
    }
    return ids;
  }

  const Database& db_;
  WriterSettings settings_;
  std::mt19937_64 rng_;
  StatusFile& status_;
  std::vector<unsigned char> payload_ = std::vector<unsigned char>(kBlobSize);
  Statement begin_, commit_, rollback_, read_meta_, debit_, credit_, insert_xfer_, update_blob_,
      insert_bw_, insert_log_, update_meta_;
};

std::uint64_t default_seed() {
  return static_cast<std::uint64_t>(getpid()) * 0x9E3779B97F4A7C15ULL ^
         static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}

// Returns the first column of a PRAGMA as text (journal_mode answers with the mode it got).
std::string pragma_text(const Database& db, const std::string& pragma) {
  Statement statement(db, "PRAGMA " + pragma);
  return statement.step() ? statement.text(0) : "";
}

int command_write(Arguments& args) {
  const fs::path db_path = args.required("db");
  const fs::path status_path = args.required("status");
  const auto journal = args.get("journal");
  const auto locking = args.get("locking");
  const auto autocheckpoint = args.optional_integer("autocheckpoint");
  const auto cache_size = args.optional_integer("cache-size");
  const std::string txn_pages = lower(args.get("txn-pages").value_or("small"));
  WriterSettings settings;
  settings.big_every_ms = args.optional_integer("big-every-ms");
  if (const auto big_mb = args.get("big-mb")) settings.big_mb = parse_range("big-mb", *big_mb);
  settings.self_checkpoint_fraction =
      static_cast<double>(args.integer("self-checkpoint-pct", 0)) / 100.0;
  settings.max_sleep_us = static_cast<int>(args.integer("max-sleep-us", 2000));
  settings.writer_id = args.integer("writer-id", 1);
  const auto seed_arg = args.optional_integer("seed");
  const auto busy_timeout_ms = static_cast<int>(args.integer("busy-timeout-ms", 5000));
  const auto transaction_limit = args.optional_integer("transactions");
  args.reject_unknown();
  if (txn_pages == "small") {
    settings.min_transfers = 1, settings.max_transfers = 4, settings.min_blobs = 1,
    settings.max_blobs = 3;
  } else if (txn_pages == "large") {
    // 10-40 transfers and 6-30 blobs of 4 pages each: 30-130 pages, more than a cache of 64
    // pages holds, so the pager spills into the database file before COMMIT.
    settings.min_transfers = 10, settings.max_transfers = 40, settings.min_blobs = 6,
    settings.max_blobs = 30;
  } else if (txn_pages == "in-place") {
    settings.in_place = true;
    settings.min_transfers = 1, settings.max_transfers = 8;
  } else {
    throw UsageError("--txn-pages must be small, large or in-place");
  }

  StopCondition stop;
  StatusFile status(status_path);
  Database db(db_path, SQLITE_OPEN_READWRITE);
  sqlite3_busy_timeout(db.get(), busy_timeout_ms);
  // locking_mode first: with EXCLUSIVE set before the first read, a WAL database keeps its
  // wal-index in heap memory (no -shm) and nobody else can read it.
  if (locking) db.exec("PRAGMA locking_mode=" + lower(*locking));
  if (journal) {
    const std::string wanted = lower(*journal);
    const std::string got = lower(pragma_text(db, "journal_mode=" + wanted));
    if (got != wanted)
      throw std::runtime_error("set journal_mode=" + wanted + " on " + db_path.string() + ": got " +
                               got);
  }
  if (autocheckpoint) db.exec("PRAGMA wal_autocheckpoint=" + std::to_string(*autocheckpoint));
  if (cache_size) db.exec("PRAGMA cache_size=" + std::to_string(*cache_size));
  if (settings.in_place) {
    db.exec(
        "CREATE TABLE IF NOT EXISTS in_place(since INTEGER NOT NULL);"
        "INSERT INTO in_place SELECT last_seq FROM meta WHERE NOT EXISTS (SELECT 1 FROM in_place)");
  }
  if (locking) {
    // Take the exclusive lock now rather than at the first commit, so the test that waits for
    // ready knows the lock is held.
    db.exec("BEGIN IMMEDIATE; COMMIT");
  }

  Writer writer(db, settings, seed_arg ? static_cast<std::uint64_t>(*seed_arg) : default_seed(),
                status);
  status.set(StatusField::ready, 1);
  std::int64_t transactions = 0;
  std::int64_t busy = 0;
  std::int64_t checkpoints = 0;
  std::int64_t big_transactions = 0;
  using Clock = std::chrono::steady_clock;
  auto next_big = Clock::time_point::max();
  // The next big transaction is due after big_every_ms, jittered so it lands at varying points
  // of the backups' copy loops.
  std::mt19937_64 schedule_rng(seed_arg ? static_cast<std::uint64_t>(*seed_arg) + 1
                                        : default_seed());
  const auto jittered = [&](double low, double high) {
    const double factor = std::uniform_real_distribution<double>(low, high)(schedule_rng);
    return Clock::now() + std::chrono::milliseconds(static_cast<std::int64_t>(
                              factor * static_cast<double>(*settings.big_every_ms)));
  };
  if (settings.big_every_ms) next_big = jittered(0.3, 1.0);

  while (!stop.stop_requested() && (!transaction_limit || transactions < *transaction_limit)) {
    const bool big = Clock::now() >= next_big;
    std::int64_t seq = 0;
    try {
      seq = writer.transaction(big);
    } catch (const SqlError& error) {
      if (!error.busy()) throw;
      status.set(StatusField::busy_retries, ++busy);
      writer.maybe_sleep();
      continue;
    }
    status.set(StatusField::committed, seq);
    status.set(StatusField::transactions, ++transactions);
    // Dirty pages written into the database file before COMMIT (a small cache_size and large
    // transactions): the evidence that copies of this file can hold uncommitted pages.
    int spilled = 0;
    int highwater = 0;
    if (sqlite3_db_status(db.get(), SQLITE_DBSTATUS_CACHE_SPILL, &spilled, &highwater, 0) ==
        SQLITE_OK) {
      status.set(StatusField::cache_spills, spilled);
    }
    if (big) {
      status.set(StatusField::big_transactions, ++big_transactions);
      next_big = jittered(0.5, 1.5);
    }
    if (settings.self_checkpoint_fraction > 0 && writer.chance(settings.self_checkpoint_fraction)) {
      try {
        if (pragma_text(db, "wal_checkpoint(TRUNCATE)") == "0") {
          status.set(StatusField::checkpoints, ++checkpoints);
        }
      } catch (const SqlError& error) {
        if (!error.busy()) throw;
      }
    }
    writer.maybe_sleep();
  }
  return 0;
}

// ---------------------------------------------------------------------------------- checkpoint

int command_checkpoint(Arguments& args) {
  const fs::path db_path = args.required("db");
  const std::string modes_text =
      lower(args.get("modes").value_or("truncate,restart,truncate,passive,full"));
  const auto status_path = args.get("status");
  const auto busy_timeout_ms = static_cast<int>(args.integer("busy-timeout-ms", 100));
  const auto max_sleep_us = args.integer("max-sleep-us", 3000);
  args.reject_unknown();
  std::vector<std::string> modes;
  for (std::size_t start = 0; start <= modes_text.size();) {
    const auto comma = std::min(modes_text.find(',', start), modes_text.size());
    const std::string mode = modes_text.substr(start, comma - start);
    if (mode != "truncate" && mode != "restart" && mode != "passive" && mode != "full") {
      throw UsageError("--modes: unknown checkpoint mode '" + mode + "'");
    }
    modes.push_back(mode);
    start = comma + 1;
  }

  StopCondition stop;
  StatusFile status(status_path);
  Database db(db_path, SQLITE_OPEN_READWRITE);
  sqlite3_busy_timeout(db.get(), busy_timeout_ms);
  status.set(StatusField::ready, 1);
  std::mt19937_64 rng(default_seed());
  std::int64_t done = 0;
  std::int64_t busy = 0;
  while (!stop.stop_requested()) {
    const std::string& mode =
        modes[std::uniform_int_distribution<std::size_t>(0, modes.size() - 1)(rng)];
    try {
      // The first column is 0 when the checkpoint ran to completion, 1 when it was blocked.
      if (pragma_text(db, "wal_checkpoint(" + mode + ")") == "0") {
        status.set(StatusField::checkpoints, ++done);
      } else {
        status.set(StatusField::busy_retries, ++busy);
      }
    } catch (const SqlError& error) {
      if (!error.busy()) throw;
      status.set(StatusField::busy_retries, ++busy);
    }
    if (max_sleep_us > 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(
          std::uniform_int_distribution<std::int64_t>(0, max_sleep_us)(rng)));
    }
  }
  return 0;
}

// ---------------------------------------------------------------------------------- check

struct Verdict {
  std::int64_t k = -1;
  std::string outcome = "ok";  // ok, corrupt, inconsistent, stale
  std::string detail;
};

// A fresh private folder holding copies of the database and its -wal/-journal; removed after.
class PrivateCopy {
 public:
  PrivateCopy(const fs::path& database, const fs::path& scratch_parent) {
    std::string pattern = (scratch_parent / "sqlite_churn_check-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      throw std::runtime_error("mkdtemp in " + scratch_parent.string() + ": " +
                               std::strerror(errno));
    }
    folder_ = pattern;
    copy_ = folder_ / database.filename();
    fs::copy_file(database, copy_);
    for (const char* suffix : {"-wal", "-journal"}) {
      const fs::path side = database.string() + suffix;
      std::error_code error;
      fs::copy_file(side, copy_.string() + suffix, error);  // absent side files are the usual case
    }
  }
  PrivateCopy(const PrivateCopy&) = delete;
  PrivateCopy& operator=(const PrivateCopy&) = delete;
  ~PrivateCopy() {
    std::error_code ignored;
    fs::remove_all(folder_, ignored);
  }
  [[nodiscard]] const fs::path& path() const { return copy_; }

 private:
  fs::path folder_;
  fs::path copy_;
};

std::int64_t scalar(const Database& db, const std::string& sql) {
  Statement statement(db, sql);
  return statement.step() ? statement.int64(0) : 0;
}

// Every invariant of the workload; returns the problems found (empty: consistent) and sets K.
std::vector<std::string> invariant_problems(const Database& db, std::int64_t& k) {
  std::vector<std::string> problems;
  std::int64_t nblobs = 0;
  {
    Statement meta(db,
                   "SELECT last_seq, nblobs, (SELECT COUNT(*) FROM meta) FROM meta WHERE id = 0");
    if (!meta.step() || meta.int64(2) != 1) {
      problems.push_back("meta row missing");
      return problems;
    }
    k = meta.int64(0);
    nblobs = meta.int64(1);
  }
  // In place from seq S on (see the top of this file): the records cover 1..S.
  std::optional<std::int64_t> in_place_since;
  if (scalar(db, "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'in_place'") != 0) {
    in_place_since = scalar(db, "SELECT MIN(since) FROM in_place");
    if (*in_place_since > k) {
      problems.push_back("in place since seq " + std::to_string(*in_place_since) +
                         ", after meta.last_seq=" + std::to_string(k));
    }
  }
  const std::int64_t recorded = in_place_since.value_or(k);
  {
    Statement log(db, "SELECT COUNT(*), MIN(seq), MAX(seq) FROM log");
    log.step();
    const std::int64_t count = log.int64(0);
    const std::int64_t low = log.int64(1);
    const std::int64_t high = log.int64(2);
    if (count != recorded || (recorded > 0 && (low != 1 || high != recorded))) {
      problems.push_back("log is not 1..K: meta.last_seq=" + std::to_string(recorded) +
                         " log count=" + std::to_string(count) + " min=" + std::to_string(low) +
                         " max=" + std::to_string(high));
    }
  }
  {
    Statement accounts(db, "SELECT COUNT(*), TOTAL(balance) FROM accounts");
    accounts.step();
    const auto total = static_cast<std::int64_t>(accounts.real(1));
    if (accounts.int64(0) != kAccounts || total != kTotalBalance) {
      problems.push_back("SUM(balance)=" + std::to_string(total) + " over " +
                         std::to_string(accounts.int64(0)) + " accounts, expected " +
                         std::to_string(kTotalBalance) + " over " + std::to_string(kAccounts));
    }
  }
  {
    Statement xfer(
        db, "SELECT COUNT(DISTINCT seq), COALESCE(MAX(seq), 0), COALESCE(MIN(seq), 1) FROM xfer");
    xfer.step();
    if (xfer.int64(0) != recorded || xfer.int64(1) != recorded ||
        (recorded > 0 && xfer.int64(2) != 1)) {
      problems.push_back("xfer covers " + std::to_string(xfer.int64(0)) + " transactions, seq " +
                         std::to_string(xfer.int64(2)) + ".." + std::to_string(xfer.int64(1)) +
                         ", expected 1.." + std::to_string(recorded));
    }
  }
  if (!in_place_since) {
    Statement balances(
        db,
        "SELECT COUNT(*), MIN(a.id) FROM accounts a"
        " LEFT JOIN (SELECT b AS id, SUM(amt) AS s FROM xfer GROUP BY b) i ON i.id = a.id"
        " LEFT JOIN (SELECT a AS id, SUM(amt) AS s FROM xfer GROUP BY a) o ON o.id = a.id"
        " WHERE a.balance != ?1 + COALESCE(i.s, 0) - COALESCE(o.s, 0)");
    balances.bind(1, kInitialBalance);
    balances.step();
    if (balances.int64(0) != 0) {
      problems.push_back(std::to_string(balances.int64(0)) +
                         " balances differ from replaying xfer 1.." + std::to_string(k) +
                         " (e.g. account " + std::to_string(balances.int64(1)) + ")");
    }
  }
  {
    Statement bw(
        db, "SELECT COUNT(DISTINCT seq), COALESCE(MAX(seq), 0), COALESCE(MIN(seq), 1) FROM bw");
    bw.step();
    if (bw.int64(0) != recorded || bw.int64(1) != recorded || (recorded > 0 && bw.int64(2) != 1)) {
      problems.push_back("bw covers " + std::to_string(bw.int64(0)) + " transactions, seq " +
                         std::to_string(bw.int64(2)) + ".." + std::to_string(bw.int64(1)) +
                         ", expected 1.." + std::to_string(recorded));
    }
  }
  if (const std::int64_t rows = scalar(db, "SELECT COUNT(*) FROM blobs"); rows != nblobs) {
    problems.push_back(std::to_string(rows) + " blob rows, expected " + std::to_string(nblobs));
  }
  if (in_place_since) {
    if (const std::int64_t later =
            scalar(db, "SELECT COUNT(*) FROM blobs WHERE last_seq > " + std::to_string(k));
        later != 0) {
      problems.push_back(std::to_string(later) +
                         " blobs written after meta.last_seq=" + std::to_string(k));
    }
  } else {
    Statement last_writer(
        db,
        "SELECT COUNT(*), MIN(b.id) FROM blobs b"
        " LEFT JOIN (SELECT blob_id, MAX(seq) AS m FROM bw GROUP BY blob_id) w ON w.blob_id = b.id"
        " WHERE b.last_seq != COALESCE(w.m, 0)");
    last_writer.step();
    if (last_writer.int64(0) != 0) {
      problems.push_back(std::to_string(last_writer.int64(0)) +
                         " blobs whose last_seq disagrees with bw (e.g. blob " +
                         std::to_string(last_writer.int64(1)) + ")");
    }
  }
  {
    Statement blobs(db, "SELECT id, crc, payload FROM blobs");
    std::int64_t bad = 0;
    std::int64_t first_bad = 0;
    while (blobs.step()) {
      const auto [data, size] = blobs.blob(2);
      if (static_cast<std::int64_t>(crc32(data, size)) != blobs.int64(1)) {
        if (bad++ == 0) first_bad = blobs.int64(0);
      }
    }
    if (bad != 0) {
      problems.push_back(std::to_string(bad) + " blobs fail crc32 (e.g. blob " +
                         std::to_string(first_bad) + ")");
    }
  }
  return problems;
}

Verdict check_snapshot(const fs::path& database, std::int64_t min_seq,
                       std::optional<std::int64_t> max_seq, const fs::path& scratch) {
  Verdict verdict;
  const auto fail = [&](const char* outcome, std::string detail) {
    verdict.outcome = outcome;
    verdict.detail = std::move(detail);
    return verdict;
  };
  std::error_code error;
  const auto size = fs::file_size(database, error);
  if (error)
    return fail("corrupt", "no snapshot file " + database.string() + ": " + error.message());
  if (size == 0) return fail("corrupt", "snapshot " + database.string() + " is empty (0 bytes)");
  {
    std::FILE* file = std::fopen(database.c_str(), "rb");
    std::array<char, 16> magic{};
    const bool read =
        file != nullptr && std::fread(magic.data(), 1, magic.size(), file) == magic.size();
    if (file != nullptr) std::fclose(file);
    if (!read || std::memcmp(magic.data(), "SQLite format 3", 16) != 0) {
      return fail("corrupt", "not an SQLite database header (" + std::to_string(size) + " bytes)");
    }
  }
  PrivateCopy copy(database, scratch);
  try {
    Database db(copy.path(), SQLITE_OPEN_READWRITE);
    {
      Statement integrity(db, "PRAGMA integrity_check(20)");
      std::vector<std::string> lines;
      while (integrity.step()) lines.push_back(integrity.text(0));
      if (lines != std::vector<std::string>{"ok"}) {
        std::string joined;
        for (std::size_t i = 0; i < lines.size() && i < 3; ++i)
          joined += (i > 0 ? " | " : "") + lines[i];
        return fail("corrupt", "integrity_check: " + joined);
      }
    }
    std::vector<std::string> problems;
    try {
      problems = invariant_problems(db, verdict.k);
    } catch (const SqlError& query_error) {
      return fail("corrupt", std::string("query failed (not a snapshot of the workload?): ") +
                                 query_error.what());
    }
    if (!problems.empty()) {
      std::string joined;
      for (std::size_t i = 0; i < problems.size() && i < 4; ++i)
        joined += (i > 0 ? "; " : "") + problems[i];
      return fail("inconsistent", joined);
    }
  } catch (const SqlError& open_error) {
    return fail("corrupt", open_error.what());
  }
  if (verdict.k < min_seq) {
    return fail("stale", "K=" + std::to_string(verdict.k) + " < " + std::to_string(min_seq) +
                             " committed before the backup started");
  }
  if (max_seq && verdict.k > *max_seq) {
    return fail("inconsistent", "K=" + std::to_string(verdict.k) + " > " +
                                    std::to_string(*max_seq) +
                                    ", later than any transaction ever started");
  }
  return verdict;
}

int command_check(Arguments& args) {
  const fs::path db_path = args.required("db");
  const std::int64_t min_seq = args.integer("min-seq", 0);
  const auto max_seq = args.optional_integer("max-seq");
  const char* tmpdir = std::getenv("TMPDIR");
  const fs::path scratch =
      args.get("scratch").value_or(tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp");
  args.reject_unknown();
  const Verdict verdict = check_snapshot(db_path, min_seq, max_seq, scratch);
  std::printf("K=%lld\n%s%s%s\n", static_cast<long long>(verdict.k), verdict.outcome.c_str(),
              verdict.detail.empty() ? "" : ": ", verdict.detail.c_str());
  std::fflush(stdout);
  if (verdict.outcome == "ok") return 0;
  if (verdict.outcome == "corrupt") return 2;
  if (verdict.outcome == "inconsistent") return 3;
  return 4;
}

void usage(std::FILE* out) {
  std::fputs(
      "usage:\n"
      "  sqlite_churn prime --db PATH --mb M --journal wal|delete [--page-size N]\n"
      "      [--auto-vacuum none|full|incremental] [--seed S]\n"
      "  sqlite_churn write --db PATH --status FILE [--journal wal|delete|persist|truncate]\n"
      "      [--locking exclusive] [--autocheckpoint N] [--cache-size N] [--txn-pages "
      "small|large|in-place]\n"
      "      [--big-every-ms N --big-mb M|MIN-MAX] [--self-checkpoint-pct P] [--max-sleep-us U]\n"
      "      [--writer-id N] [--seed S] [--busy-timeout-ms MS] [--transactions N]\n"
      "  sqlite_churn checkpoint --db PATH [--modes truncate,restart,passive,full] [--status "
      "FILE]\n"
      "      [--busy-timeout-ms MS] [--max-sleep-us U]\n"
      "  sqlite_churn check --db PATH [--min-seq K] [--max-seq K2] [--scratch DIR]\n"
      "status file: int64 at byte 0 committed seq, 8 pending seq, 16 transactions, 24 busy "
      "retries,\n"
      "  32 checkpoints, 40 big transactions, 48 ready, 56 cache spills (atomic stores into a\n"
      "  shared mapping)\n"
      "check prints K=<seq> and ok / corrupt: / inconsistent: / stale: ...; exit 0 ok, 2 corrupt,\n"
      "  3 inconsistent, 4 stale, 64 usage\n",
      out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return 64;
  }
  const std::string command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    usage(stdout);
    return 0;
  }
  try {
    Arguments args(argc, argv, 2);
    if (command == "prime") return command_prime(args);
    if (command == "write") return command_write(args);
    if (command == "checkpoint") return command_checkpoint(args);
    if (command == "check") return command_check(args);
    throw UsageError("unknown command '" + command + "'");
  } catch (const UsageError& error) {
    std::fprintf(stderr, "sqlite_churn %s: %s\n", command.c_str(), error.what());
    usage(stderr);
    return 64;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "sqlite_churn %s failed: %s\n", command.c_str(), error.what());
    return 1;
  }
}
