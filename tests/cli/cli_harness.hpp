// Helpers for the command-line tests: run the real sqlite_backup binary as a child process
// whose stderr we can watch line by line while it runs (pipes, or a pseudo-terminal), and
// temporary folders that may live in memory. Databases, files and owner processes come from
// tests/support. Header-only, used by tests/cli/*.cpp only.
#pragma once

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

extern char** environ;

namespace cli_test {

namespace fs = std::filesystem;

// From tests/support: real databases, files and folders, owner processes.
using sqlite_backup::testing::count_rows;
using sqlite_backup::testing::create_database;
using sqlite_backup::testing::exec_sql;
using sqlite_backup::testing::list_names;
using sqlite_backup::testing::OwnerProcess;
using sqlite_backup::testing::query_int;
using sqlite_backup::testing::query_text;
using sqlite_backup::testing::read_file;
using sqlite_backup::testing::write_file;

inline bool integrity_ok(const fs::path& database) {
  return query_text(database, "PRAGMA integrity_check") == "ok";
}

inline const fs::path kCliExe = SQLITE_BACKUP_CLI_EXE;
inline const fs::path kOwnerExe = SQLITE_BACKUP_OWNER_EXE;

inline bool owner_available() { return !kOwnerExe.empty() && fs::exists(kOwnerExe); }

// A fresh folder, removed with everything in it at the end of the test. (Not tests/support's
// TempDir: some tests here need one on /dev/shm.)
class TempDir {
 public:
  TempDir() : TempDir(default_base()) {}
  explicit TempDir(const fs::path& base) {
    std::string templ = (base / "cli_test-XXXXXX").string();
    std::vector<char> buffer(templ.begin(), templ.end());
    buffer.push_back('\0');
    if (::mkdtemp(buffer.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = buffer.data();
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ignored);
    fs::remove_all(path_, ignored);
  }
  [[nodiscard]] const fs::path& path() const { return path_; }
  [[nodiscard]] fs::path operator/(const std::string& name) const { return path_ / name; }

  static fs::path default_base() {
    const char* base = std::getenv("TMPDIR");
    return base != nullptr && *base != '\0' ? fs::path(base) : fs::path("/tmp");
  }
  // /dev/shm when there is one: for tests that copy many megabytes many times, so that
  // they neither wait for a disk nor load it for everyone else.
  static fs::path memory_base() {
    std::error_code error;
    // Room for two stomp tests at once (each up to three 17 MB copies): a container's
    // /dev/shm can be as small as 64 MiB, and a full one would fail them with ENOSPC.
    constexpr std::uintmax_t kRoomNeeded = std::uintmax_t{256} << 20;
    if (fs::is_directory("/dev/shm", error) && ::access("/dev/shm", W_OK) == 0 &&
        fs::space("/dev/shm", error).available >= kRoomNeeded && !error) {
      return "/dev/shm";
    }
    return default_base();
  }

 private:
  fs::path path_;
};

// A fresh folder holding source.sqlite, a database with `rows` rows in t: where most tests
// start.
class SourceFolder : public TempDir {
 public:
  explicit SourceFolder(int rows) { create_database(*this / "source.sqlite", rows); }
  [[nodiscard]] std::string source() const { return (*this / "source.sqlite").string(); }
};

// A database of about `mib` MiB (64 KiB pages of zeroes: quick to write), with an empty t.
// Stomp tests use one: the longer each copy takes, the surer it is that the stomping owner
// writes during it even on a loaded machine, so that no attempt can come out clean.
inline constexpr int kStompedMib = 16;
inline void make_large_database(const fs::path& database, int mib) {
  exec_sql(database,
           "PRAGMA page_size = 65536; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
           "CREATE TABLE blobs(b BLOB);"
           "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < " +
               std::to_string(mib) + ") INSERT INTO blobs SELECT zeroblob(1048576) FROM n;");
}

// A large database in a fresh in-memory folder, beside an empty folder "out" to back it up
// into, with an owner stomping on its header so that no copy of it ever validates. Check
// owner_available() first, and owner().ready() before backing it up.
class StompedSource {
 public:
  StompedSource() : owner_(kOwnerExe, make_database(dir_), "stomp", 100) {}
  StompedSource(const StompedSource&) = delete;
  StompedSource& operator=(const StompedSource&) = delete;

  [[nodiscard]] const TempDir& dir() const { return dir_; }
  [[nodiscard]] fs::path out() const { return dir_ / "out"; }
  [[nodiscard]] std::string source() const { return (dir_ / "stomped.sqlite").string(); }
  [[nodiscard]] const OwnerProcess& owner() const { return owner_; }

 private:
  static fs::path make_database(const TempDir& dir) {
    fs::create_directory(dir / "out");
    make_large_database(dir / "stomped.sqlite", kStompedMib);
    return dir / "stomped.sqlite";
  }

  TempDir dir_{TempDir::memory_base()};  // declared first: the owner's database lives in it
  OwnerProcess owner_;
};

// Non-empty lines of `text` ('\r' also ends a line: progress bars redraw with it).
inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::string line;
  for (char c : text) {
    if (c == '\n' || c == '\r') {
      if (!line.empty()) lines.push_back(line);
      line.clear();
    } else {
      line += c;
    }
  }
  if (!line.empty()) lines.push_back(line);
  return lines;
}

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

struct Result {
  int exit_code = -1;  // the exit status, or -1 when killed by a signal
  int killed_by = 0;
  std::string out;
  std::string err;
};

struct RunSettings {
  std::map<std::string, std::string> environment;  // added to (or replacing) ours
  int stdout_fd = -1;                              // instead of a pipe, e.g. a terminal
  int stderr_fd = -1;
  std::chrono::seconds timeout{120};
  fs::path working_directory;        // empty: ours
  bool close_stdout = false;         // start the child without a descriptor 1 ...
  bool close_stderr = false;         // ... or 2
  std::vector<int> ignored_signals;  // started ignoring these (as nohup does SIGHUP)
  bool drop_root = false;  // as root, run the child as nobody (65534), without root's bypasses
  rlim_t file_size_limit = RLIM_INFINITY;   // RLIMIT_FSIZE of the child (`ulimit -f`), bytes
  rlim_t open_files_limit = RLIM_INFINITY;  // RLIMIT_NOFILE of the child (`ulimit -n`)
};

// A running child whose stdout and stderr we read through pipes (unless given other fds).
class Child {
 public:
  Child(const fs::path& program, const std::vector<std::string>& args,
        const RunSettings& settings = {})
      : timeout_(settings.timeout) {
    int out_pipe[2] = {-1, -1};
    int err_pipe[2] = {-1, -1};
    if (settings.stdout_fd < 0 && ::pipe2(out_pipe, O_CLOEXEC) != 0)
      throw std::runtime_error("pipe");
    if (settings.stderr_fd < 0 && ::pipe2(err_pipe, O_CLOEXEC) != 0)
      throw std::runtime_error("pipe");

    // Built before fork: the child only calls async-signal-safe functions.
    std::vector<std::string> env_storage;
    for (char** entry = environ; *entry != nullptr; ++entry) {
      const std::string text = *entry;
      const std::string name = text.substr(0, text.find('='));
      // The tests decide the log level themselves: an inherited one would change the output.
      if (name == "SQLITE_BACKUP_LOGS" || settings.environment.count(name) > 0) continue;
      env_storage.push_back(text);
    }
    for (const auto& [name, value] : settings.environment)
      env_storage.push_back(name + "=" + value);
    std::vector<char*> env;
    for (auto& entry : env_storage) env.push_back(entry.data());
    env.push_back(nullptr);
    std::vector<std::string> argv_storage{program.string()};
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& arg : argv_storage) argv.push_back(arg.data());
    argv.push_back(nullptr);

    const std::string working_directory = settings.working_directory.string();
    const std::vector<int> ignored_signals = settings.ignored_signals;
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      if (!working_directory.empty() && ::chdir(working_directory.c_str()) != 0) ::_exit(126);
      const int out_fd = settings.stdout_fd >= 0 ? settings.stdout_fd : out_pipe[1];
      const int err_fd = settings.stderr_fd >= 0 ? settings.stderr_fd : err_pipe[1];
      const int devnull = ::open("/dev/null", O_RDONLY);
      ::dup2(devnull, STDIN_FILENO);
      ::dup2(out_fd, STDOUT_FILENO);
      ::dup2(err_fd, STDERR_FILENO);
      // Fresh signal state: gtest or the parent may have changed dispositions.
      ::signal(SIGHUP, SIG_DFL);
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGQUIT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      ::signal(SIGPIPE, SIG_DFL);
      ::signal(SIGXFSZ, SIG_DFL);
      for (const int signal_number : ignored_signals) ::signal(signal_number, SIG_IGN);
      if (settings.file_size_limit != RLIM_INFINITY) {
        const struct rlimit limit { settings.file_size_limit, settings.file_size_limit };
        if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(124);
      }
      if (settings.open_files_limit != RLIM_INFINITY) {
        const struct rlimit limit { settings.open_files_limit, settings.open_files_limit };
        if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) ::_exit(124);
      }
      if (settings.close_stdout) ::close(STDOUT_FILENO);
      if (settings.close_stderr) ::close(STDERR_FILENO);
      if (settings.drop_root && ::getuid() == 0 &&
          (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0)) {
        ::_exit(125);
      }
      ::execve(argv[0], argv.data(), env.data());
      ::_exit(127);
    }
    if (settings.stdout_fd < 0) {
      ::close(out_pipe[1]);
      out_fd_ = out_pipe[0];
    }
    if (settings.stderr_fd < 0) {
      ::close(err_pipe[1]);
      err_fd_ = err_pipe[0];
    }
    started_ = std::chrono::steady_clock::now();
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_fd_ >= 0) ::close(out_fd_);
    if (err_fd_ >= 0) ::close(err_fd_);
  }

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] const std::string& err_so_far() const { return result_.err; }

  // Reads output until `done(stderr so far)` holds, the streams end, or the timeout passes.
  // Returns whether `done` held.
  bool read_until(const std::function<bool(const std::string&)>& done) {
    while (true) {
      if (done && done(result_.err)) return true;
      if (out_fd_ < 0 && err_fd_ < 0) return false;
      const auto left = timeout_ - (std::chrono::steady_clock::now() - started_);
      if (left <= std::chrono::seconds(0)) return false;
      std::vector<pollfd> fds;
      if (out_fd_ >= 0) fds.push_back({out_fd_, POLLIN, 0});
      if (err_fd_ >= 0) fds.push_back({err_fd_, POLLIN, 0});
      const int ready = ::poll(
          fds.data(), fds.size(),
          static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(left).count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return false;
      for (const auto& entry : fds) {
        if (entry.revents == 0) continue;
        char buffer[65536];
        const ssize_t got = ::read(entry.fd, buffer, sizeof buffer);
        const bool is_out = entry.fd == out_fd_;
        if (got > 0) {
          (is_out ? result_.out : result_.err).append(buffer, static_cast<std::size_t>(got));
        } else if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) {
          ::close(entry.fd);
          (is_out ? out_fd_ : err_fd_) = -1;
        }
      }
    }
  }

  void send(int signal_number) const { ::kill(pid_, signal_number); }

  // Reads everything, then reaps the child (killing it if it overstays the timeout).
  Result finish() {
    read_until({});
    int status = 0;
    while (true) {
      const pid_t done = ::waitpid(pid_, &status, WNOHANG);
      if (done == pid_) break;
      if (std::chrono::steady_clock::now() - started_ > timeout_) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        result_.err += "\n[test harness: killed after the timeout]";
        break;
      }
      // The streams are closed but the child has not exited yet (or it holds no pipes):
      // poll its state, it is about to end.
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    pid_ = -1;
    if (WIFEXITED(status)) result_.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) result_.killed_by = WTERMSIG(status);
    return result_;
  }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::chrono::seconds timeout_;
  std::chrono::steady_clock::time_point started_;
  Result result_;
};

inline Result run_cli(const std::vector<std::string>& args, const RunSettings& settings = {}) {
  Child child(kCliExe, args, settings);
  return child.finish();
}

inline std::string describe(const Result& result) {
  return "exit code " + std::to_string(result.exit_code) +
         (result.killed_by != 0 ? " (killed by signal " + std::to_string(result.killed_by) + ")"
                                : "") +
         "\n--- stdout ---\n" +
         (result.out.size() > 2000 ? "(" + std::to_string(result.out.size()) + " bytes)"
                                   : result.out) +
         "\n--- stderr ---\n" + result.err;
}

// The contract of every failure: exactly one line on stderr, "sqlite_backup: error: ...",
// naming `path`. Returns a description of what is wrong, empty when all is well.
inline std::string one_error_line_naming(const Result& result, const std::string& path) {
  const auto lines = lines_of(result.err);
  if (lines.size() != 1)
    return "expected exactly one line on stderr, got " + std::to_string(lines.size());
  if (lines[0].rfind("sqlite_backup: error: ", 0) != 0)
    return "the line does not start with 'sqlite_backup: error: '";
  if (!contains(lines[0], path)) return "the line does not name " + path;
  return {};
}

// The two checks every refusal makes: the documented exit code, and one error line on stderr
// naming `path`.
inline void expect_failure(const Result& result, int exit_code, const std::string& path) {
  EXPECT_EQ(result.exit_code, exit_code) << describe(result);
  EXPECT_EQ(one_error_line_naming(result, path), "") << describe(result);
}

}  // namespace cli_test
