// SQLite's WAL checksum (walChecksumBytes in wal.c): pairs of 32-bit words, read in the byte
// order the WAL's magic names, folded into two running sums, each frame's sums seeded by the
// previous frame's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace sqlite_backup::recover {

struct Checksum {
  std::uint32_t s0 = 0;
  std::uint32_t s1 = 0;
  bool big_endian_words = true;

  // Folds in `bytes` (a multiple of 8 bytes), one pair of words at a time.
  void add(std::span<const std::byte> bytes) noexcept;
  // Whether the sums are the two big-endian words at `stored` (a frame's or header's).
  [[nodiscard]] bool matches(const std::byte* stored) const noexcept;
};

// The same sums over one page at a time, computed without the word-by-word dependency: each
// step is (s0, s1) -> M (s0, s1) + (a, a + b) with M = [[1, 1], [1, 2]], all mod 2^32, so n
// steps are M^n (s0, s1) plus two dot products of the page's words with fixed coefficients
// (the entries of M^(n-1-i) for the i-th pair). Dot products vectorize; the chain of sums
// does not (each word waits for the previous sum), so this is several times faster where the
// processor has AVX2, and the plain chain elsewhere. Exactly equal to Checksum::add.
// Thread safety: add_page() only reads the object; threads may share one.
class PageChecksum {
 public:
  // For pages of `page_size` bytes (a multiple of 8).
  explicit PageChecksum(std::size_t page_size);

  // chain.add(page) for one page of the size given to the constructor.
  void add_page(Checksum& chain, const std::byte* page) const noexcept;

 private:
  std::size_t page_size_;
  // Coefficients per word of the page, pairs interleaved as the words are.
  std::vector<std::uint32_t> to_s0_;
  std::vector<std::uint32_t> to_s1_;
  // M^n for n pairs of words: [[p, q], [q, r]].
  std::uint32_t p_ = 1;
  std::uint32_t q_ = 0;
  std::uint32_t r_ = 1;
  bool vectorized_ = false;  // the processor runs the AVX2 dot products
};

}  // namespace sqlite_backup::recover
