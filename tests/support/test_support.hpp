// Helpers shared by the test executables: temporary folders, child processes, real SQLite
// databases, folder snapshots and (as root) small tmpfs mounts. Everything here reports
// failures by throwing std::runtime_error with the operation, the path and the reason, so a
// broken fixture fails the test loudly instead of letting it pass vacuously.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;  // <sqlite3.h>

namespace sqlite_backup::testing {

namespace fs = std::filesystem;

// A fresh folder under $TMPDIR (or /tmp; read once, at the first use, so that tests can
// later point TMPDIR at a folder of their own for the library under test), removed with everything
// in it on destruction (permissions are restored first, so tests may chmod 000 things inside).
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "sqlite_backup_test");
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();

  [[nodiscard]] const fs::path& path() const noexcept { return path_; }
  [[nodiscard]] fs::path operator/(const fs::path& name) const { return path_ / name; }

 private:
  fs::path path_;
};

// ---- Processes --------------------------------------------------------------------

struct ProcessResult {
  int exit_code = -1;   // exit status, or -1 when a signal ended the process
  int term_signal = 0;  // the signal that ended it, 0 when it exited
  std::string out;
  std::string err;
};

// "exit code 3 ... stderr: ..." for assertion messages.
std::string describe(const ProcessResult& result);

// Runs argv[0] (a path, no PATH lookup) with the rest as arguments, stdin from /dev/null,
// and waits for it, capturing stdout and stderr. Kills it after `timeout`.
ProcessResult run_process(const std::vector<std::string>& argv,
                          std::chrono::milliseconds timeout = std::chrono::seconds(120));

// A running child process; stdout and stderr go to files inside a private folder so that a
// chatty child can never block on a full pipe. The destructor SIGKILLs and reaps it if the
// test did not wait for it.
class ChildProcess {
 public:
  explicit ChildProcess(const std::vector<std::string>& argv);
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  void send_signal(int signal_number) const;
  // Whether it is still running (reaps it if it ended; wait() then returns its result).
  [[nodiscard]] bool running();
  // Waits for the process to end (SIGKILL after `timeout`) and returns its status and output.
  ProcessResult wait(std::chrono::milliseconds timeout = std::chrono::seconds(60));
  // What it wrote to stderr so far (for failure messages).
  [[nodiscard]] std::string stderr_so_far() const;

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  TempDir output_dir_{"sqlite_backup_child"};
};

// Polls for `path` to exist (an owner process writes it once it reached its state).
// Returns false after `timeout`, or as soon as `must_stay_alive` (if given) has died.
bool wait_for_file(const fs::path& path,
                   std::chrono::milliseconds timeout = std::chrono::seconds(60),
                   ChildProcess* must_stay_alive = nullptr);

// A running tests/support/sqlite_owner holding `database` in `mode` (see its --help). The
// ready file lives in a private folder, never beside the database, so the source folder only
// holds what the owner's SQLite made. The constructor waits for the state; check ready().
// The destructor stops it with SIGTERM (SIGKILL if it lingers).
class OwnerProcess {
 public:
  OwnerProcess(const fs::path& owner_exe, const fs::path& database, const std::string& mode,
               int rows);
  OwnerProcess(const OwnerProcess&) = delete;
  OwnerProcess& operator=(const OwnerProcess&) = delete;
  ~OwnerProcess();

  [[nodiscard]] bool ready() const noexcept { return ready_; }
  [[nodiscard]] pid_t pid() const noexcept { return child_.pid(); }
  // SIGKILL and reap: the owner dies without closing anything (hot journals, leftover WALs).
  ProcessResult kill_hard();
  // SIGTERM and reap: the owner closes its connection cleanly.
  ProcessResult stop();
  // stderr so far, for failure messages.
  [[nodiscard]] std::string output() const { return child_.stderr_so_far(); }
  // For owners that pause in steps (pause-in-commit): sends SIGUSR1 and waits for the ready
  // file with `suffix` (".2", ".3") that announces the next state. False if it never came.
  bool resume_until(const std::string& suffix);
  // The two halves of resume_until(), for a state that comes only once the test has done
  // something else: SIGUSR1 now, and later the wait for the ready file with `suffix`.
  void resume();
  bool wait_until(const std::string& suffix);

 private:
  TempDir ready_dir_{"sqlite_backup_owner"};
  ChildProcess child_;
  bool ready_ = false;
  bool stopped_ = false;
};

// ---- Databases --------------------------------------------------------------------

// Runs `sql` (several statements allowed) on `database`, creating it if needed.
void exec_sql(const fs::path& database, const std::string& sql);

// Creates `database` (journal_mode=DELETE, closed afterwards, no side files) with table
// t(id INTEGER PRIMARY KEY, v TEXT) holding `rows` rows: v = 'row <id>'.
void create_database(const fs::path& database, int rows);

// One value of one row, read through a read-only connection; nullopt when the query
// fails or returns no row.
std::optional<long long> query_int(const fs::path& database, const std::string& sql);
std::optional<std::string> query_text(const fs::path& database, const std::string& sql);
// Same, on an open connection (e.g. an in-memory backup).
std::optional<long long> query_int(::sqlite3* db, const std::string& sql);
std::optional<std::string> query_text(::sqlite3* db, const std::string& sql);

// count(*) of `table`; throws when it cannot be read.
long long count_rows(const fs::path& database, const std::string& table = "t");
long long count_rows(::sqlite3* db, const std::string& table = "t");

// Every row of t as "id:v|id:v|..." in id order: equal digests mean equal data.
std::string table_digest(const fs::path& database);
std::string table_digest(::sqlite3* db);

// ---- Files and folders ------------------------------------------------------------

std::string read_file(const fs::path& path);
void write_file(const fs::path& path, const std::string& contents);
std::string random_bytes(std::size_t size);
// Whether files in `folder` can be opened for direct I/O (O_DIRECT): some filesystems refuse.
bool direct_writes_possible(const fs::path& folder);

struct EntryState {
  fs::file_type type = fs::file_type::none;
  std::uintmax_t size = 0;
  std::int64_t mtime_ns = 0;
  std::uint32_t mode = 0;
  std::uint64_t inode = 0;
  bool operator==(const EntryState&) const = default;
};
using FolderState = std::map<std::string, EntryState>;

// Every entry of `folder` (hidden ones too), not following symlinks.
FolderState folder_state(const fs::path& folder);
// Human-readable difference between two states, empty when they are equal.
std::string describe_difference(const FolderState& before, const FolderState& after);
// Sorted entry names of `folder`.
std::vector<std::string> list_names(const fs::path& folder);

// ---- Privileges and mounts --------------------------------------------------------

bool is_root();

// Runs `call` in a child process as the unprivileged user nobody (65534, no groups): root
// reads any file and any process's descriptors. Returns what `call` returned (passed back
// through `result_file`, which nobody must be able to create), or why the child failed.
// Needs root.
std::string result_as_nobody(const std::function<std::string()>& call, const fs::path& result_file);

// Sets (or, with nullopt, unsets) an environment variable for its lifetime.
class ScopedEnv {
 public:
  ScopedEnv(std::string name, const std::optional<std::string>& value);
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
  ~ScopedEnv();

 private:
  std::string name_;
  std::optional<std::string> previous_;
};

// Sets the process umask for its lifetime, restores the old one afterwards.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask);
  ScopedUmask(const ScopedUmask&) = delete;
  ScopedUmask& operator=(const ScopedUmask&) = delete;
  ~ScopedUmask();

 private:
  mode_t previous_;
};

// A tmpfs mounted on a fresh folder; unmounted (lazily, so it never throws) and removed
// on destruction. Only root can make one: try_mount returns nullopt otherwise.
class TmpfsMount {
 public:
  static std::optional<TmpfsMount> try_mount(std::uint64_t size_bytes);
  TmpfsMount(TmpfsMount&& other) noexcept;
  TmpfsMount& operator=(TmpfsMount&& other) noexcept;
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;
  ~TmpfsMount();

  [[nodiscard]] const fs::path& path() const noexcept { return mount_point_; }
  [[nodiscard]] fs::path operator/(const fs::path& name) const { return mount_point_ / name; }
  // Makes the whole filesystem read-only (root included: writes fail with EROFS).
  // Returns false when the kernel refuses.
  bool remount_read_only();

 private:
  TmpfsMount(fs::path parent, fs::path mount_point)
      : parent_(std::move(parent)), mount_point_(std::move(mount_point)) {}
  void unmount() noexcept;
  fs::path parent_;
  fs::path mount_point_;
};

// An XFS made with reflink support in a sparse image file and loop-mounted on a fresh folder;
// unmounted (lazily) and removed on destruction. Needs root, mkfs.xfs (xfsprogs) and a loop
// device: try_mount returns nullopt otherwise, with the reason in `why_not`.
class XfsLoopMount {
 public:
  static std::optional<XfsLoopMount> try_mount(std::string& why_not);
  XfsLoopMount(XfsLoopMount&& other) noexcept;
  XfsLoopMount& operator=(XfsLoopMount&&) = delete;
  XfsLoopMount(const XfsLoopMount&) = delete;
  XfsLoopMount& operator=(const XfsLoopMount&) = delete;
  ~XfsLoopMount();

  [[nodiscard]] const fs::path& path() const noexcept { return mount_point_; }
  [[nodiscard]] fs::path operator/(const fs::path& name) const { return mount_point_ / name; }

 private:
  XfsLoopMount(fs::path parent, fs::path mount_point)
      : parent_(std::move(parent)), mount_point_(std::move(mount_point)) {}
  fs::path parent_;
  fs::path mount_point_;
};

// Redirects a file descriptor (e.g. 1, stdout) into a private file while alive; finish()
// restores it and returns what was written.
class CaptureFd {
 public:
  explicit CaptureFd(int fd);
  CaptureFd(const CaptureFd&) = delete;
  CaptureFd& operator=(const CaptureFd&) = delete;
  ~CaptureFd();
  std::string finish();

 private:
  int fd_;
  int saved_ = -1;
  TempDir dir_{"sqlite_backup_capture"};
};

}  // namespace sqlite_backup::testing
