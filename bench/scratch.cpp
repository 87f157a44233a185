#include "scratch.hpp"

#include <cerrno>
#include <cstdlib>
#include <system_error>

namespace sqlite_backup_bench {

ScratchFolder::ScratchFolder(const std::string& prefix) {
  const char* base = std::getenv("BENCH_DIR");
  std::string pattern =
      (std::filesystem::path(base != nullptr ? base : "/var/tmp") / (prefix + ".XXXXXX")).string();
  if (mkdtemp(pattern.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(),
                            "bench: creating a scratch folder " + pattern);
  }
  root_ = pattern;
}

ScratchFolder::~ScratchFolder() {
  std::error_code ignored;
  std::filesystem::remove_all(root_, ignored);
}

}  // namespace sqlite_backup_bench
