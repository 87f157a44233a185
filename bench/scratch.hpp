// A scratch folder for a benchmark run under $BENCH_DIR (default /var/tmp), removed with
// everything in it when the object goes.
#pragma once

#include <filesystem>
#include <string>

namespace sqlite_backup_bench {

class ScratchFolder {
 public:
  // Creates $BENCH_DIR/<prefix>.XXXXXX; throws std::system_error when it cannot.
  explicit ScratchFolder(const std::string& prefix);
  ScratchFolder(const ScratchFolder&) = delete;
  ScratchFolder& operator=(const ScratchFolder&) = delete;
  ~ScratchFolder();

  [[nodiscard]] const std::filesystem::path& root() const { return root_; }

 private:
  std::filesystem::path root_;
};

}  // namespace sqlite_backup_bench
