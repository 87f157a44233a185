#include "recover/wal_checksum.hpp"

#include <array>
#include <bit>
#include <cstring>

#include "io/big_endian.hpp"

namespace sqlite_backup::recover {
namespace {

using io::load_be32;

// Whether the words are to be byte-swapped on this machine to read them as the magic says.
bool swapped(const Checksum& chain) noexcept {
  return chain.big_endian_words == (std::endian::native == std::endian::little);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// Eight 32-bit lanes (GCC's and Clang's vector extension): with the avx2 target below, one
// multiply and one add per eight words.
using Lanes = std::uint32_t __attribute__((vector_size(32)));

// The two dot products of `words` (a multiple of 8) with the coefficient tables.
__attribute__((target("avx2"))) std::array<std::uint32_t, 2> dot_products_avx2(
    const std::byte* words, const std::uint32_t* to_s0, const std::uint32_t* to_s1,
    std::size_t count) noexcept {
  Lanes sum0{};
  Lanes sum1{};
  for (std::size_t i = 0; i < count; i += 8) {
    Lanes w;
    Lanes c0;
    Lanes c1;
    std::memcpy(&w, words + i * 4, sizeof w);
    std::memcpy(&c0, to_s0 + i, sizeof c0);
    std::memcpy(&c1, to_s1 + i, sizeof c1);
    sum0 += w * c0;
    sum1 += w * c1;
  }
  std::array<std::uint32_t, 2> sums{};
  for (int lane = 0; lane < 8; ++lane) {
    sums[0] += sum0[lane];
    sums[1] += sum1[lane];
  }
  return sums;
}

bool can_vectorize() noexcept {
  static const bool supported = __builtin_cpu_supports("avx2") != 0;
  return supported;
}
#else
// (Elsewhere the chain does it all: never called.)
std::array<std::uint32_t, 2> dot_products_avx2(const std::byte* /*words*/,
                                               const std::uint32_t* /*to_s0*/,
                                               const std::uint32_t* /*to_s1*/,
                                               std::size_t /*count*/) noexcept {
  return {};
}
bool can_vectorize() noexcept { return false; }
#endif

}  // namespace

void Checksum::add(std::span<const std::byte> bytes) noexcept {
  // The two sums depend on each other word by word; what keeps this near memory speed is
  // loading whole words (one load, and one byte swap where the order differs).
  const bool swap = swapped(*this);
  const std::byte* p = bytes.data();
  const std::byte* end = p + bytes.size();
  std::uint32_t a = s0;
  std::uint32_t b = s1;
  std::array<std::uint32_t, 2> words{};
  for (; p < end; p += 8) {
    std::memcpy(words.data(), p, 8);
    if (swap) {
      words[0] = __builtin_bswap32(words[0]);
      words[1] = __builtin_bswap32(words[1]);
    }
    a += words[0] + b;
    b += words[1] + a;
  }
  s0 = a;
  s1 = b;
}

bool Checksum::matches(const std::byte* stored) const noexcept {
  return s0 == load_be32(stored) && s1 == load_be32(stored + 4);
}

PageChecksum::PageChecksum(std::size_t page_size)
    : page_size_(page_size), vectorized_(can_vectorize() && page_size % 32 == 0) {
  if (!vectorized_) return;
  const std::size_t pairs = page_size / 8;
  to_s0_.resize(2 * pairs);
  to_s1_.resize(2 * pairs);
  // Pair i is followed by pairs - 1 - i more steps: its (a, a + b) is multiplied by
  // M^(pairs - 1 - i). Walk k = 0, 1, ... from the last pair back, M^k kept as [[p, q], [q, r]].
  std::uint32_t p = 1;
  std::uint32_t q = 0;
  std::uint32_t r = 1;
  for (std::size_t k = 0; k < pairs; ++k) {
    const std::size_t i = pairs - 1 - k;
    // s0 gains p a + q (a + b); s1 gains q a + r (a + b).
    to_s0_[2 * i] = p + q;
    to_s0_[2 * i + 1] = q;
    to_s1_[2 * i] = q + r;
    to_s1_[2 * i + 1] = r;
    // M^(k+1) = M^k M, with M = [[1, 1], [1, 2]].
    const std::uint32_t next_p = p + q;
    const std::uint32_t next_q = p + 2 * q;
    const std::uint32_t next_r = q + 2 * r;
    p = next_p;
    q = next_q;
    r = next_r;
  }
  p_ = p;
  q_ = q;
  r_ = r;
}

void PageChecksum::add_page(Checksum& chain, const std::byte* page) const noexcept {
  // (Words in the machine's own order only: a WAL written with the other order takes the
  // chain, as it always did.)
  if (vectorized_ && !swapped(chain)) {
    const auto sums = dot_products_avx2(page, to_s0_.data(), to_s1_.data(), page_size_ / 4);
    const std::uint32_t s0 = p_ * chain.s0 + q_ * chain.s1 + sums[0];
    const std::uint32_t s1 = q_ * chain.s0 + r_ * chain.s1 + sums[1];
    chain.s0 = s0;
    chain.s1 = s1;
    return;
  }
  chain.add(std::span(page, page_size_));
}

}  // namespace sqlite_backup::recover
