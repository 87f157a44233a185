// The magic numbers that open SQLite's files: what tells a database, a WAL and a hot rollback
// journal from anything else of their name.
#pragma once

#include <array>
#include <cstdint>

namespace sqlite_backup::io {

// A database file's first 16 bytes: "SQLite format 3\0".
inline constexpr std::array<unsigned char, 16> kDatabaseMagic = {
    'S', 'Q', 'L', 'i', 't', 'e', ' ', 'f', 'o', 'r', 'm', 'a', 't', ' ', '3', '\0'};

// A hot rollback journal's first 8 bytes (zeroed when its transaction ends, or not yet
// written while it is being filled with synchronous on).
inline constexpr std::array<unsigned char, 8> kJournalMagic = {0xd9, 0xd5, 0x05, 0xf9,
                                                               0x20, 0xa1, 0x63, 0xd7};

// A WAL header's first big-endian word: 0x377f0682 or 0x377f0683 (the low bit says in which
// byte order its checksums sum the frames' words).
[[nodiscard]] constexpr bool is_wal_magic(std::uint32_t word) noexcept {
  return (word & 0xfffffffeU) == 0x377f0682U;
}

}  // namespace sqlite_backup::io
