// sqlite_backup: the command-line tool. A thin layer over <sqlite_backup/sqlite_backup.hpp>:
// it parses the arguments, applies the destination rules, draws progress, prints one line
// per outcome and maps errors to the documented exit codes (exit_code.hpp). Every snapshot
// decision belongs to the library.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <sqlite_backup/sqlite_backup.hpp>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "command_line.hpp"
#include "exit_code.hpp"
#include "interrupt.hpp"
#include "json_record.hpp"
#include "paths.hpp"
#include "progress_bar.hpp"

#ifndef SQLITE_BACKUP_VERSION
#define SQLITE_BACKUP_VERSION "unknown"
#endif

namespace sqlite_backup::cli {
namespace {

// --copy-retry's check. CLI11's Range answers "Value many not in range 1 to 2147483647" for a
// word as for a number: one message that fits both.
CLI::Validator attempt_count() {
  return {[](const std::string& input) -> std::string {
            int value = 0;
            const char* const end = input.data() + input.size();
            const auto [stop, error] = std::from_chars(input.data(), end, value);
            if (error == std::errc() && stop == end && value >= 1) return {};
            return fmt::format("'{}' is not a number of attempts (a whole number, 1 or more)",
                               input);
          },
          "N"};
}

namespace fs = std::filesystem;

constexpr const char* kStandardOutput = "-";

struct CommandLine {
  std::vector<std::string> sources;
  std::string destination;
  bool debug = false;
  // The reference's defaults, from Options.
  bool wal_checkpoint = Options{}.wal_checkpoint;
  bool copy_use_tempdir = Options{}.copy_use_tempdir;
  int copy_retry = Options{}.copy_retry;
  bool copy_retry_strict = Options{}.copy_retry_strict;
  bool sync = Options{}.durable;
  std::string verify;                       // "", "full" or "quick"
  std::string source_lock = "when-needed";  // never, when-needed or always
  bool progress = false;
  bool progress_given = false;  // false: decide by terminal and size
  bool json = false;
  // Not options: set by run_command_line() from who runs it and how.
  bool private_descriptor_table = Options{}.private_descriptor_table;
  bool stdout_closed = false;  // descriptor 1 was closed (see occupy_standard_descriptors())
};

// One backup's result, for the summary, --json and the exit code.
struct Outcome {
  std::string source;
  std::string destination;  // resolved; empty when refused before it was known
  std::optional<Report> report;
  std::optional<Failure> failure;
};

// A line on stderr. Nothing to be done when stderr cannot take it (closed, a full disk, a
// reader gone): the backup's outcome and exit code stand, so the failure is ignored rather
// than thrown (fmt::print would throw, ending a finished backup in std::terminate).
void print_to_stderr(const std::string& line) noexcept {
  (void)std::fwrite(line.data(), 1, line.size(), stderr);
  (void)std::fflush(stderr);
}

// one_line() again: a path in the message may hold a newline, and a failure is one line.
void print_error(const Failure& failure) {
  print_to_stderr(fmt::format("sqlite_backup: error: {}\n", one_line(failure.message)));
}

void print_warning(const std::string& message) {
  print_to_stderr(fmt::format("sqlite_backup: warning: {}\n", printable(message)));
}

// One --json record on stdout, flushed at once for whoever reads the pipe. False when stdout
// did not take it (a full disk, a closed pipe): the records are this command's output, so the
// caller fails the command.
bool print_json_record(const std::string& record) noexcept {
  const std::string line = record + "\n";
  const bool written = std::fwrite(line.data(), 1, line.size(), stdout) == line.size();
  return std::fflush(stdout) == 0 && written && std::ferror(stdout) == 0;
}

Failure json_output_failure() {
  return {kIo, fmt::format("cannot write the --json records to standard output: {}",
                           std::strerror(errno))};
}

const char* signal_name(int signal_number) {
  switch (signal_number) {
    case SIGHUP:
      return "SIGHUP";
    case SIGQUIT:
      return "SIGQUIT";
    case SIGTERM:
      return "SIGTERM";
    default:
      return "SIGINT";
  }
}

// CLI11's default help prints "[DESTINATION]" (it is parsed by hand, see parse()) and
// "{false}" after negatable flags; this shows the command as people type it.
class HelpFormatter : public CLI::Formatter {
 public:
  std::string make_usage(const CLI::App* /*app*/, std::string name) const override {
    return "Usage: " + name + " [OPTIONS] SOURCE_DATABASE... DESTINATION\n";
  }
  std::string make_option_name(const CLI::Option* option, bool is_positional) const override {
    std::string text = CLI::Formatter::make_option_name(option, is_positional);
    for (auto open = text.find('{'); open != std::string::npos; open = text.find('{')) {
      const auto close = text.find('}', open);
      text.erase(open, close == std::string::npos ? std::string::npos : close - open + 1);
    }
    return text;
  }
  // Wraps descriptions so that --help stays readable in 100 columns; CLI11 indents the
  // continuation lines to the description column.
  std::string make_option_desc(const CLI::Option* option) const override {
    constexpr std::size_t kWidth = 100 - 32;
    std::string wrapped;
    std::size_t line_length = 0;
    std::istringstream words(CLI::Formatter::make_option_desc(option));
    for (std::string word; words >> word;) {
      if (line_length > 0 && line_length + 1 + word.size() > kWidth) {
        wrapped += '\n';
        line_length = 0;
      } else if (line_length > 0) {
        wrapped += ' ';
        ++line_length;
      }
      wrapped += word;
      line_length += word.size();
    }
    return wrapped;
  }
};

constexpr const char* kDescription =
    "Takes a transaction-consistent snapshot of a live SQLite database that another program\n"
    "may be writing right now, without writing to it (and without locking it unless it must:\n"
    "see --source-lock), and writes the snapshot to DESTINATION (a single file in\n"
    "journal_mode=DELETE).\n";

constexpr const char* kFooter = R"(DESTINATION
  an existing folder  the snapshot goes to FOLDER/<source file name>, which must not exist
  a new path          its parent folder must exist
  an existing file    refused: sqlite_backup never overwrites
  -                   stream the finished database to stdout, e.g.
                        sqlite_backup places.sqlite - | zstd > places.sqlite.zst
                      (one source only; refused when stdout is a terminal; not with --json)
  The destination appears atomically (written under a temporary name beside it, synced
  unless --no-sync, renamed) with the source's read and write bits; after any failure nothing is
  left behind.

SEVERAL SOURCES
  sqlite_backup A.sqlite B.sqlite FOLDER backs each source up into FOLDER (which must exist)
  under the same rules, carries on past one that fails, prints a summary line, and exits
  nonzero if any failed: with the failures' exit code when they all share one, else 1.

ENVIRONMENT
  SQLITE_BACKUP_LOGS  log level when --debug is not given: 10 debug, 20 info,
                      30 warning (default), 40 error
  TMPDIR, TEMP, TMP   where - stages the snapshot before streaming it: the first in
                      which a folder can be made, else /tmp, /var/tmp, /usr/tmp or
                      the working folder

EXIT CODES
  0    success
  1    failure not listed below, and every refused destination (exists, missing parent,
       empty path, ...)
  2    usage error (bad flag, missing source, source is a folder, `-` to a terminal, ...)
  3    the source is not a usable database (not a database, truncated, schema unreadable)
  4    no copy in --copy-retry attempts could be proved one committed state: the source kept
       changing, or an owner in locking_mode=EXCLUSIVE hid its state (the line says which,
       and what to do); with --no-copy-retry-strict, the last copy was damaged and not kept
  5    I/O error reading the source or writing the destination (disk full, permission denied,
       source deleted meanwhile)
  6    --verify found the snapshot damaged, also a page it could not read (nothing is written)
  129, 130, 131, 143  interrupted by SIGHUP, SIGINT, SIGQUIT, SIGTERM (nothing is written;
       signals are honoured until the result is committed))";

void build_app(CLI::App& app, CommandLine& command) {
  app.formatter(std::make_shared<HelpFormatter>());
  app.get_formatter()->column_width(32);
  app.footer(kFooter);
  app.set_version_flag("--version", std::string("sqlite_backup ") + SQLITE_BACKUP_VERSION,
                       "Print the version and exit");
  app.set_help_flag("-h,--help", "Print this help and exit");

  // All paths land in `sources`; the last one is taken as DESTINATION after parsing
  // (CLI11 2.1 cannot put a single positional after a variadic one).
  app.add_option("SOURCE_DATABASE", command.sources,
                 "The database file(s) to back up (its -wal/-journal are found beside it)")
      ->type_name("");
  app.add_option("DESTINATION", command.destination,
                 "A new file, an existing folder, or - (see below)")
      ->type_name("");

  app.add_flag("--debug", command.debug,
               "Log at debug level on stderr: each file copied, each retry, each step "
               "(default: the level in SQLITE_BACKUP_LOGS)");
  app.add_flag("--wal-checkpoint,!--no-wal-checkpoint", command.wal_checkpoint,
               "Checkpoint the destination (wal_checkpoint(TRUNCATE)) so that no -wal/-shm is left "
               "beside it (default: on)");
  app.add_flag("--copy-use-tempdir,!--no-copy-use-tempdir", command.copy_use_tempdir,
               "Snapshot by copying the files privately (locking the source only as --source-lock "
               "says) (default: on); "
               "--no-copy-use-tempdir runs SQLite's backup API on the live database instead: "
               "it takes locks and may fail while the owner writes");
  app.add_option(
         "--copy-retry", command.copy_retry,
         "Copy the whole set of files (database, -wal, -journal) up to N times until one copy "
         "is a consistent state; N >= 1 (default: 100)")
      ->option_text("N")
      ->check(attempt_count());
  app.add_flag(
      "--copy-retry-strict,!--no-copy-retry-strict", command.copy_retry_strict,
      "Fail (exit 4) when no copy was consistent after --copy-retry attempts (default: on); "
      "--no-copy-retry-strict keeps the last copy with a warning once it opens and passes "
      "quick_check");
  app.add_flag(
         "--verify{full}", command.verify,
         "Check the snapshot before it is committed: --verify or --verify=full runs "
         "integrity_check, --verify=quick runs quick_check; a failure exits 6 and writes nothing "
         "(default: off)")
      ->check(CLI::IsMember({"full", "quick"}))
      ->option_text("[=full|quick]");
  app.add_option("--source-lock", command.source_lock,
                 "Cooperate with SQLite's locking as a reader would, writing nothing: hold a "
                 "shared lock on the source for one copy, so that the owner's commits (rollback "
                 "journal) or checkpoints (WAL) wait for it in their busy handler. when-needed: "
                 "only after a lock-free attempt failed (default); always: every attempt; "
                 "never: not at all (an owner that commits faster than one copy can then make "
                 "the backup give up)")
      ->check(CLI::IsMember({"never", "when-needed", "always"}))
      ->option_text("never|when-needed|always");
  app.add_flag("--sync,!--no-sync", command.sync,
               "Make the snapshot durable before exiting: fsync it and its folder (default: on); "
               "--no-sync still writes it atomically, but a crash soon after may lose it "
               "(for copies that are compressed, uploaded or discarded right away)");
  app.add_flag("--progress,!--no-progress", command.progress,
               "Draw a progress bar on stderr; only ever on a terminal (default: on for sources of "
               "64 MiB or more when stderr is a terminal)");
  app.add_flag(
      "--json", command.json,
      "Print one JSON object per named source on stdout (source, destination, bytes, pages, "
      "page_size, attempts, duration_s, verified, ok, error); not with -");
}

std::optional<Failure> parse(CLI::App& app, CommandLine& command, int argc, char** argv,
                             int& exit_now) {
  // "--copy-retry=" would take the next argument (a source) as its value, and "--verify="
  // would mean --verify=full: one of our options written with '=' and nothing after it is
  // refused (anything else ending in '=' is left to the parser: "---x=" is a path to it).
  for (int i = 1; i < argc; ++i) {
    const std::string_view argument = argv[i];
    if (argument == "--") break;
    if (argument.size() > 3 && argument.substr(0, 2) == "--" &&
        argument.find('=') == argument.size() - 1) {
      const std::string name(argument.substr(0, argument.size() - 1));
      if (app.get_option_no_throw(name) != nullptr) {
        return Failure{kUsage, fmt::format("{}= has nothing after '=': give it a value, or leave "
                                           "the option out (see --help)",
                                           name)};
      }
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& request) {
    exit_now = app.exit(request);
    return std::nullopt;
  } catch (const CLI::CallForVersion& request) {
    exit_now = app.exit(request);
    return std::nullopt;
  } catch (const CLI::ParseError& error) {
    return Failure{kUsage, one_line(error.what()) + " (see --help)"};
  }
  command.progress_given = app.get_option("--progress")->count() > 0;
  if (command.destination.empty() && !command.sources.empty()) {
    command.destination = command.sources.back();
    command.sources.pop_back();
  }
  if (command.sources.empty()) {
    return Failure{kUsage, "expected SOURCE_DATABASE... DESTINATION (see --help)"};
  }
  return std::nullopt;
}

Options options_from(const CommandLine& command) {
  Options options;
  options.wal_checkpoint = command.wal_checkpoint;
  options.copy_use_tempdir = command.copy_use_tempdir;
  options.copy_retry = command.copy_retry;
  options.copy_retry_strict = command.copy_retry_strict;
  options.durable = command.sync;
  options.source_lock = command.source_lock == "never"    ? SourceLock::never
                        : command.source_lock == "always" ? SourceLock::always
                                                          : SourceLock::when_needed;
  options.verify = command.verify == "quick"  ? Verify::quick
                   : command.verify == "full" ? Verify::full
                                              : Verify::none;
  options.cancel = &InterruptHandlers::cancel_flag();
  // Never replace: the library also refuses, atomically, a file that appears after our checks.
  options.overwrite = false;
  options.private_descriptor_table = command.private_descriptor_table;
  return options;
}

bool should_draw_progress(const CommandLine& command, const fs::path& source) {
  if (::isatty(STDERR_FILENO) != 1) return false;
  if (command.progress_given) return command.progress;
  // Debug log lines would tear a bar apart; small copies end before a bar helps.
  return !command.debug && database_files_size(source) >= kAutoProgressThreshold;
}

Failure interrupted_failure(const std::string& source, const std::string& destination,
                            bool streaming) {
  const int signal_number = InterruptHandlers::signal_number();
  std::string message = fmt::format("interrupted by {}: the backup of {} was stopped; ",
                                    signal_name(signal_number), display_path(source));
  message += streaming ? std::string("what reached stdout, if anything, is incomplete")
                       : fmt::format("nothing was written to {}", display_path(destination));
  return {exit_code_for_signal(signal_number), std::move(message)};
}

// The path a backup of `source` would have been written to, for --json records of
// refusals: FOLDER/<name> for a folder, else DESTINATION itself.
std::string intended_destination(const fs::path& source, const std::string& destination) {
  std::error_code error;
  const fs::path folder = destination;
  return fs::is_directory(folder, error) ? (folder / source.filename()).native() : destination;
}

Outcome back_up_one(const CommandLine& command, const std::string& source_argument) {
  Outcome outcome{source_argument, {}, {}, {}};
  const fs::path source = source_argument;
  const bool streaming = command.destination == kStandardOutput;
  // Checked here, per source, rather than for the whole command: a missing source, a folder
  // or a FIFO is this source's outcome, and --json prints a record for it like any other.
  if (auto refusal = check_source(source)) {
    if (!streaming) outcome.destination = intended_destination(source, command.destination);
    outcome.failure = std::move(refusal);
    return outcome;
  }
  if (!streaming) {
    auto resolved = resolve_destination(source, command.destination);
    if (auto* refusal = std::get_if<Failure>(&resolved)) {
      // Still name the path it would have been written to, for --json.
      outcome.destination = intended_destination(source, command.destination);
      outcome.failure = std::move(*refusal);
      return outcome;
    }
    outcome.destination = std::get<fs::path>(resolved).native();
  }
  Report report;
  Options options = options_from(command);
  options.report = &report;
  std::optional<ProgressBar> bar;
  if (should_draw_progress(command, source)) {
    bar.emplace(source.filename().string());
    options.on_progress = [&bar](const CopyProgress& progress) { bar->update(progress); };
  }
  try {
    if (streaming) {
      sqlite_backup_to_fd(source, STDOUT_FILENO, options);
    } else {
      sqlite_backup(source, fs::path(outcome.destination), options);
    }
  } catch (...) {
    bar.reset();
    // Whatever the library was doing when the signal came, the user asked it to stop.
    outcome.failure = InterruptHandlers::interrupted()
                          ? interrupted_failure(source_argument, outcome.destination, streaming)
                          : describe_current_exception(InterruptHandlers::signal_number());
    if (!command.copy_use_tempdir && !InterruptHandlers::interrupted()) {
      // One line per failure: what the warning would have said, said in the error itself.
      outcome.failure->message +=
          " (--no-copy-use-tempdir: the live database was read directly, with locks)";
    }
    return outcome;
  }
  bar.reset();
  if (!command.copy_use_tempdir) {
    // After the fact, so that a failure stays one line (the error says it there).
    print_warning(
        fmt::format("--no-copy-use-tempdir: read the live database {} directly; "
                    "this takes locks and may fail while its owner writes",
                    display_path(source_argument)));
  }
  outcome.report = report;
  return outcome;
}

// Whole-command checks, made before anything is read or written: a usage error (exit 2), an
// empty DESTINATION or, with several sources, a DESTINATION that is not a folder (exit 1).
// Each source is checked when its turn comes (back_up_one).
std::optional<Failure> check_command(const CommandLine& command) {
  const bool streaming = command.destination == kStandardOutput;
  const bool several = command.sources.size() > 1;
  const bool verify_level_taken_as_path =
      !command.verify.empty() &&
      std::any_of(command.sources.begin(), command.sources.end(), [](const std::string& source) {
        std::error_code error;
        return (source == "quick" || source == "full") && !fs::exists(source, error);
      });
  if (verify_level_taken_as_path) {
    // "--verify quick" gives "quick" to SOURCE_DATABASE: the level needs "=".
    return Failure{kUsage,
                   "write the verification level with '=' (--verify=quick or --verify=full); "
                   "'quick'/'full' after a space is taken as a SOURCE_DATABASE"};
  }
  if (streaming && several) return Failure{kUsage, "- (stdout) takes exactly one SOURCE_DATABASE"};
  if (streaming && command.json) {
    return Failure{kUsage,
                   "--json cannot be used with - as DESTINATION: stdout carries the database"};
  }
  if ((streaming || command.json) && command.stdout_closed) {
    return Failure{kIo, fmt::format("cannot write {} to standard output: it is closed",
                                    streaming ? "the database" : "the --json records")};
  }
  if (streaming && ::isatty(STDOUT_FILENO) == 1) {
    return Failure{kUsage,
                   "refusing to write the database to a terminal (stdout); redirect it, "
                   "e.g. '| zstd > backup.sqlite.zst', or give a DESTINATION path"};
  }
  if (command.destination.empty()) {
    // No file can have this name: refused now, not after a whole backup ends at the rename.
    return Failure{kFailure,
                   "refusing to write '': DESTINATION is an empty path (give a new file, an "
                   "existing folder, or - for stdout)"};
  }
  if (several) return check_destination_folder(command.destination);
  return std::nullopt;
}

// Prints the outcome's line, and its --json record; false when the record could not be
// written.
bool report_outcome(const CommandLine& command, const Outcome& outcome) {
  if (outcome.failure) {
    print_error(*outcome.failure);
  } else {
    const bool streaming = command.destination == kStandardOutput;
    print_to_stderr(fmt::format(
        "Backed up {} to {}\n", printable(display_path(outcome.source)),
        streaming ? std::string("standard output") : printable(display_path(outcome.destination))));
  }
  if (!command.json) return true;
  return print_json_record(json_record(outcome.source, outcome.destination,
                                       outcome.report ? &*outcome.report : nullptr,
                                       outcome.failure ? &*outcome.failure : nullptr));
}

// "sqlite_backup: backed up N of M; failed: a, b; not attempted (interrupted by SIGINT): c"
void print_summary(std::size_t total, std::size_t succeeded, const std::vector<std::string>& failed,
                   const std::vector<std::string>& skipped, int signal_number) {
  const auto shown = [](const std::vector<std::string>& paths) {
    std::vector<std::string> out;
    out.reserve(paths.size());
    for (const auto& path : paths) out.push_back(printable(display_path(path)));
    return fmt::format("{}", fmt::join(out, ", "));
  };
  std::string summary = fmt::format("sqlite_backup: backed up {} of {}", succeeded, total);
  if (!failed.empty()) summary += "; failed: " + shown(failed);
  if (!skipped.empty()) {
    summary += fmt::format("; not attempted (interrupted by {}): {}", signal_name(signal_number),
                           shown(skipped));
  }
  print_to_stderr(summary + "\n");
}

// The signal handlers (InterruptHandlers) must be installed first.
int run(const CommandLine& command) {
  if (command.debug) set_log_level(LogLevel::debug);  // else the library honours SQLITE_BACKUP_LOGS
  if (auto refusal = check_command(command)) {
    print_error(*refusal);
    // --json promises a record per named source, also when none was attempted (stdout carries
    // no records with -, which --json refuses).
    if (command.json && command.destination != kStandardOutput) {
      for (const std::string& source : command.sources) {
        if (!print_json_record(json_record(
                source, intended_destination(source, command.destination), nullptr, &*refusal))) {
          print_error(json_output_failure());
          break;
        }
      }
    }
    return refusal->exit_code;
  }

  const bool several = command.sources.size() > 1;
  std::vector<std::string> failed;
  std::vector<std::string> skipped;
  std::vector<int> failure_codes;
  bool json_written = true;
  for (const std::string& source : command.sources) {
    if (InterruptHandlers::interrupted()) {
      skipped.push_back(source);
      if (command.json && json_written) {
        // --json promises a record per named source: this one says it was not attempted.
        const int signal_number = InterruptHandlers::signal_number();
        const Failure not_attempted{
            exit_code_for_signal(signal_number),
            fmt::format("not attempted: interrupted by {}", signal_name(signal_number))};
        json_written = print_json_record(json_record(
            source, intended_destination(source, command.destination), nullptr, &not_attempted));
      }
      continue;
    }
    const Outcome outcome = back_up_one(command, source);
    const bool recorded = report_outcome(command, outcome);
    if (outcome.failure) {
      failed.push_back(source);
      failure_codes.push_back(outcome.failure->exit_code);
    }
    if (json_written && !recorded) {
      json_written = false;
      const Failure failure = json_output_failure();
      print_error(failure);
      failure_codes.push_back(failure.exit_code);
    }
  }
  if (several) {
    const std::size_t attempted = command.sources.size() - skipped.size();
    print_summary(command.sources.size(), attempted - failed.size(), failed, skipped,
                  InterruptHandlers::signal_number());
  }

  if (InterruptHandlers::interrupted() && (!skipped.empty() || !failed.empty())) {
    return exit_code_for_signal(InterruptHandlers::signal_number());
  }
  if (failure_codes.empty()) return kSuccess;
  const bool shared = std::all_of(failure_codes.begin(), failure_codes.end(),
                                  [&](int code) { return code == failure_codes.front(); });
  return shared ? failure_codes.front() : kFailure;
}

}  // namespace

namespace {

// The /dev/null an earlier call put on descriptor 1 (its device and inode), if any. Every
// /dev/null has the same: a host that later points descriptor 1 at a /dev/null of its own is
// taken for the one we placed (its stdout then reported closed, a refusal, never a lost
// snapshot). Not synchronized: run_command_line() is not reentrant.
struct NullStdout {
  bool placed = false;
  dev_t device = 0;
  ino_t inode = 0;
};
NullStdout g_null_stdout;  // NOLINT(cppcoreguidelines-avoid-non-const-global-variables)

// Gives each of descriptors 0, 1 and 2 that is closed an open /dev/null, so that no file the
// backup opens takes their numbers: the staged copy opened as descriptor 1 would receive what
// is meant for stdout (a `-` destination, --json records), and as 2 the messages. (Also for
// `python3 -m sqlite_backup`, whose interpreter leaves them closed, with sys.stdout None: a
// closed one is no one's.) Returns whether descriptor 1 was closed, or is a /dev/null after an
// earlier call of this process found it closed and put one there (so that a second in-process
// run says so too, rather than streaming the snapshot into it).
bool occupy_standard_descriptors() noexcept {
  bool stdout_closed = false;
  for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    // (open() takes the lowest free number: this one, as the lower ones are open by now.)
    const int opened = ::open("/dev/null", O_RDWR | O_NOCTTY);
    if (opened != fd && opened >= 0) ::close(opened);
    if (fd != STDOUT_FILENO) continue;
    stdout_closed = true;
    struct stat placed {};
    if (opened == fd && ::fstat(fd, &placed) == 0) {
      g_null_stdout = {true, placed.st_dev, placed.st_ino};
    }
  }
  struct stat now {};
  return stdout_closed || (g_null_stdout.placed && ::fstat(STDOUT_FILENO, &now) == 0 &&
                           now.st_dev == g_null_stdout.device && now.st_ino == g_null_stdout.inode);
}

}  // namespace

int run_command_line(int argc, char** argv, bool whole_process) {
  const bool stdout_closed = occupy_standard_descriptors();
  try {
    // First, so that a signal during a long backup always reaches the library's cancel flag.
    const InterruptHandlers interrupts;
    CLI::App app{kDescription, "sqlite_backup"};
    CommandLine command;
    build_app(app, command);
    int exit_now = -1;
    if (auto failure = parse(app, command, argc, argv, exit_now)) {
      print_error(*failure);
      return failure->exit_code;
    }
    if (exit_now >= 0) return exit_now;
    command.private_descriptor_table = !whole_process;
    command.stdout_closed = stdout_closed;
    return run(command);
  } catch (...) {
    print_error(describe_current_exception(0));
    return kFailure;
  }
}

}  // namespace sqlite_backup::cli
