// SQLite's on-disk integers are big-endian: the database header, the journal, the WAL.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sqlite_backup::io {

// `Byte` is std::byte or unsigned char (what the readers keep file contents in).
template <typename Byte>
requires(sizeof(Byte) == 1) [[nodiscard]] constexpr std::uint32_t
    load_be32(const Byte* p) noexcept {
  const auto at = [p](int i) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(p[i]));
  };
  return (at(0) << 24) | (at(1) << 16) | (at(2) << 8) | at(3);
}

constexpr void store_be32(std::byte* p, std::uint32_t value) noexcept {
  for (int i = 3; i >= 0; --i, value >>= 8) p[i] = static_cast<std::byte>(value & 0xffU);
}

}  // namespace sqlite_backup::io
