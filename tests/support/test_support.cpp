#include "test_support.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/magic.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace sqlite_backup::testing {

namespace {

std::string errno_text(int error) { return std::strerror(error); }

[[noreturn]] void fail(const std::string& operation, const fs::path& path, int error) {
  throw std::runtime_error(operation + " " + path.string() + ": " + errno_text(error));
}

// Resolved once per process: tests point TMPDIR at a private folder to watch the library's
// temporaries, and our own helpers (child output, captures) must not land there.
fs::path temp_base() {
  static const fs::path base = [] {
    const char* value = std::getenv("TMPDIR");
    return value != nullptr && *value != '\0' ? fs::path(value) : fs::path("/tmp");
  }();
  return base;
}

fs::path make_temp_dir(const fs::path& parent, const std::string& prefix) {
  std::string pattern = (parent / (prefix + "-XXXXXX")).string();
  if (::mkdtemp(pattern.data()) == nullptr) fail("mkdtemp", pattern, errno);
  return pattern;
}

// Makes everything under `root` writable and searchable again so remove_all can work
// after a test made parts read-only or unreadable.
void restore_permissions(const fs::path& root) noexcept {
  std::error_code ignored;
  fs::permissions(root, fs::perms::owner_all, fs::perm_options::add, ignored);
  for (auto it = fs::recursive_directory_iterator(
           root, fs::directory_options::skip_permission_denied, ignored);
       !ignored && it != fs::recursive_directory_iterator(); it.increment(ignored)) {
    if (it->is_symlink(ignored)) continue;
    fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ignored);
  }
}

// argv as execv wants it; built before fork so the child only calls async-signal-safe code.
struct Argv {
  explicit Argv(const std::vector<std::string>& args) : storage(args) {
    if (storage.empty()) throw std::invalid_argument("run a process: empty argv");
    for (auto& arg : storage) pointers.push_back(arg.data());
    pointers.push_back(nullptr);
  }
  std::vector<std::string> storage;
  std::vector<char*> pointers;
};

pid_t spawn(const Argv& argv, const fs::path& out_path, const fs::path& err_path) {
  const std::string out = out_path.string();
  const std::string err = err_path.string();
  const pid_t pid = ::fork();
  if (pid < 0) fail("fork for", argv.storage[0], errno);
  if (pid == 0) {
    const int in_fd = ::open("/dev/null", O_RDONLY);
    const int out_fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int err_fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in_fd < 0 || out_fd < 0 || err_fd < 0) ::_exit(126);
    ::dup2(in_fd, STDIN_FILENO);
    ::dup2(out_fd, STDOUT_FILENO);
    ::dup2(err_fd, STDERR_FILENO);
    // A clean signal state: the test runner may have changed dispositions or the mask.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::signal(SIGPIPE, SIG_DFL);
    ::execv(argv.pointers[0], argv.pointers.data());
    ::_exit(127);
  }
  return pid;
}

ProcessResult result_from_status(int status) {
  ProcessResult result;
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.term_signal = WTERMSIG(status);
  return result;
}

template <typename Bind>
std::optional<typename std::invoke_result_t<Bind, sqlite3_stmt*>> query_one(sqlite3* db,
                                                                            const std::string& sql,
                                                                            Bind&& read_column) {
  sqlite3_stmt* statement = nullptr;
  std::optional<std::invoke_result_t<Bind, sqlite3_stmt*>> value;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &statement, nullptr) == SQLITE_OK &&
      sqlite3_step(statement) == SQLITE_ROW) {
    value = read_column(statement);
  }
  sqlite3_finalize(statement);
  return value;
}

template <typename Bind>
auto query_one_file(const fs::path& database, const std::string& sql, Bind&& read_column) {
  sqlite3* db = nullptr;
  decltype(query_one(db, sql, read_column)) value;
  if (sqlite3_open_v2(database.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    value = query_one(db, sql, read_column);
  }
  sqlite3_close(db);
  return value;
}

long long read_int(sqlite3_stmt* statement) { return sqlite3_column_int64(statement, 0); }
std::string read_text(sqlite3_stmt* statement) {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(statement, 0));
  return text != nullptr ? std::string(text) : std::string();
}

}  // namespace

// ---- TempDir ------------------------------------------------------------------------

TempDir::TempDir(const std::string& prefix) : path_(make_temp_dir(temp_base(), prefix)) {}

TempDir::~TempDir() {
  restore_permissions(path_);
  std::error_code ignored;
  fs::remove_all(path_, ignored);
}

// ---- Processes ----------------------------------------------------------------------

std::string describe(const ProcessResult& result) {
  std::string text = "exit code " + std::to_string(result.exit_code);
  if (result.term_signal != 0)
    text += " (killed by signal " + std::to_string(result.term_signal) + ")";
  text +=
      "\n--- stdout ---\n" +
      (result.out.size() > 2000 ? "(" + std::to_string(result.out.size()) + " bytes)" : result.out);
  text += "\n--- stderr ---\n" + result.err;
  return text;
}

ProcessResult run_process(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  ChildProcess child(argv);
  return child.wait(timeout);
}

ChildProcess::ChildProcess(const std::vector<std::string>& argv) {
  const Argv args(argv);
  pid_ = spawn(args, output_dir_ / "stdout", output_dir_ / "stderr");
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && !reaped_) {
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
}

void ChildProcess::send_signal(int signal_number) const {
  if (!reaped_) ::kill(pid_, signal_number);
}

bool ChildProcess::running() {
  if (reaped_) return false;
  int status = 0;
  const pid_t done = ::waitpid(pid_, &status, WNOHANG);
  if (done == pid_) {
    reaped_ = true;
    status_ = status;
    return false;
  }
  return true;
}

ProcessResult ChildProcess::wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool killed_by_timeout = false;
  while (running()) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      killed_by_timeout = true;
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      reaped_ = true;
      status_ = status;
      break;
    }
    // Polling the child's state (not hoping for an interleaving): it is ending or working.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ProcessResult result = result_from_status(status_);
  result.out = read_file(output_dir_ / "stdout");
  result.err = read_file(output_dir_ / "stderr");
  if (killed_by_timeout) result.err += "\n[test support: killed after the timeout]";
  return result;
}

std::string ChildProcess::stderr_so_far() const {
  std::error_code ignored;
  if (!fs::exists(output_dir_ / "stderr", ignored)) return {};
  return read_file(output_dir_ / "stderr");
}

bool wait_for_file(const fs::path& path, std::chrono::milliseconds timeout,
                   ChildProcess* must_stay_alive) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::error_code ignored;
    if (fs::exists(path, ignored)) return true;
    if (must_stay_alive != nullptr && !must_stay_alive->running()) return fs::exists(path, ignored);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

OwnerProcess::OwnerProcess(const fs::path& owner_exe, const fs::path& database,
                           const std::string& mode, int rows)
    : child_({owner_exe.string(), "--db", database.string(), "--mode", mode, "--rows",
              std::to_string(rows), "--ready", (ready_dir_ / "ready").string()}) {
  ready_ = wait_for_file(ready_dir_ / "ready", std::chrono::seconds(60), &child_);
}

bool OwnerProcess::resume_until(const std::string& suffix) {
  child_.send_signal(SIGUSR1);
  return wait_until(suffix);
}

void OwnerProcess::resume() { child_.send_signal(SIGUSR1); }

bool OwnerProcess::wait_until(const std::string& suffix) {
  return wait_for_file(ready_dir_ / ("ready" + suffix), std::chrono::seconds(60), &child_);
}

OwnerProcess::~OwnerProcess() {
  if (stopped_) return;
  child_.send_signal(SIGTERM);
  child_.wait(std::chrono::seconds(20));
}

ProcessResult OwnerProcess::kill_hard() {
  stopped_ = true;
  child_.send_signal(SIGKILL);
  return child_.wait();
}

ProcessResult OwnerProcess::stop() {
  stopped_ = true;
  child_.send_signal(SIGTERM);
  return child_.wait(std::chrono::seconds(20));
}

// ---- Databases ----------------------------------------------------------------------

void exec_sql(const fs::path& database, const std::string& sql) {
  sqlite3* db = nullptr;
  if (sqlite3_open(database.c_str(), &db) != SQLITE_OK) {
    const std::string reason = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    throw std::runtime_error("open " + database.string() + ": " + reason);
  }
  char* message = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message);
  const std::string reason = message != nullptr ? message : "";
  sqlite3_free(message);
  sqlite3_close(db);
  if (rc != SQLITE_OK) throw std::runtime_error("run SQL on " + database.string() + ": " + reason);
}

void create_database(const fs::path& database, int rows) {
  exec_sql(database,
           "PRAGMA journal_mode=DELETE;"
           "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT);"
           "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < " +
               std::to_string(rows) + ") INSERT INTO t(v) SELECT 'row ' || i FROM n WHERE " +
               std::to_string(rows) + " > 0;");
}

std::optional<long long> query_int(const fs::path& database, const std::string& sql) {
  return query_one_file(database, sql, read_int);
}
std::optional<std::string> query_text(const fs::path& database, const std::string& sql) {
  return query_one_file(database, sql, read_text);
}
std::optional<long long> query_int(sqlite3* db, const std::string& sql) {
  return query_one(db, sql, read_int);
}
std::optional<std::string> query_text(sqlite3* db, const std::string& sql) {
  return query_one(db, sql, read_text);
}

long long count_rows(const fs::path& database, const std::string& table) {
  const auto count = query_int(database, "SELECT count(*) FROM \"" + table + "\"");
  if (!count)
    throw std::runtime_error("count rows of " + table + " in " + database.string() +
                             ": query failed");
  return *count;
}

long long count_rows(sqlite3* db, const std::string& table) {
  const auto count = query_int(db, "SELECT count(*) FROM \"" + table + "\"");
  if (!count) {
    throw std::runtime_error("count rows of " + table + ": " +
                             (db != nullptr ? sqlite3_errmsg(db) : "no connection"));
  }
  return *count;
}

namespace {
constexpr const char* kDigestSql =
    "SELECT coalesce(group_concat(id || ':' || v, '|'), '') FROM (SELECT id, v FROM t ORDER BY id)";
}

std::string table_digest(const fs::path& database) {
  const auto digest = query_text(database, kDigestSql);
  if (!digest) throw std::runtime_error("read table t of " + database.string() + ": query failed");
  return *digest;
}

std::string table_digest(sqlite3* db) {
  const auto digest = query_text(db, kDigestSql);
  if (!digest)
    throw std::runtime_error(std::string("read table t: ") +
                             (db != nullptr ? sqlite3_errmsg(db) : "no connection"));
  return *digest;
}

// ---- Files and folders --------------------------------------------------------------

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("read " + path.string() + ": cannot open");
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void write_file(const fs::path& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  out.close();
  if (!out) throw std::runtime_error("write " + path.string() + ": failed");
}

bool direct_writes_possible(const fs::path& folder) {
  // tmpfs accepts O_DIRECT but keeps the data in the page cache all the same.
  struct statfs filesystem {};
  if (::statfs(folder.c_str(), &filesystem) != 0 || filesystem.f_type == TMPFS_MAGIC) return false;
  const fs::path probe = folder / ".direct-io-probe";
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  ::close(fd);
  fs::remove(probe);
  return true;
}

std::string random_bytes(std::size_t size) {
  std::mt19937_64 generator(std::random_device{}());
  std::string bytes(size, '\0');
  for (auto& byte : bytes) byte = static_cast<char>(generator() & 0xFF);
  return bytes;
}

FolderState folder_state(const fs::path& folder) {
  FolderState state;
  for (const auto& entry : fs::directory_iterator(folder)) {
    struct stat info {};
    if (::lstat(entry.path().c_str(), &info) != 0) fail("lstat", entry.path(), errno);
    EntryState& item = state[entry.path().filename().string()];
    item.type = fs::symlink_status(entry.path()).type();
    item.size = static_cast<std::uintmax_t>(info.st_size);
    item.mtime_ns =
        static_cast<std::int64_t>(info.st_mtim.tv_sec) * 1'000'000'000 + info.st_mtim.tv_nsec;
    item.mode = info.st_mode;
    item.inode = info.st_ino;
  }
  return state;
}

std::string describe_difference(const FolderState& before, const FolderState& after) {
  std::string text;
  for (const auto& [name, state] : before) {
    const auto found = after.find(name);
    if (found == after.end()) {
      text += "removed: " + name + "\n";
    } else if (!(found->second == state)) {
      text += "changed: " + name + " (size " + std::to_string(state.size) + " -> " +
              std::to_string(found->second.size) + ", mtime_ns " + std::to_string(state.mtime_ns) +
              " -> " + std::to_string(found->second.mtime_ns) + ", inode " +
              std::to_string(state.inode) + " -> " + std::to_string(found->second.inode) + ")\n";
    }
  }
  for (const auto& [name, state] : after) {
    if (before.count(name) == 0) text += "new: " + name + "\n";
  }
  return text;
}

std::vector<std::string> list_names(const fs::path& folder) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(folder))
    names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// ---- Privileges and mounts ----------------------------------------------------------

bool is_root() { return ::geteuid() == 0; }

std::string result_as_nobody(const std::function<std::string()>& call,
                             const fs::path& result_file) {
  const pid_t child = ::fork();
  if (child < 0) return "fork failed";
  if (child == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(90);
    try {
      write_file(result_file, call());
    } catch (...) {
      ::_exit(91);
    }
    ::_exit(0);
  }
  int status = 0;
  if (::waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return "child status " + std::to_string(status);
  }
  std::string result = read_file(result_file);
  fs::remove(result_file);
  return result;
}

ScopedEnv::ScopedEnv(std::string name, const std::optional<std::string>& value)
    : name_(std::move(name)) {
  if (const char* old = std::getenv(name_.c_str()); old != nullptr) previous_ = old;
  if (value) {
    ::setenv(name_.c_str(), value->c_str(), 1);
  } else {
    ::unsetenv(name_.c_str());
  }
}

ScopedEnv::~ScopedEnv() {
  if (previous_) {
    ::setenv(name_.c_str(), previous_->c_str(), 1);
  } else {
    ::unsetenv(name_.c_str());
  }
}

ScopedUmask::ScopedUmask(mode_t mask) : previous_(::umask(mask)) {}
ScopedUmask::~ScopedUmask() { ::umask(previous_); }

std::optional<TmpfsMount> TmpfsMount::try_mount(std::uint64_t size_bytes) {
  if (!is_root()) return std::nullopt;
  fs::path parent = make_temp_dir(temp_base(), "sqlite_backup_tmpfs");
  fs::path mount_point = parent / "mnt";
  std::error_code ignored;
  fs::create_directory(mount_point, ignored);
  const std::string options = "size=" + std::to_string(size_bytes) + ",mode=0755";
  if (::mount("tmpfs", mount_point.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
    fs::remove_all(parent, ignored);
    return std::nullopt;
  }
  return TmpfsMount(std::move(parent), std::move(mount_point));
}

TmpfsMount::TmpfsMount(TmpfsMount&& other) noexcept
    : parent_(std::move(other.parent_)), mount_point_(std::move(other.mount_point_)) {
  other.parent_.clear();
  other.mount_point_.clear();
}

TmpfsMount& TmpfsMount::operator=(TmpfsMount&& other) noexcept {
  if (this != &other) {
    unmount();
    parent_ = std::move(other.parent_);
    mount_point_ = std::move(other.mount_point_);
    other.parent_.clear();
    other.mount_point_.clear();
  }
  return *this;
}

TmpfsMount::~TmpfsMount() { unmount(); }

void TmpfsMount::unmount() noexcept {
  if (mount_point_.empty()) return;
  // MNT_DETACH: even if a leaked descriptor keeps it busy, the folder is freed and the
  // memory goes away with the last user.
  ::umount2(mount_point_.c_str(), MNT_DETACH);
  std::error_code ignored;
  fs::remove_all(parent_, ignored);
  parent_.clear();
  mount_point_.clear();
}

std::optional<XfsLoopMount> XfsLoopMount::try_mount(std::string& why_not) {
  if (!is_root()) {
    why_not = "not root: only root can loop-mount a filesystem image";
    return std::nullopt;
  }
  if (std::system("command -v mkfs.xfs >/dev/null 2>&1") != 0) {
    why_not = "mkfs.xfs is not installed (Debian package xfsprogs)";
    return std::nullopt;
  }
  fs::path parent = make_temp_dir(temp_base(), "sqlite_backup_xfs");
  fs::path mount_point = parent / "mnt";
  const fs::path image = parent / "xfs.img";
  std::error_code ignored;
  fs::create_directory(mount_point, ignored);
  // 320 MiB: mkfs.xfs's smallest filesystem is 300 MiB. Sparse: it costs what is written.
  const std::string make = "truncate -s 320M '" + image.string() +
                           "' && mkfs.xfs -q -m reflink=1 '" + image.string() + "' >/dev/null 2>&1";
  const std::string mount =
      "mount -o loop '" + image.string() + "' '" + mount_point.string() + "' >/dev/null 2>&1";
  if (std::system(make.c_str()) != 0) {
    why_not = "mkfs.xfs -m reflink=1 failed on an image in " + parent.string();
  } else if (std::system(mount.c_str()) != 0) {
    why_not = "mount -o loop of an XFS image failed (no loop device here?)";
  } else {
    return XfsLoopMount(std::move(parent), std::move(mount_point));
  }
  fs::remove_all(parent, ignored);
  return std::nullopt;
}

XfsLoopMount::XfsLoopMount(XfsLoopMount&& other) noexcept
    : parent_(std::move(other.parent_)), mount_point_(std::move(other.mount_point_)) {
  other.parent_.clear();
  other.mount_point_.clear();
}

XfsLoopMount::~XfsLoopMount() {
  if (mount_point_.empty()) return;
  // MNT_DETACH never fails on a busy mount; the loop device (mounted with autoclear) goes
  // with the last user.
  ::umount2(mount_point_.c_str(), MNT_DETACH);
  std::error_code ignored;
  fs::remove_all(parent_, ignored);
}

bool TmpfsMount::remount_read_only() {
  return ::mount("tmpfs", mount_point_.c_str(), "tmpfs",
                 MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) == 0;
}

// ---- CaptureFd ----------------------------------------------------------------------

namespace {
// Output sitting in stdio/iostream buffers belongs to whichever descriptor is current when
// it is flushed: flush at both edges so the capture holds exactly what was written inside.
void flush_buffered_output() {
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
}
}  // namespace

CaptureFd::CaptureFd(int fd) : fd_(fd) {
  const fs::path file = dir_ / "captured";
  const int target = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (target < 0) fail("open capture file", file, errno);
  flush_buffered_output();
  saved_ = ::dup(fd_);
  if (saved_ < 0 || ::dup2(target, fd_) < 0) {
    const int error = errno;
    ::close(target);
    fail("redirect descriptor " + std::to_string(fd_) + " to", file, error);
  }
  ::close(target);
}

CaptureFd::~CaptureFd() {
  if (saved_ >= 0) {
    ::dup2(saved_, fd_);
    ::close(saved_);
  }
}

std::string CaptureFd::finish() {
  flush_buffered_output();
  if (saved_ >= 0) {
    ::dup2(saved_, fd_);
    ::close(saved_);
    saved_ = -1;
  }
  return read_file(dir_ / "captured");
}

}  // namespace sqlite_backup::testing
