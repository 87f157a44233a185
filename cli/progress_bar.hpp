// --progress: a one-line bar on stderr, redrawn in place with '\r' and erased when done.
// Only ever drawn on a terminal: in pipes and logs it would be noise.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <sqlite_backup/sqlite_backup.hpp>
#include <string>

namespace sqlite_backup::cli {

// Sources at least this large (database + -wal + -journal) get a bar by default.
inline constexpr std::uint64_t kAutoProgressThreshold = 64ULL << 20;

// Sum of the sizes of the files that make up the database at `source` (0 if unknown).
std::uint64_t database_files_size(const std::filesystem::path& source);

class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  ProgressBar(ProgressBar&&) = delete;
  ProgressBar& operator=(ProgressBar&&) = delete;
  ~ProgressBar();  // erases the bar

  // Called by the library (Options::on_progress) from the backing-up thread.
  void update(const CopyProgress& progress);
  // Erases the bar, so that the next line starts clean.
  void clear() noexcept;

 private:
  std::string label_;
  bool drawn_ = false;
  int last_permille_ = -1;
  int last_attempt_ = 0;
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace sqlite_backup::cli
