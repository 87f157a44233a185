#include "progress_bar.hpp"

#include <fmt/core.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <system_error>

namespace sqlite_backup::cli {
namespace {

int terminal_width() {
  winsize size{};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return 80;
}

std::string human_size(std::uint64_t bytes) {
  const double mib = static_cast<double>(bytes) / (1024.0 * 1024.0);
  if (mib >= 1024.0) return fmt::format("{:.1f} GiB", mib / 1024.0);
  return fmt::format("{:.1f} MiB", mib);
}

}  // namespace

std::uint64_t database_files_size(const std::filesystem::path& source) {
  std::uint64_t total = 0;
  try {
    for (const auto& file : glob_database_files(source)) {
      std::error_code error;
      const auto size = std::filesystem::file_size(file, error);
      if (!error) total += size;
    }
  } catch (const std::exception&) {
    // Only decides whether to draw a bar; the backup itself reports real errors.
  }
  return total;
}

ProgressBar::ProgressBar(std::string label) : label_(std::move(label)) {}

ProgressBar::~ProgressBar() { clear(); }

void ProgressBar::update(const CopyProgress& progress) {
  if (progress.bytes_total == 0) return;
  const auto now = std::chrono::steady_clock::now();
  const int permille = static_cast<int>(
      std::min<std::uint64_t>(1000, progress.bytes_done * 1000 / progress.bytes_total));
  // Redraw when the figure changes, at most ten times a second: a terminal is slow.
  const bool changed = permille != last_permille_ || progress.attempt != last_attempt_;
  if (!changed || (drawn_ && now - last_draw_ < std::chrono::milliseconds(100) &&
                   permille != 1000 && progress.attempt == last_attempt_)) {
    return;
  }
  last_permille_ = permille;
  last_attempt_ = progress.attempt;
  last_draw_ = now;

  const std::string figures = fmt::format(
      " {:3}% {}/{}{}", permille / 10, human_size(progress.bytes_done),
      human_size(progress.bytes_total),
      progress.attempt > 1 ? fmt::format(" (attempt {})", progress.attempt) : std::string());
  const int width = terminal_width() - 1;  // never touch the last column: some terminals wrap
  const int room = width - static_cast<int>(figures.size()) - 3;
  std::string label = label_;
  const int label_room = std::max(0, room / 3);
  if (static_cast<int>(label.size()) > label_room) {
    label = label_room > 3
                ? "..." + label.substr(label.size() - static_cast<std::size_t>(label_room - 3))
                : std::string();
  }
  const int bar_width = std::max(0, room - static_cast<int>(label.size()));
  const int filled = bar_width * permille / 1000;
  std::string line = "\r" + label + " [" + std::string(static_cast<std::size_t>(filled), '#') +
                     std::string(static_cast<std::size_t>(bar_width - filled), ' ') + "]" + figures;
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::clear() noexcept {
  if (!drawn_) return;
  std::fputs("\r\033[K", stderr);  // carriage return, then erase to the end of the line
  std::fflush(stderr);
  drawn_ = false;
}

}  // namespace sqlite_backup::cli
