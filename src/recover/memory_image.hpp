// A database image in memory SQLite will own (an io::SqliteMemory), as apply_wal() and
// apply_live_wal() write it: the memory snapshots' counterpart of the staged file.
#pragma once

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "io/sqlite_memory.hpp"
#include "recover/apply_wal.hpp"

namespace sqlite_backup::recover {

class MemoryImage final : public DatabaseImage {
 public:
  MemoryImage(io::SqliteMemory& memory, const std::filesystem::path& source)
      : memory_(memory), source_(source) {}
  std::uint64_t size() override { return memory_.size(); }
  std::size_t read(std::span<std::byte> buffer, std::uint64_t offset) override {
    if (offset >= memory_.size()) return 0;
    const auto n =
        static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), memory_.size() - offset));
    std::memcpy(buffer.data(), memory_.data() + offset, n);
    return n;
  }
  void write(std::span<const std::byte> bytes, std::uint64_t offset) override {
    grow_to(offset + bytes.size());
    std::memcpy(memory_.data() + offset, bytes.data(), bytes.size());
  }
  void write_pages(std::uint32_t first_page, std::span<const std::byte* const> pages,
                   std::size_t page_size) override {
    const std::uint64_t first = (std::uint64_t{first_page} - 1) * page_size;
    grow_to(first + pages.size() * page_size);
    for (std::size_t i = 0; i < pages.size(); ++i) {
      std::memcpy(memory_.data() + first + i * page_size, pages[i], page_size);
    }
  }
  void resize(std::uint64_t size) override { memory_.resize(size, source_); }
  std::byte* bytes_extended_to(std::uint64_t size) override {
    grow_to(size);
    return memory_.data();
  }
  void finish() override {}

 private:
  // As a file grows when written past its end: zeros in between. Room for a quarter more at
  // once, so that a WAL growing the database page by page does not reallocate each time.
  void grow_to(std::uint64_t end) {
    if (end <= memory_.size()) return;
    if (end > memory_.capacity()) {
      memory_.reserve(std::max(end, memory_.capacity() / 4 * 5), source_);
    }
    memory_.resize(end, source_);
  }

  io::SqliteMemory& memory_;
  const std::filesystem::path& source_;
};

}  // namespace sqlite_backup::recover
