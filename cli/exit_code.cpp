#include "exit_code.hpp"

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <new>
#include <sqlite_backup/sqlite_backup.hpp>
#include <stdexcept>
#include <system_error>

namespace sqlite_backup::cli {
namespace {

int exit_code_for_kind(ErrorKind kind, int interrupt_signal) {
  switch (kind) {
    case ErrorKind::invalid_source:
    case ErrorKind::sqlite:
      return kInvalidSource;
    case ErrorKind::unstable_source:
      return kUnstableSource;
    case ErrorKind::io:
      return kIo;
    case ErrorKind::destination:
      return kFailure;
    case ErrorKind::verification_failed:
      return kVerifyFailed;
    case ErrorKind::cancelled:
      return exit_code_for_signal(interrupt_signal);
  }
  return kFailure;
}

bool starts_with(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

}  // namespace

int exit_code_for_signal(int signal_number) {
  switch (signal_number) {
    case SIGHUP:
      return kInterruptedBySighup;
    case SIGQUIT:
      return kInterruptedBySigquit;
    case SIGTERM:
      return kInterruptedBySigterm;
    default:
      return kInterruptedBySigint;
  }
}

std::string one_line(std::string_view text) {
  // The library's messages start with its own name; ours already say "sqlite_backup: error:".
  for (bool stripped = true; stripped;) {
    stripped = false;
    for (std::string_view prefix : {"filesystem error: ", "sqlite_backup: "}) {
      if (starts_with(text, prefix)) {
        text.remove_prefix(prefix.size());
        stripped = true;
      }
    }
  }
  return printable(text);
}

std::string printable(std::string_view text) {
  std::string line(text);
  for (char& c : line) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return line;
}

std::string display_path(std::string_view path) {
  // Quoted where a character would make the path read as something else: a space, a quote, a
  // backslash, or a control character (printed as a space).
  const bool plain = !path.empty() && std::none_of(path.begin(), path.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte < 0x20 || byte == 0x7f || c == ' ' || c == '\'' || c == '"' || c == '\\';
  });
  if (plain) return std::string(path);
  std::string out = "'";
  for (char c : path) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

Failure describe_current_exception(int interrupt_signal) {
  try {
    throw;
  } catch (const SqliteBackupError& error) {
    return {exit_code_for_kind(error.kind(), interrupt_signal), one_line(error.what())};
  } catch (const std::filesystem::filesystem_error& error) {
    // A missing source is the caller's mistake (usage); any other filesystem failure is I/O.
    const bool missing = error.code() == std::errc::no_such_file_or_directory;
    return {missing ? kUsage : kIo, one_line(error.what())};
  } catch (const std::invalid_argument& error) {
    return {kFailure, one_line(error.what())};
  } catch (const std::bad_alloc&) {
    return {kFailure, "out of memory"};
  } catch (const std::exception& error) {
    return {kFailure, one_line(error.what())};
  } catch (...) {
    return {kFailure, "unknown error"};
  }
}

}  // namespace sqlite_backup::cli
