// A database image in memory SQLite will own (an io::SqliteMemory), as apply_wal() and
// apply_live_wal() write it: the memory snapshots' counterpart of the staged file.
#pragma once

#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <filesystem>
#include <vector>

#include "io/file.hpp"
#include "io/sqlite_memory.hpp"
#include "recover/apply_wal.hpp"

namespace sqlite_backup::recover {

// While the image's memory file is open it is written and read through the file, as the
// staged file is: the kernel then reaches the pages through its own mapping of them, where
// this process touching them through its mapping would take a page fault for each, costly
// on the virtual machines this is built on (see io::SqliteMemory). Heap memory is written
// directly.
class MemoryImage final : public DatabaseImage {
 public:
  MemoryImage(io::SqliteMemory& memory, const std::filesystem::path& source)
      : memory_(memory), source_(source) {}
  std::uint64_t size() override { return memory_.size(); }
  std::size_t read(std::span<std::byte> buffer, std::uint64_t offset) override {
    if (offset >= memory_.size()) return 0;
    const auto n =
        static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), memory_.size() - offset));
    if (memory_.memory_file() >= 0) {
      return io::read_at(memory_.memory_file(), buffer.first(n), offset, source_);
    }
    std::memcpy(buffer.data(), memory_.data() + offset, n);
    return n;
  }
  void write(std::span<const std::byte> bytes, std::uint64_t offset) override {
    grow_to(offset + bytes.size());
    if (memory_.memory_file() >= 0) {
      io::write_all_at(memory_.memory_file(), bytes, offset, source_);
      return;
    }
    std::memcpy(memory_.data() + offset, bytes.data(), bytes.size());
  }
  void write_pages(std::uint32_t first_page, std::span<const std::byte* const> pages,
                   std::size_t page_size) override {
    const std::uint64_t first = (std::uint64_t{first_page} - 1) * page_size;
    grow_to(first + pages.size() * page_size);
    if (memory_.memory_file() >= 0) {
      vectors_.resize(IOV_MAX);
      write_run(memory_.memory_file(), first_page, pages, page_size, vectors_, source_);
      return;
    }
    for (std::size_t i = 0; i < pages.size(); ++i) {
      std::memcpy(memory_.data() + first + i * page_size, pages[i], page_size);
    }
  }
  void resize(std::uint64_t size) override { memory_.resize(size, source_); }
  // (Not while the memory file is open: the frames are then read and written through it.)
  std::byte* bytes_extended_to(std::uint64_t size) override {
    if (memory_.memory_file() >= 0) return nullptr;
    grow_to(size);
    return memory_.data();
  }
  void finish() override {}

 private:
  // As a file grows when written past its end: zeros in between. Room for more at once
  // (io::SqliteMemory::grow_for), so that a WAL growing the database page by page does not
  // reallocate each time.
  void grow_to(std::uint64_t end) {
    if (end <= memory_.size()) return;
    memory_.grow_for(end, source_);
    memory_.resize(end, source_);
  }

  io::SqliteMemory& memory_;
  const std::filesystem::path& source_;
  std::vector<iovec> vectors_;
};

}  // namespace sqlite_backup::recover
