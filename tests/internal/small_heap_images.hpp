// Memory snapshots held in heap memory only, under a smaller bound than io::kLargestHeapImage,
// so that tests reach the bound with a few MiB; both are the process's, and restored when the
// object goes (a failed assertion included).
#pragma once

#include <cstdint>

#include "io/sqlite_memory.hpp"

namespace sqlite_backup::testing {

class SmallHeapImages {
 public:
  explicit SmallHeapImages(std::uint64_t largest) {
    io::set_memory_files_allowed(false);
    io::set_largest_heap_image(largest);
  }
  SmallHeapImages(const SmallHeapImages&) = delete;
  SmallHeapImages& operator=(const SmallHeapImages&) = delete;
  SmallHeapImages(SmallHeapImages&&) = delete;
  SmallHeapImages& operator=(SmallHeapImages&&) = delete;
  ~SmallHeapImages() {
    io::set_largest_heap_image(0);
    io::set_memory_files_allowed(true);
  }
};

}  // namespace sqlite_backup::testing
