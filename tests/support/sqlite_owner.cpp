// sqlite_owner: a real process that owns a SQLite database in a state the tests need,
// announces it by writing a ready file, and stays there. See usage() below.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <string>
#include <string_view>

namespace {

constexpr const char* kUsage =
    "usage: sqlite_owner --db PATH --mode MODE [--rows N] [--ready FILE]\n"
    "\n"
    "Owns the SQLite database PATH in the state MODE, writes FILE (atomically, its content is\n"
    "our pid) once that state is reached, and stays there.\n"
    "\n"
    "Modes (N defaults to 100; the table is t(id INTEGER PRIMARY KEY, v TEXT), created if "
    "missing):\n"
    "  wal-hold            journal_mode=WAL, wal_autocheckpoint=0, inserts N rows, which "
    "therefore\n"
    "                      live only in PATH-wal; holds the connection open until SIGTERM/SIGINT\n"
    "  exclusive           as wal-hold, with locking_mode=EXCLUSIVE held (no -shm; others get\n"
    "                      SQLITE_BUSY)\n"
    "  rollback-exclusive  journal_mode=DELETE, locking_mode=EXCLUSIVE, inserts N rows, holds\n"
    "  rollback-exclusive-unjournaled  as rollback-exclusive with journal_mode=OFF\n"
    "  exclusive-wal-commit-on-signal  journal_mode=WAL, locking_mode=EXCLUSIVE; each SIGUSR1\n"
    "                      commits, checkpoints (TRUNCATE) and commits again (FILE.2, ...)\n"
    "  exclusive-commit-on-signal\n"
    "                      as rollback-exclusive; each SIGUSR1 commits one more transaction (rows\n"
    "                      appended: page 1 and the change counter move), announced by FILE.2,\n"
    "                      FILE.3, ...; holds until SIGTERM/SIGINT\n"
    "  hot-journal         journal_mode=DELETE, cache_size=10; commits N rows, then begins a\n"
    "                      transaction rewriting every row, which spills into PATH while "
    "PATH-journal\n"
    "                      holds the originals; writes FILE and waits to be SIGKILLed (exits 3 on\n"
    "                      SIGTERM without committing)\n"
    "  open-transaction    journal_mode=DELETE, synchronous=FULL; inserts N rows (committed), "
    "then\n"
    "                      begins a transaction that updates one row and leaves it open: "
    "PATH-journal\n"
    "                      exists but is not hot yet (SQLite writes its magic only when it syncs "
    "it\n"
    "                      before writing PATH), and PATH is unchanged; rolls back on "
    "SIGTERM/SIGINT\n"
    "  commit-on-signal    journal_mode=DELETE, synchronous=FULL; inserts N rows (committed), "
    "then\n"
    "                      updates every row in a transaction it leaves open (writes FILE); on\n"
    "                      SIGUSR1 it commits, waiting in a busy handler for readers, and writes\n"
    "                      FILE.2 once the commit is done; holds until SIGTERM/SIGINT\n"
    "  pause-in-commit     journal_mode=PERSIST; commits N wide rows, then commits a transaction\n"
    "                      rewriting every 8th row, pausing inside that commit twice: before its\n"
    "                      first write to PATH (journal synced and hot, change counter not moved;\n"
    "                      writes FILE) and right after writing page 1 (counter moved, journal "
    "still\n"
    "                      hot; writes FILE.2). SIGUSR1 resumes each pause; once the commit is "
    "done\n"
    "                      (journal header zeroed) it writes FILE.3 and holds until "
    "SIGTERM/SIGINT\n"
    "  pause-in-commit-exclusive  as pause-in-commit with locking_mode=EXCLUSIVE and\n"
    "                      journal_mode=DELETE; after the paused commit it commits a second\n"
    "                      transaction (every 8th row from id 1: 'row' becomes 'ROW', same "
    "length)\n"
    "                      that SQLite does not count in the change counter, then writes FILE.3\n"
    "  pause-in-commit-attached  as pause-in-commit with journal_mode=DELETE; the transaction\n"
    "                      also writes PATH-aux (attached), so its journal names a super-journal\n"
    "  pause-in-shrinking-commit  as pause-in-commit (PERSIST) on an auto_vacuum=FULL database;\n"
    "                      the paused transaction deletes the last three quarters of the rows, "
    "and\n"
    "                      its commit moves pages and cuts the file\n"
    "  pause-in-unjournaled-commit  as pause-in-commit with journal_mode=OFF (no journal on\n"
    "                      disk), the second pause after page 1 and one more page\n"
    "  pause-in-commit-then-spill  as pause-in-commit with journal_mode=DELETE; after the paused\n"
    "                      commit, a second transaction spills uncommitted rows ('uncommitted',\n"
    "                      every 8th from id 1) into PATH and waits (FILE.3), then rolls back\n"
    "                      on SIGUSR1 (FILE.4)\n"
    "  rollback-then-commit  journal_mode=DELETE, synchronous=OFF; N wide rows, then a "
    "transaction\n"
    "                      that inserts rows and waits (its journal hot; FILE); on SIGUSR1 it "
    "rolls\n"
    "                      back and another transaction rewrites every 8th row (FILE.2)\n"
    "  pause-in-two-commits  journal_mode=DELETE; table b of N 20000-byte blobs (h: a fingerprint\n"
    "                      of each blob's ends), then two commits, each pausing as above: T1\n"
    "                      deletes the even rows (FILE, FILE.2), T2 inserts N/2 new blobs into\n"
    "                      the freed pages (FILE.3, FILE.4); FILE.5 once both are done\n"
    "  pause-in-two-in-place-commits  as pause-in-commit with journal_mode=DELETE: two\n"
    "                      commits, each pausing as above, each rewriting rows in place (every\n"
    "                      8th row 'row' -> 'ROW', from id 0 then from id 1; same length, so no\n"
    "                      page is freed): FILE, FILE.2, then FILE.3, FILE.4; FILE.5 when done\n"
    "  pause-in-exclusive-late  journal_mode=DELETE; N rows, then idle (FILE); on SIGUSR1 it\n"
    "                      enters locking_mode=EXCLUSIVE and commits every 8th row of ids up to\n"
    "                      4000 rewritten, pausing as pause-in-commit (FILE.2, FILE.3), then\n"
    "                      rows past 8000 'row' -> 'ROW' (uncounted); FILE.4 when done\n"
    "  pause-in-exclusive-late-release  as pause-in-exclusive-late, then locking_mode=NORMAL\n"
    "                      and a read, which lets go of the lock, before FILE.4\n"
    "  pause-in-exclusive-late-event  journal_mode=DELETE; N rows, idle (FILE); then under\n"
    "                      locking_mode=EXCLUSIVE: T1 pausing as pause-in-commit (FILE.2,\n"
    "                      FILE.3), an uncounted commit, a rollback, T2 pausing before its first\n"
    "                      write (FILE.4) and with page 1 visible but its IN_MODIFY not yet\n"
    "                      queued (FILE.5); FILE.6 once done and the lock let go\n"
    "  pause-in-exclusive-late-event-control  the same, T2's page 1 written plainly\n"
    "  pause-in-exclusive-synced-release  journal_mode=DELETE; N rows, then its first commit\n"
    "                      under locking_mode=EXCLUSIVE pauses after syncing the database, its\n"
    "                      journal still hot (FILE); on SIGUSR1 it ends, an uncounted commit\n"
    "                      rewrites rows past 8000 and the lock is let go (FILE.2)\n"
    "  pause-in-chunk-shrink-regrow  journal_mode=DELETE, auto_vacuum=FULL, 32 MiB chunks;\n"
    "                      N rows, then two commits pausing as pause-in-two-commits: T1\n"
    "                      deletes the last quarter of the rows, T2 inserts as many 'new' ones\n"
    "  pause-in-uncounted-commits  journal_mode=DELETE; N rows, then under\n"
    "                      locking_mode=EXCLUSIVE, after its first (counted) commit: idle\n"
    "                      (FILE); T1, uncounted, makes every 8th row of the third quarter\n"
    "                      'rewritten', pausing before its first write to the database, its\n"
    "                      journal synced (FILE.2); T2 makes the last quarter 'ROW', pausing\n"
    "                      the same way (FILE.3); FILE.4 once done\n"
    "  pause-in-uncounted-commits-missed  the same, with an unpaused commit between T1 and T2\n"
    "                      that marks every 8th row (from 1) of the third quarter 'mid'\n"
    "  pause-in-unjournaled-then-uncounted  journal_mode=DELETE; N rows, then under\n"
    "                      locking_mode=EXCLUSIVE, idle (FILE); under journal_mode=OFF a commit\n"
    "                      marks the first and last 8 rows 'UNJ'; back under DELETE, T1 makes\n"
    "                      every 8th row of the third quarter 'rewritten', pausing before its\n"
    "                      first write (FILE.2); FILE.3\n"
    "  pause-in-uncounted-then-unjournaled  idle as above (FILE); T1 as above (FILE.2); then\n"
    "                      under journal_mode=OFF a commit marks the last 40 rows 'UNJ', pausing\n"
    "                      in its first write, the page visible but its IN_MODIFY not yet queued\n"
    "                      (FILE.3); FILE.4\n"
    "  pause-in-small-uncounted  journal_mode=DELETE, 1024-byte pages; N rows, then under\n"
    "                      locking_mode=EXCLUSIVE, idle (FILE); T1 (uncounted) makes rows 1\n"
    "                      and N 'ROW', pausing before its first write (FILE.2); FILE.3\n"
    "  pause-in-small-counted  the same without exclusive locking mode: idle (FILE), T1\n"
    "                      (counted) pausing as pause-in-commit (FILE.2, FILE.3); FILE.4\n"
    "  pause-in-counted-then-uncounted  journal_mode=DELETE; N rows, then under\n"
    "                      locking_mode=EXCLUSIVE, idle (FILE); T1 appends 500 'new' rows "
    "(counted),\n"
    "                      pausing as pause-in-commit (FILE.2, FILE.3); T2, uncounted, makes the\n"
    "                      last quarter 'ROW', pausing before its first write (FILE.4); FILE.5\n"
    "  pause-in-uncounted-free-and-reuse  as pause-in-two-commits (N blobs), under\n"
    "                      locking_mode=EXCLUSIVE after a counted commit: idle (FILE), then T1\n"
    "                      and T2 each pausing before its first write and after its page 1\n"
    "                      (FILE.2 and FILE.3, FILE.4 and FILE.5); FILE.6\n"
    "  pause-in-free-and-reuse-then-third  the same, but idle after T2 (FILE.6); then T3,\n"
    "                      uncounted, unpaused, sets k.x to x + 100 and the last blob's h to\n"
    "                      'T3' padded to 32 characters; FILE.7\n"
    "  pause-in-uncounted-unseen  journal_mode=DELETE; N rows, then under\n"
    "                      locking_mode=EXCLUSIVE, idle (FILE); U, uncounted, unpaused, makes the\n"
    "                      first and last 200 rows 'ROW'; FILE.2\n"
    "  pause-in-free-and-grow  as pause-in-uncounted-free-and-reuse, but T2 inserts N blobs,\n"
    "                      twice what T1 freed: the file grows\n"
    "  pause-in-uncounted-then-late-counted  journal_mode=DELETE; N rows, then under\n"
    "                      locking_mode=EXCLUSIVE, idle (FILE); U, uncounted, unpaused, makes the\n"
    "                      first and last 200 rows 'ROW'; a rollback; T (counted) rewrites every\n"
    "                      8th row of the second quarter, pausing before its first write (FILE.2)\n"
    "                      and with page 1 visible but its IN_MODIFY not yet queued (FILE.3);\n"
    "                      FILE.4 once done\n"
    "  pause-in-journal-sync  journal_mode=DELETE, locking_mode=NORMAL; N rows, idle (FILE); T1\n"
    "                      rewrites every 8th row, pausing at its journal's first sync (EXCLUSIVE\n"
    "                      held, the journal not yet hot: FILE.2); FILE.3 once T1 is done\n"
    "  stomp               creates PATH with N rows if missing, then (no SQLite) rewrites the "
    "header's\n"
    "                      change counter (bytes 24-27) in a tight loop until SIGTERM/SIGINT\n"
    "\n"
    "Exit status: 0 after a clean stop on SIGTERM/SIGINT, 1 on errors (message on stderr), 2 on\n"
    "usage errors.\n";

volatile sig_atomic_t g_stop_requested = 0;
extern "C" void request_stop(int) { g_stop_requested = 1; }

struct Arguments {
  std::string db;
  std::string mode;
  long rows = 100;
  std::string ready;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "sqlite_owner: %s\n\n%s", message.c_str(), kUsage);
  std::exit(2);
}

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "sqlite_owner: %s\n", message.c_str());
  std::exit(1);
}

Arguments parse(int argc, char** argv) {
  Arguments args;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) usage_error("missing value after " + std::string(flag));
    const std::string value = argv[++i];
    if (flag == "--db") {
      args.db = value;
    } else if (flag == "--mode") {
      args.mode = value;
    } else if (flag == "--rows") {
      char* end = nullptr;
      args.rows = std::strtol(value.c_str(), &end, 10);
      if (end == value.c_str() || *end != '\0' || args.rows < 0)
        usage_error("--rows needs a count >= 0: " + value);
    } else if (flag == "--ready") {
      args.ready = value;
    } else {
      usage_error("unknown option " + std::string(flag));
    }
  }
  if (args.db.empty()) usage_error("--db is required");
  if (args.mode.empty()) usage_error("--mode is required");
  return args;
}

class Database {
 public:
  explicit Database(const std::string& path) : path_(path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) {
      die("open " + path + ": " + (db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory"));
    }
  }
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  ~Database() { close(); }

  void exec(const std::string& sql) {
    char* message = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
      const std::string reason = message != nullptr ? message : sqlite3_errmsg(db_);
      sqlite3_free(message);
      die("run \"" + sql + "\" on " + path_ + ": " + reason);
    }
  }

  std::string text(const std::string& sql) {
    sqlite3_stmt* statement = nullptr;
    std::string value;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &statement, nullptr) != SQLITE_OK) {
      die("prepare \"" + sql + "\" on " + path_ + ": " + sqlite3_errmsg(db_));
    }
    if (sqlite3_step(statement) == SQLITE_ROW) {
      const auto* chars = reinterpret_cast<const char*>(sqlite3_column_text(statement, 0));
      if (chars != nullptr) value = chars;
    }
    sqlite3_finalize(statement);
    return value;
  }

  [[nodiscard]] sqlite3* handle() const noexcept { return db_; }
  void close() noexcept {
    if (db_ != nullptr) sqlite3_close(db_);
    db_ = nullptr;
  }

 private:
  std::string path_;
  sqlite3* db_ = nullptr;
};

void create_table(Database& db) {
  db.exec("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)");
}

// Inserts in batches of committed transactions: several commits, like a real owner.
// `padding` makes rows wide enough to fill many pages when a test needs that.
void insert_rows(Database& db, long rows, bool padded) {
  const long batch = 500;
  for (long done = 0; done < rows; done += batch) {
    const long count = rows - done < batch ? rows - done : batch;
    const std::string value =
        padded ? "'row ' || (i + " + std::to_string(done) + ") || ' ' || hex(randomblob(400))"
               : "'row ' || (i + " + std::to_string(done) + ")";
    db.exec("BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < " +
            std::to_string(count) + ") INSERT INTO t(v) SELECT " + value + " FROM n; COMMIT;");
  }
}

void expect_pragma(Database& db, const std::string& pragma, const std::string& expected) {
  const std::string actual = db.text("PRAGMA " + pragma);
  if (actual != expected)
    die("PRAGMA " + pragma + " is '" + actual + "', expected '" + expected + "'");
}

// Written under a temporary name, then renamed: a test polling for FILE never sees it half done.
void announce_ready(const std::string& ready) {
  if (ready.empty()) return;
  const std::string temporary = ready + ".tmp";
  FILE* file = std::fopen(temporary.c_str(), "w");
  if (file == nullptr) die("create " + temporary + ": " + std::strerror(errno));
  std::fprintf(file, "%ld\n", static_cast<long>(::getpid()));
  if (std::fclose(file) != 0) die("write " + temporary + ": " + std::strerror(errno));
  if (std::rename(temporary.c_str(), ready.c_str()) != 0) {
    die("rename " + temporary + " to " + ready + ": " + std::strerror(errno));
  }
}

// SIGTERM/SIGINT are blocked from the start, so one arriving early is kept pending and
// sigwait() takes it: no window where it would kill us with the connection half set up.
sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

void wait_for_stop() {
  const sigset_t set = stop_signals();
  int received = 0;
  while (sigwait(&set, &received) != 0) {
  }
}

int hold_wal(const Arguments& args, bool exclusive) {
  Database db(args.db);
  // Before the WAL is first used: then SQLite keeps the WAL index in heap memory, no -shm.
  if (exclusive) expect_pragma(db, "locking_mode=EXCLUSIVE", "exclusive");
  expect_pragma(db, "journal_mode=WAL", "wal");
  db.exec("PRAGMA wal_autocheckpoint=0");
  create_table(db);
  insert_rows(db, args.rows, false);
  // An exclusive WAL connection holds its lock from the first write on; make sure we had one.
  if (exclusive) db.exec("BEGIN IMMEDIATE; COMMIT;");
  announce_ready(args.ready);
  wait_for_stop();
  db.close();  // a clean close checkpoints and removes the -wal, as a real owner would
  return 0;
}

int hold_rollback_exclusive(const Arguments& args, const std::string& journal_mode) {
  Database db(args.db);
  expect_pragma(db, "locking_mode=EXCLUSIVE", "exclusive");
  expect_pragma(db, "journal_mode=" + journal_mode, journal_mode);
  create_table(db);
  insert_rows(db, args.rows, false);
  // The exclusive lock is taken on the first write and never given back until close.
  db.exec("BEGIN IMMEDIATE; COMMIT;");
  announce_ready(args.ready);
  wait_for_stop();
  db.close();
  return 0;
}

// locking_mode=EXCLUSIVE in `journal_mode`; each SIGUSR1 commits 50 more rows (in WAL mode
// also checkpoints (TRUNCATE), restarting the WAL, and commits 50 again), announced by
// FILE.2, FILE.3, ...
int commit_on_each_signal_exclusive(const Arguments& args, const std::string& journal_mode) {
  sigset_t signals = stop_signals();  // blocked before they can arrive: sigwait() takes them
  sigaddset(&signals, SIGUSR1);
  sigprocmask(SIG_BLOCK, &signals, nullptr);
  Database db(args.db);
  const bool wal = journal_mode == "wal";
  expect_pragma(db, "locking_mode=EXCLUSIVE", "exclusive");
  expect_pragma(db, "journal_mode=" + journal_mode, journal_mode);
  if (wal) db.exec("PRAGMA wal_autocheckpoint=0");
  create_table(db);
  insert_rows(db, args.rows, false);
  announce_ready(args.ready);
  for (int commits = 1;; ++commits) {
    int received = 0;
    while (sigwait(&signals, &received) != 0) {
    }
    if (received != SIGUSR1) break;
    insert_rows(db, 50, true);
    if (wal) {
      db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
      insert_rows(db, 50, true);
    }
    if (!args.ready.empty()) announce_ready(args.ready + "." + std::to_string(commits + 1));
  }
  db.close();
  return 0;
}

std::string read_whole(const std::string& path) {
  std::string contents;
  FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) die("read " + path + ": " + std::strerror(errno));
  char buffer[65536];
  std::size_t got = 0;
  while ((got = std::fread(buffer, 1, sizeof buffer, file)) > 0) contents.append(buffer, got);
  std::fclose(file);
  return contents;
}

int die_mid_transaction(const Arguments& args) {
  Database db(args.db);
  expect_pragma(db, "journal_mode=DELETE", "delete");
  db.exec("PRAGMA cache_size=10");
  create_table(db);
  // Wide rows: the table spans far more than the 10 cached pages, so rewriting it must spill.
  insert_rows(db, args.rows, true);
  const std::string committed = read_whole(args.db);
  db.exec("BEGIN; UPDATE t SET v = 'rewritten ' || v;");
  // The state the tests need: the database file already holds uncommitted pages, so only
  // rolling back the journal gives the committed data. Refuse to announce anything else.
  if (read_whole(args.db) == committed) {
    die("hot-journal: the transaction did not spill into " + args.db + " (use more --rows)");
  }
  if (::access((args.db + "-journal").c_str(), F_OK) != 0)
    die("hot-journal: no " + args.db + "-journal");
  announce_ready(args.ready);
  wait_for_stop();
  // Asked to stop politely: leave without committing (SQLite rolls back on close).
  db.close();
  return 3;
}

// commit-on-signal: a transaction that commits only when told to, and then has to wait for
// whoever holds a SHARED lock (a reader, or our backup), as SQLite's writers do.
int commit_on_signal(const Arguments& args) {
  sigset_t resume;  // blocked before it can arrive: sigwait() takes it below
  sigemptyset(&resume);
  sigaddset(&resume, SIGUSR1);
  sigprocmask(SIG_BLOCK, &resume, nullptr);
  Database db(args.db);
  expect_pragma(db, "journal_mode=DELETE", "delete");
  db.exec("PRAGMA synchronous=FULL");
  create_table(db);
  insert_rows(db, args.rows, false);
  db.exec("BEGIN IMMEDIATE; UPDATE t SET v = v || ' (committed on signal)';");
  announce_ready(args.ready);
  sigset_t signals = stop_signals();
  sigaddset(&signals, SIGUSR1);
  int received = 0;
  while (sigwait(&signals, &received) != 0) {
  }
  if (received != SIGUSR1) return 3;
  // A busy handler, as an application has: the commit waits for readers, never fails on them
  // (a failure here, SQLITE_BUSY among them, ends the owner with an error).
  db.exec("PRAGMA busy_timeout=60000");
  db.exec("COMMIT");
  announce_ready(args.ready.empty() ? args.ready : args.ready + ".2");
  wait_for_stop();
  db.close();
  return 0;
}

int hold_open_transaction(const Arguments& args) {
  Database db(args.db);
  expect_pragma(db, "journal_mode=DELETE", "delete");
  db.exec("PRAGMA synchronous=FULL");
  create_table(db);
  insert_rows(db, args.rows, false);
  const std::string committed = read_whole(args.db);
  db.exec("BEGIN IMMEDIATE; UPDATE t SET v = v || ' (uncommitted)' WHERE id = 1;");
  // The state the tests need: a journal being written, not yet hot, and the database file
  // untouched. Refuse to announce anything else.
  const std::string journal = read_whole(args.db + "-journal");
  if (journal.size() < 28 || journal.compare(0, 8, std::string(8, '\0')) != 0) {
    die("open-transaction: " + args.db + "-journal is missing or already hot");
  }
  if (read_whole(args.db) != committed) {
    die("open-transaction: the transaction wrote into " + args.db + " before its commit");
  }
  announce_ready(args.ready);
  wait_for_stop();
  db.close();  // rolls the open transaction back
  return 0;
}

// ---- pause-in-commit: a VFS shim that stops the commit at chosen writes ----------------
//
// The shim forwards everything to the default VFS; only xWrite on the main database file
// looks at whether the commit is armed. Version-1 I/O methods suffice (rollback mode needs
// no shared memory, and without xFetch SQLite does not memory-map).

struct PausingFile {
  sqlite3_file base;   // must come first: SQLite hands us this pointer
  sqlite3_file* real;  // the default VFS's file, allocated right behind this struct
  bool main_database;
  bool main_journal;  // PATH-journal
};

sqlite3_vfs* g_real_vfs = nullptr;
sqlite3_vfs g_pausing_vfs;
bool g_commit_armed = false;
int g_pauses_done = 0;  // in the armed commit: 1 before its first write, 2 after page 1
// Writes after page 1's (in the armed commit) before the second pause; counted down.
int g_writes_after_page_one = 0;
bool g_page_one_written = false;
bool g_single_pause = false;  // the armed commit pauses only before its first write
int g_announced = 0;          // ready files written so far: FILE, then FILE.2, FILE.3, ...
std::string g_ready_file;

// Writes the next ready file of the sequence.
void announce_next() {
  ++g_announced;
  announce_ready(g_announced == 1 ? g_ready_file
                                  : g_ready_file + "." + std::to_string(g_announced));
}
std::string g_main_name;  // file name of PATH

bool g_late_event = false;  // the armed commit's page 1: visible before its IN_MODIFY
std::string g_main_path;

sqlite3_file* real_of(sqlite3_file* file) { return reinterpret_cast<PausingFile*>(file)->real; }

// Makes `amount` bytes at `offset` (page-aligned) of the main database visible as a write would,
// with no event: writes through a shared map queue no IN_MODIFY. The descriptor is never
// closed: closing any descriptor of the file would drop every POSIX lock the process holds on
// it, SQLite's included.
void write_through_a_map(const void* data, int amount, sqlite3_int64 offset) {
  static const int fd = ::open(g_main_path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) die("late-event: open");
  void* map = ::mmap(nullptr, static_cast<std::size_t>(amount), PROT_READ | PROT_WRITE, MAP_SHARED,
                     fd, offset);
  if (map == MAP_FAILED) die("late-event: mmap");
  std::memcpy(map, data, static_cast<std::size_t>(amount));
  ::munmap(map, static_cast<std::size_t>(amount));
}

// Waits for SIGUSR1; a stop signal meanwhile ends the process at once, mid-commit (the
// journal stays hot, as after a crash).
void pause_until_resumed() {
  announce_next();
  sigset_t signals = stop_signals();
  sigaddset(&signals, SIGUSR1);
  int received = 0;
  while (sigwait(&signals, &received) != 0) {
  }
  if (received != SIGUSR1) std::_Exit(3);
}

// The next write to the main database becomes visible (through a shared map), then the owner
// pauses before the write that queues its IN_MODIFY (see g_late_event).
bool g_late_first_write = false;

int pausing_write(sqlite3_file* file, const void* data, int amount, sqlite3_int64 offset) {
  auto* self = reinterpret_cast<PausingFile*>(file);
  if (self->main_database && g_late_first_write) {
    g_late_first_write = false;
    write_through_a_map(data, amount, offset);
    pause_until_resumed();
    return self->real->pMethods->xWrite(self->real, data, amount, offset);
  }
  const bool watched = self->main_database && g_commit_armed;
  if (watched && g_pauses_done == 0) {
    g_pauses_done = 1;
    pause_until_resumed();
    if (g_single_pause) g_pauses_done = 2;
  }
  if (watched && g_pauses_done == 1 && offset == 0 && g_late_event) {
    // Simulates the kernel's order inside one pwrite(): the page reaches the page cache
    // (visible to every reader) before fsnotify_modify() queues IN_MODIFY, and the writer may
    // sleep in between (balance_dirty_pages_ratelimited(), preemption). A writable map makes
    // the page visible with no event; the pwrite() after the pause queues it.
    write_through_a_map(data, amount, offset);
    g_pauses_done = 2;
    pause_until_resumed();
    return self->real->pMethods->xWrite(self->real, data, amount, offset);
  }
  const int rc = self->real->pMethods->xWrite(self->real, data, amount, offset);
  if (watched && g_pauses_done == 1 && (offset == 0 || g_page_one_written)) {
    if (g_page_one_written) --g_writes_after_page_one;
    g_page_one_written = true;
    if (g_writes_after_page_one <= 0) {
      g_pauses_done = 2;
      pause_until_resumed();
    }
  }
  return rc;
}

int pausing_close(sqlite3_file* file) {
  sqlite3_file* real = real_of(file);
  return real->pMethods != nullptr ? real->pMethods->xClose(real) : SQLITE_OK;
}
int pausing_read(sqlite3_file* f, void* data, int amount, sqlite3_int64 offset) {
  return real_of(f)->pMethods->xRead(real_of(f), data, amount, offset);
}
int pausing_truncate(sqlite3_file* f, sqlite3_int64 size) {
  return real_of(f)->pMethods->xTruncate(real_of(f), size);
}
bool g_sync_armed = false;  // pause once at the main database's sync in a commit
// Pause once at the journal's first sync in a commit: SQLite syncs the journal's records
// before it writes the header that makes the journal hot, and on a slow disk a reader that
// looks then finds SQLite's EXCLUSIVE lock held and no hot journal, as an owner in
// locking_mode=EXCLUSIVE shows between its commits.
bool g_journal_sync_armed = false;
int pausing_sync(sqlite3_file* f, int flags) {
  if (g_journal_sync_armed && reinterpret_cast<PausingFile*>(f)->main_journal) {
    g_journal_sync_armed = false;
    pause_until_resumed();
  }
  const int rc = real_of(f)->pMethods->xSync(real_of(f), flags);
  if (g_sync_armed && reinterpret_cast<PausingFile*>(f)->main_database) {
    g_sync_armed = false;
    pause_until_resumed();  // every page of the commit written and synced, journal still hot
  }
  return rc;
}
int pausing_file_size(sqlite3_file* f, sqlite3_int64* size) {
  return real_of(f)->pMethods->xFileSize(real_of(f), size);
}
int pausing_lock(sqlite3_file* f, int level) {
  return real_of(f)->pMethods->xLock(real_of(f), level);
}
int pausing_unlock(sqlite3_file* f, int level) {
  return real_of(f)->pMethods->xUnlock(real_of(f), level);
}
int pausing_check_reserved(sqlite3_file* f, int* out) {
  return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}
int pausing_file_control(sqlite3_file* f, int op, void* arg) {
  return real_of(f)->pMethods->xFileControl(real_of(f), op, arg);
}
int pausing_sector_size(sqlite3_file* f) { return real_of(f)->pMethods->xSectorSize(real_of(f)); }
int pausing_device_characteristics(sqlite3_file* f) {
  return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}

const sqlite3_io_methods kPausingMethods = {1,
                                            pausing_close,
                                            pausing_read,
                                            pausing_write,
                                            pausing_truncate,
                                            pausing_sync,
                                            pausing_file_size,
                                            pausing_lock,
                                            pausing_unlock,
                                            pausing_check_reserved,
                                            pausing_file_control,
                                            pausing_sector_size,
                                            pausing_device_characteristics,
                                            nullptr,
                                            nullptr,
                                            nullptr,
                                            nullptr,
                                            nullptr,
                                            nullptr};

int pausing_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags,
                 int* out_flags) {
  auto* self = reinterpret_cast<PausingFile*>(file);
  self->real = reinterpret_cast<sqlite3_file*>(self + 1);
  // Only PATH itself (an attached database is a main-database file too).
  const std::string opened = name != nullptr ? name : "";
  self->main_database =
      (flags & SQLITE_OPEN_MAIN_DB) != 0 && opened.size() >= g_main_name.size() &&
      opened.compare(opened.size() - g_main_name.size(), std::string::npos, g_main_name) == 0;
  self->main_journal = (flags & SQLITE_OPEN_MAIN_JOURNAL) != 0 &&
                       opened.size() >= g_main_name.size() + 8 &&
                       opened.compare(opened.size() - g_main_name.size() - 8, std::string::npos,
                                      g_main_name + "-journal") == 0;
  self->base.pMethods = nullptr;
  const int rc = g_real_vfs->xOpen(g_real_vfs, name, self->real, flags, out_flags);
  // SQLite calls xClose only when pMethods is set; set it whenever the real file needs one.
  if (self->real->pMethods != nullptr) self->base.pMethods = &kPausingMethods;
  return rc;
}

void register_pausing_vfs() {
  g_real_vfs = sqlite3_vfs_find(nullptr);
  if (g_real_vfs == nullptr) die("pause-in-commit: no default VFS");
  g_pausing_vfs = *g_real_vfs;
  g_pausing_vfs.zName = "pausing";
  g_pausing_vfs.szOsFile = static_cast<int>(sizeof(PausingFile)) + g_real_vfs->szOsFile;
  g_pausing_vfs.xOpen = pausing_open;
  g_pausing_vfs.pNext = nullptr;
  if (sqlite3_vfs_register(&g_pausing_vfs, 1) != SQLITE_OK) die("pause-in-commit: register VFS");
}

// Leaves locking_mode=EXCLUSIVE and reads, which lets go of SQLite's lock (as a program
// that closes would).
void let_go_of_the_lock(Database& db) {
  expect_pragma(db, "locking_mode=NORMAL", "normal");
  db.exec("SELECT count(*) FROM t;");
}

// The end of a pause-in-commit variant: announces its last state, holds until stopped.
int announce_and_hold(Database& db) {
  announce_next();
  wait_for_stop();
  db.close();
  return 0;
}

// `variant`: "" (journal_mode=PERSIST), "exclusive" (locking_mode=EXCLUSIVE, journal_mode=
// DELETE; after the paused commit, a second one that SQLite does not count in the change
// counter), "attached" (journal_mode=DELETE; the transaction also writes PATH-aux attached,
// so its journal names a super-journal).
// Runs `sql` as one transaction whose COMMIT pauses twice (see pausing_write()).
void commit_with_pauses(Database& db, const std::string& sql) {
  db.exec("BEGIN; " + sql);
  g_pauses_done = 0;
  g_page_one_written = false;
  g_commit_armed = true;
  db.exec("COMMIT");
  g_commit_armed = false;
  if (g_pauses_done != 2) die("pause-in-commit: the commit did not pause at both points");
}

// Commits `sql` as one transaction, pausing once: before its first write to the database,
// its journal synced (hot, with its record count).
void commit_pausing_before_its_writes(Database& db, const std::string& sql) {
  db.exec("BEGIN; " + sql);
  g_pauses_done = 0;
  g_page_one_written = false;
  g_single_pause = true;
  g_commit_armed = true;
  db.exec("COMMIT");
  g_commit_armed = false;
  g_single_pause = false;
  if (g_pauses_done == 0) die("pause-in-uncounted: the commit wrote nothing to the database");
}

// Enters locking_mode=EXCLUSIVE with a first commit, which SQLite counts, so that the next
// ones are not, and commits again; from the first commit under the lock on, the journal is
// kept open, its header zeroed as each transaction ends. Then idles, holding the lock (FILE).
// (Each commit inserts a row into a table of its own: an UPDATE that sets a value to itself
// writes nothing.)
void enter_exclusive_locking_mode_idle(Database& db) {
  db.exec("CREATE TABLE IF NOT EXISTS k(x)");
  expect_pragma(db, "locking_mode=EXCLUSIVE", "exclusive");
  db.exec("INSERT INTO k VALUES(1)");
  db.exec("INSERT INTO k VALUES(2)");
  pause_until_resumed();  // FILE
}

// The start of the pause-in-*uncounted* variants: N rows, a cache that holds a commit whole
// (no spill: one burst per commit), then idle under locking_mode=EXCLUSIVE (FILE).
void rows_then_exclusive_idle(Database& db, const Arguments& args) {
  create_table(db);
  insert_rows(db, args.rows, true);
  db.exec("PRAGMA cache_size=-65536");
  enter_exclusive_locking_mode_idle(db);
}

// SQL selecting the third quarter of the rows, after a first condition.
std::string and_in_third_quarter(const Arguments& args) {
  return " AND id > " + std::to_string(args.rows / 2) +
         " AND id <= " + std::to_string(args.rows * 3 / 4) + ";";
}

int pause_in_commit(const Arguments& args, const std::string& variant) {
  sigset_t resume;
  sigemptyset(&resume);
  sigaddset(&resume, SIGUSR1);
  sigprocmask(SIG_BLOCK, &resume, nullptr);
  register_pausing_vfs();
  g_ready_file = args.ready;
  g_main_name = args.db.substr(args.db.find_last_of('/') + 1);
  Database db(args.db);
  if (variant == "exclusive" || variant == "attached" || variant == "free-and-reuse" ||
      variant == "spill-after" || variant == "two-in-place" || variant == "chunk-shrink-regrow" ||
      variant == "exclusive-late" || variant == "exclusive-late-release" ||
      variant == "exclusive-synced-release" || variant == "exclusive-late-event" ||
      variant == "exclusive-late-event-control" || variant.rfind("uncounted", 0) == 0 ||
      variant == "counted-then-uncounted" || variant == "unjournaled-then-uncounted" ||
      variant == "small-uncounted" || variant == "small-counted" ||
      variant == "free-and-reuse-then-third" || variant == "free-and-grow" ||
      variant == "uncounted-unseen" || variant == "uncounted-then-late-counted" ||
      variant == "journal-sync") {
    expect_pragma(db, "journal_mode=DELETE", "delete");
  } else if (variant == "unjournaled") {
    // Nothing on disk shows the commit in progress: only the EXCLUSIVE lock it holds. Paused
    // after a data page too, so that a copy taken there has part of the commit's rows.
    expect_pragma(db, "journal_mode=OFF", "off");
    g_writes_after_page_one = 1;
  } else {
    expect_pragma(db, "journal_mode=PERSIST", "persist");
  }
  db.exec("PRAGMA synchronous=FULL");
  if (variant == "free-and-reuse" || variant == "uncounted-free-and-reuse" ||
      variant == "free-and-reuse-then-third" || variant == "free-and-grow") {
    // SQLite's default (Debian builds it with secure_delete on): freed pages are then left as
    // they are instead of being zeroed, and so not journaled.
    db.exec("PRAGMA secure_delete=OFF");
    // Blobs of 20000 bytes live mostly in overflow pages; h fingerprints each blob's first
    // and last bytes, so a row whose overflow chain holds another blob's pages shows.
    db.exec("CREATE TABLE IF NOT EXISTS b(id INTEGER PRIMARY KEY, payload BLOB, h TEXT)");
    for (long done = 0; done < args.rows; done += 100) {
      db.exec(
          "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)"
          " INSERT INTO b(payload) SELECT randomblob(20000) FROM n;"
          " UPDATE b SET h = hex(substr(payload, 1, 8)) || hex(substr(payload, 19993, 8))"
          " WHERE h IS NULL; COMMIT;");
    }
    // T1 frees the even rows' overflow pages (freeing a page does not journal it); T2 takes
    // those pages from the freelist for new blobs (a page free when a transaction starts is
    // not journaled either).
    const std::string refill =
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < " +
        std::to_string(variant == "free-and-grow" ? args.rows : args.rows / 2) +
        ") INSERT INTO b(payload) SELECT randomblob(20000) FROM n;"
        " UPDATE b SET h = hex(substr(payload, 1, 8)) || hex(substr(payload, 19993, 8))"
        " WHERE h IS NULL;";
    if (variant == "free-and-reuse-then-third") {
      db.exec("PRAGMA cache_size=-131072");
      enter_exclusive_locking_mode_idle(db);
      commit_with_pauses(db, "DELETE FROM b WHERE id % 2 = 0;");  // FILE.2, FILE.3
      commit_with_pauses(db, refill);                             // FILE.4, FILE.5
      pause_until_resumed();                                      // FILE.6
      // In place, the same sizes: no page is taken or freed, page 1 is not written.
      db.exec(
          "BEGIN; UPDATE k SET x = x + 100;"
          " UPDATE b SET h = printf('%-32s', 'T3') WHERE id = (SELECT max(id) FROM b); COMMIT;");
      return announce_and_hold(db);
    }
    if (variant == "uncounted-free-and-reuse" || variant == "free-and-grow") {
      // Under locking_mode=EXCLUSIVE, but counted: each changes page 1's freelist count.
      db.exec("PRAGMA cache_size=-131072");  // no spill: one burst per commit
      enter_exclusive_locking_mode_idle(db);
      commit_with_pauses(db, "DELETE FROM b WHERE id % 2 = 0;");  // FILE.2, FILE.3
      commit_with_pauses(db, refill);                             // FILE.4, FILE.5
      return announce_and_hold(db);                               // FILE.6
    }
    commit_with_pauses(db, "DELETE FROM b WHERE id % 2 = 0;");
    commit_with_pauses(db, refill);
    return announce_and_hold(db);
  }
  if (variant == "unjournaled-then-uncounted" || variant == "uncounted-then-unjournaled") {
    g_main_path = args.db;
    rows_then_exclusive_idle(db, args);  // FILE
    const std::string third_quarter = and_in_third_quarter(args);
    if (variant == "unjournaled-then-uncounted") {
      expect_pragma(db, "journal_mode=OFF", "off");
      db.exec("UPDATE t SET v = 'UNJ' || substr(v, 4) WHERE id <= 8 OR id > " +
              std::to_string(args.rows - 8) + ";");
      expect_pragma(db, "journal_mode=DELETE", "delete");
    }
    commit_pausing_before_its_writes(
        db, "UPDATE t SET v = 'rewritten ' || v WHERE id % 8 = 0" + third_quarter);  // FILE.2
    if (variant == "uncounted-then-unjournaled") {
      expect_pragma(db, "journal_mode=OFF", "off");
      g_late_first_write = true;  // FILE.3
      db.exec("UPDATE t SET v = 'UNJ' || substr(v, 4) WHERE id > " +
              std::to_string(args.rows - 40) + ";");
    }
    return announce_and_hold(db);
  }
  if (variant == "uncounted-unseen") {
    create_table(db);
    insert_rows(db, args.rows, true);
    db.exec("PRAGMA cache_size=-131072");
    enter_exclusive_locking_mode_idle(db);  // FILE
    db.exec("UPDATE t SET v = 'ROW' || substr(v, 4) WHERE id <= 200 OR id > " +
            std::to_string(args.rows - 200) + ";");
    return announce_and_hold(db);  // FILE.2
  }
  if (variant == "uncounted-then-late-counted") {
    // helper-32: a chain of ONE counted commit, followed from the first look, whose page 1
    // is visible before its IN_MODIFY; an uncounted commit U before it, unseen.
    g_main_path = args.db;
    create_table(db);
    insert_rows(db, args.rows, true);
    db.exec("PRAGMA cache_size=-131072");   // no spill: one burst per commit
    enter_exclusive_locking_mode_idle(db);  // FILE
    db.exec("UPDATE t SET v = 'ROW' || substr(v, 4) WHERE id <= 200 OR id > " +
            std::to_string(args.rows - 200) + ";");
    db.exec("BEGIN; UPDATE t SET v = 'x' || v WHERE id = 2; ROLLBACK;");  // counts the next
    g_late_event = true;
    commit_with_pauses(db, "UPDATE t SET v = 'rewritten ' || v WHERE id % 8 = 0 AND id > " +
                               std::to_string(args.rows / 4) + " AND id <= " +
                               std::to_string(args.rows / 2) + ";");  // FILE.2, FILE.3
    g_late_event = false;
    return announce_and_hold(db);  // FILE.4
  }
  if (variant == "journal-sync") {
    create_table(db);
    insert_rows(db, args.rows, true);
    pause_until_resumed();  // FILE
    g_journal_sync_armed = true;
    db.exec("BEGIN; UPDATE t SET v = 'ROW' || substr(v, 4) WHERE id % 8 = 0; COMMIT;");  // FILE.2
    if (g_journal_sync_armed) die("pause-in-journal-sync: the commit never synced its journal");
    return announce_and_hold(db);  // FILE.3
  }
  if (variant == "small-uncounted" || variant == "small-counted") {
    // Pages of 1024 bytes, so that a commit of two rows has a journal shorter than 4096 bytes
    // (a header sector of 512, then 1032 a record). T1 rewrites rows 1 and N in place: counted
    // for a plain owner (page 1 journaled too: 3608 bytes), uncounted under
    // locking_mode=EXCLUSIVE (2576 bytes).
    db.exec("PRAGMA page_size=1024");
    create_table(db);
    insert_rows(db, args.rows, true);
    db.exec("PRAGMA cache_size=-65536");
    const std::string rows_1_and_n =
        "UPDATE t SET v = 'ROW' || substr(v, 4) WHERE id = 1 OR id = " + std::to_string(args.rows) +
        ";";
    if (variant == "small-counted") {
      pause_until_resumed();                 // FILE
      commit_with_pauses(db, rows_1_and_n);  // FILE.2, FILE.3
    } else {
      enter_exclusive_locking_mode_idle(db);               // FILE
      commit_pausing_before_its_writes(db, rows_1_and_n);  // FILE.2
    }
    return announce_and_hold(db);
  }
  if (variant == "counted-then-uncounted") {
    rows_then_exclusive_idle(db, args);  // FILE
    commit_with_pauses(                  // FILE.2, FILE.3: appends, so it writes page 1 (counted)
        db,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)"
        " INSERT INTO t(v) SELECT 'new ' || i || ' ' || hex(randomblob(400)) FROM n;");
    commit_pausing_before_its_writes(  // FILE.4
        db, "UPDATE t SET v = 'ROW' || substr(v, 4) WHERE id > " +
                std::to_string(args.rows * 3 / 4) + " AND id <= " + std::to_string(args.rows) +
                ";");
    return announce_and_hold(db);  // FILE.5
  }
  if (variant == "uncounted" || variant == "uncounted-missed") {
    rows_then_exclusive_idle(db, args);  // FILE
    const std::string third_quarter = and_in_third_quarter(args);
    commit_pausing_before_its_writes(
        db, "UPDATE t SET v = 'rewritten ' || v WHERE id % 8 = 0" + third_quarter);  // FILE.2
    if (variant == "uncounted-missed") {
      db.exec("UPDATE t SET v = 'mid ' || v WHERE id % 8 = 1" + third_quarter);
    }
    commit_pausing_before_its_writes(  // FILE.3
        db, "UPDATE t SET v = 'ROW' || substr(v, 4) WHERE id > " +
                std::to_string(args.rows * 3 / 4) + ";");
    return announce_and_hold(db);  // FILE.4
  }
  if (variant == "exclusive-synced-release") {
    // The first commit under locking_mode=EXCLUSIVE (counted) pauses after all its database
    // writes and their sync, before its journal ends (FILE); on SIGUSR1 it ends, a second
    // commit (uncounted) rewrites rows past 8000, and the lock is let go (FILE.2).
    create_table(db);
    insert_rows(db, args.rows, true);
    db.exec("PRAGMA cache_size=-65536");  // no spill: one burst per commit
    expect_pragma(db, "locking_mode=EXCLUSIVE", "exclusive");
    db.exec("BEGIN; UPDATE t SET v = 'rewritten ' || v WHERE id % 8 = 0 AND id <= 4000;");
    g_sync_armed = true;
    db.exec("COMMIT");
    if (g_sync_armed) die("exclusive-synced-release: the commit did not pause at its sync");
    db.exec("UPDATE t SET v = 'ROW' || substr(v, 4) WHERE id > 8000;");
    let_go_of_the_lock(db);
    return announce_and_hold(db);  // FILE.2
  }
  if (variant == "exclusive-late-event" || variant == "exclusive-late-event-control") {
    // Idle, no lock (FILE). Then under locking_mode=EXCLUSIVE: T1 (counted, paused as
    // pause-in-commit: FILE.2, FILE.3); U, uncounted, rewrites the last third of the rows
    // 'row' -> 'ROW'; a rollback (SQLite counts the next commit again); T2 (counted)
    // rewrites every 8th row of 4000 < id <= 8000, pausing before its first write (FILE.4)
    // and with its page 1 in the page cache but its IN_MODIFY not yet queued (FILE.5).
    g_main_path = args.db;
    create_table(db);
    insert_rows(db, args.rows, true);
    db.exec("PRAGMA cache_size=-131072");
    pause_until_resumed();  // FILE
    expect_pragma(db, "locking_mode=EXCLUSIVE", "exclusive");
    commit_with_pauses(db, "UPDATE t SET v = 'rewritten ' || v WHERE id % 8 = 0 AND id <= 4000;");
    db.exec("UPDATE t SET v = 'ROW' || substr(v, 4) WHERE id > " +
            std::to_string(args.rows * 2 / 3) + ";");
    db.exec("BEGIN; UPDATE t SET v = 'x' || v WHERE id = 2; ROLLBACK;");
    g_late_event = variant == "exclusive-late-event";
    commit_with_pauses(db,
                       "UPDATE t SET v = 'second ' || v WHERE id % 8 = 0 AND id > 4000 "
                       "AND id <= 8000;");
    g_late_event = false;
    // Then it lets go of the lock, so that no look after T2 sees it.
    let_go_of_the_lock(db);
    return announce_and_hold(db);  // FILE.6
  }
  if (variant == "exclusive-late" || variant == "exclusive-late-release") {
    // Idle at the first look (no lock held); then the first commit under locking_mode=
    // EXCLUSIVE, which SQLite counts, and a second one, same length, that it does not.
    create_table(db);
    insert_rows(db, args.rows, true);
    pause_until_resumed();  // FILE: idle, no lock held
    if (variant == "exclusive-late-release") db.exec("PRAGMA cache_size=-65536");
    expect_pragma(db, "locking_mode=EXCLUSIVE", "exclusive");
    commit_with_pauses(db, "UPDATE t SET v = 'rewritten ' || v WHERE id % 8 = 0 AND id <= 4000;");
    db.exec("UPDATE t SET v = 'ROW' || substr(v, 4) WHERE id > 8000;");
    if (variant == "exclusive-late-release") {
      // (A cache that holds the second commit: spilling, it would be refused for its many
      // bursts, and the test would not test the one burst too many.)
      // Then it leaves exclusive locking mode, as a program that closes would: the lock is
      // gone before the backup's next look, and nothing in a header shows the second commit.
      let_go_of_the_lock(db);
    }
    return announce_and_hold(db);  // FILE.4
  }
  if (variant == "chunk-shrink-regrow") {
    // The file grows in 32 MiB chunks (SQLITE_FCNTL_CHUNK_SIZE): a commit that shrinks the
    // database (auto_vacuum) leaves the file as long as it was, so the journals' original
    // sizes (the file's) do not show it. T1 deletes the last quarter of the rows, T2 appends
    // as many new ones where they were, unjournaled (past the database's end).
    db.exec("PRAGMA auto_vacuum=FULL; PRAGMA secure_delete=OFF");
    int chunk = 32 << 20;
    if (sqlite3_file_control(db.handle(), "main", SQLITE_FCNTL_CHUNK_SIZE, &chunk) != SQLITE_OK) {
      die("chunk-shrink-regrow: SQLITE_FCNTL_CHUNK_SIZE");
    }
    create_table(db);
    insert_rows(db, args.rows, true);
    commit_with_pauses(db, "DELETE FROM t WHERE id > " + std::to_string(args.rows * 3 / 4) + ";");
    commit_with_pauses(
        db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < " +
                std::to_string(args.rows / 4) +
                ") INSERT INTO t(v) SELECT 'new ' || i || ' ' || hex(randomblob(400)) FROM n;");
    return announce_and_hold(db);
  }
  // auto_vacuum must be chosen before the first table: the shrink variant's commit then moves
  // pages from the end into freed ones and cuts the file.
  if (variant == "shrink") db.exec("PRAGMA auto_vacuum=FULL; PRAGMA secure_delete=OFF");
  create_table(db);
  insert_rows(db, args.rows, true);
  if (variant == "two-in-place") {
    // A cache that holds the whole transaction: a commit that spills pages writes the database
    // in many bursts, and the backup then refuses it (see validate::WriteHistory).
    db.exec("PRAGMA cache_size=-65536");
    commit_with_pauses(db, "UPDATE t SET v = 'ROW' || substr(v, 4) WHERE id % 8 = 0;");
    commit_with_pauses(db, "UPDATE t SET v = 'ROW' || substr(v, 4) WHERE id % 8 = 1;");
    return announce_and_hold(db);
  }
  if (variant == "attached") {
    db.exec("ATTACH '" + args.db +
            "-aux' AS aux; CREATE TABLE IF NOT EXISTS aux.u(x);"
            "INSERT INTO aux.u VALUES(1)");
  }
  // Entering exclusive mode only now makes the paused commit the first under the lock: the
  // one SQLite counts.
  if (variant == "exclusive") expect_pragma(db, "locking_mode=EXCLUSIVE", "exclusive");
  std::string transaction = "UPDATE t SET v = 'rewritten ' || v WHERE id % 8 = 0;";
  if (variant == "shrink")
    transaction = "DELETE FROM t WHERE id > " + std::to_string(args.rows / 4) + ";";
  if (variant == "attached") transaction += "UPDATE aux.u SET x = x + 1;";
  commit_with_pauses(db, transaction);
  if (variant == "spill-after") {
    // T2 spills uncommitted pages into PATH (a tiny cache), waits, then rolls back.
    db.exec("PRAGMA cache_size=10; BEGIN; UPDATE t SET v = 'uncommitted ' || v WHERE id % 8 = 1;");
    pause_until_resumed();  // FILE.3: T2's pages are in PATH, its journal hot
    db.exec("ROLLBACK");
  }
  // Same connection, same lock, no rollback since the counted commit, and nothing that
  // changes page 1 (rows keep their length, so the file does not grow): SQLite leaves the
  // change counter as it is for this one.
  if (variant == "exclusive") {
    db.exec("UPDATE t SET v = 'ROW' || substr(v, 4) WHERE id % 8 = 1;");
  }
  announce_next();
  wait_for_stop();
  db.close();
  return 0;
}

// A transaction T that writes and is rolled back, then another, T2, that commits: T's journal
// ends without T committing, and the change counter still moves by one.
int rollback_then_commit(const Arguments& args) {
  sigset_t resume;
  sigemptyset(&resume);
  sigaddset(&resume, SIGUSR1);
  sigprocmask(SIG_BLOCK, &resume, nullptr);
  g_ready_file = args.ready;
  Database db(args.db);
  expect_pragma(db, "journal_mode=DELETE", "delete");
  create_table(db);
  insert_rows(db, args.rows, true);
  // synchronous=OFF: the journal is hot from T's first write (SQLite writes its magic at once).
  db.exec("PRAGMA synchronous=OFF");
  db.exec("BEGIN; INSERT INTO t(v) SELECT v FROM t WHERE id <= 50;");
  pause_until_resumed();  // FILE: T's journal is hot
  db.exec("ROLLBACK");
  db.exec("UPDATE t SET v = 'rewritten ' || v WHERE id % 8 = 0;");
  announce_next();  // FILE.2: T rolled back, T2 committed
  wait_for_stop();
  db.close();
  return 0;
}

int stomp(const Arguments& args) {
  if (::access(args.db.c_str(), F_OK) != 0) {
    Database db(args.db);
    create_table(db);
    insert_rows(db, args.rows, false);
  }
  const int fd = ::open(args.db.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) die("open " + args.db + ": " + std::strerror(errno));
  unsigned char counter[4];
  if (::pread(fd, counter, sizeof counter, 24) != static_cast<ssize_t>(sizeof counter)) {
    die("read the change counter of " + args.db + ": " + std::strerror(errno));
  }
  std::uint32_t value = (std::uint32_t{counter[0]} << 24) | (std::uint32_t{counter[1]} << 16) |
                        (std::uint32_t{counter[2]} << 8) | std::uint32_t{counter[3]};
  // Handlers instead of sigwait: the loop must keep running until the flag turns.
  sigset_t set = stop_signals();
  struct sigaction action {};
  action.sa_handler = request_stop;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  sigprocmask(SIG_UNBLOCK, &set, nullptr);
  // Every attempt of a backup must see the counter move, however the scheduler shares the
  // cores: a spinning loop that gets no CPU for one whole attempt (a few ms: one time slice
  // when it shares a core with the backup on an older scheduler) lets that attempt validate.
  // As a real-time task (root) it preempts everything else every 100 us instead; otherwise
  // it spins.
  sched_param real_time_priority{};
  real_time_priority.sched_priority = 1;
  const bool real_time = ::sched_setscheduler(0, SCHED_FIFO, &real_time_priority) == 0;
  announce_ready(args.ready);
  while (g_stop_requested == 0) {
    ++value;
    counter[0] = static_cast<unsigned char>(value >> 24);
    counter[1] = static_cast<unsigned char>(value >> 16);
    counter[2] = static_cast<unsigned char>(value >> 8);
    counter[3] = static_cast<unsigned char>(value);
    if (::pwrite(fd, counter, sizeof counter, 24) != static_cast<ssize_t>(sizeof counter) &&
        errno != EINTR) {
      die("write the change counter of " + args.db + ": " + std::strerror(errno));
    }
    if (real_time) {
      const timespec pause{0, 100'000};
      ::clock_nanosleep(CLOCK_MONOTONIC, 0, &pause, nullptr);  // EINTR: the stop signal
    }
  }
  ::close(fd);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Arguments args = parse(argc, argv);
  const sigset_t set = stop_signals();
  sigprocmask(SIG_BLOCK, &set, nullptr);
  if (args.mode == "wal-hold") return hold_wal(args, false);
  if (args.mode == "exclusive") return hold_wal(args, true);
  if (args.mode == "rollback-exclusive") return hold_rollback_exclusive(args, "delete");
  if (args.mode == "rollback-exclusive-unjournaled") return hold_rollback_exclusive(args, "off");
  if (args.mode == "exclusive-commit-on-signal") {
    return commit_on_each_signal_exclusive(args, "delete");
  }
  if (args.mode == "exclusive-wal-commit-on-signal") {
    return commit_on_each_signal_exclusive(args, "wal");
  }
  if (args.mode == "hot-journal") return die_mid_transaction(args);
  if (args.mode == "open-transaction") return hold_open_transaction(args);
  if (args.mode == "commit-on-signal") return commit_on_signal(args);
  // The pause-in-* modes: one function, told the variant.
  static const std::map<std::string, std::string, std::less<>> kPausingVariants = {
      {"pause-in-commit", ""},
      {"pause-in-commit-exclusive", "exclusive"},
      {"pause-in-commit-attached", "attached"},
      {"pause-in-two-commits", "free-and-reuse"},
      {"pause-in-free-and-reuse-then-third", "free-and-reuse-then-third"},
      {"pause-in-free-and-grow", "free-and-grow"},
      {"pause-in-uncounted-unseen", "uncounted-unseen"},
      {"pause-in-shrinking-commit", "shrink"},
      {"pause-in-commit-then-spill", "spill-after"},
      {"pause-in-unjournaled-commit", "unjournaled"},
      {"pause-in-two-in-place-commits", "two-in-place"},
      {"pause-in-exclusive-late", "exclusive-late"},
      {"pause-in-exclusive-late-release", "exclusive-late-release"},
      {"pause-in-exclusive-late-event", "exclusive-late-event"},
      {"pause-in-exclusive-late-event-control", "exclusive-late-event-control"},
      {"pause-in-exclusive-synced-release", "exclusive-synced-release"},
      {"pause-in-chunk-shrink-regrow", "chunk-shrink-regrow"},
      {"pause-in-uncounted-commits", "uncounted"},
      {"pause-in-uncounted-commits-missed", "uncounted-missed"},
      {"pause-in-unjournaled-then-uncounted", "unjournaled-then-uncounted"},
      {"pause-in-uncounted-then-unjournaled", "uncounted-then-unjournaled"},
      {"pause-in-uncounted-then-late-counted", "uncounted-then-late-counted"},
      {"pause-in-counted-then-uncounted", "counted-then-uncounted"},
      {"pause-in-uncounted-free-and-reuse", "uncounted-free-and-reuse"},
      {"pause-in-small-uncounted", "small-uncounted"},
      {"pause-in-small-counted", "small-counted"},
      {"pause-in-journal-sync", "journal-sync"},
  };
  if (const auto variant = kPausingVariants.find(args.mode); variant != kPausingVariants.end()) {
    return pause_in_commit(args, variant->second);
  }
  if (args.mode == "rollback-then-commit") return rollback_then_commit(args);
  if (args.mode == "stomp") return stomp(args);
  usage_error("unknown mode " + args.mode);
}
