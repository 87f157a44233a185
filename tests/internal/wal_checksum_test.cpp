// recover::PageChecksum: the WAL's checksum over a page as two dot products (vectorized where
// the processor allows) must be exactly the word-by-word chain SQLite computes, for every page
// size SQLite allows, from any running sums, in either byte order.
#include "recover/wal_checksum.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace sqlite_backup::testing {
namespace {

class PageChecksumSizes : public ::testing::TestWithParam<std::size_t> {};

TEST_P(PageChecksumSizes, EqualsTheWordByWordChain) {
  const std::size_t page_size = GetParam();
  std::mt19937 random(static_cast<std::uint32_t>(page_size));
  std::vector<std::byte> page(page_size);
  const recover::PageChecksum checksum(page_size);
  for (int round = 0; round < 20; ++round) {
    for (std::byte& byte : page) byte = static_cast<std::byte>(random());
    for (const bool big_endian_words : {false, true}) {
      recover::Checksum chained{static_cast<std::uint32_t>(random()),
                                static_cast<std::uint32_t>(random()), big_endian_words};
      recover::Checksum by_page = chained;
      chained.add(page);
      checksum.add_page(by_page, page.data());
      ASSERT_EQ(by_page.s0, chained.s0) << "round " << round;
      ASSERT_EQ(by_page.s1, chained.s1) << "round " << round;
    }
  }
}

// Words whose products overflow 32 bits in every lane: the sums are taken mod 2^32.
TEST_P(PageChecksumSizes, EqualsTheChainForAllOnesPages) {
  const std::size_t page_size = GetParam();
  const std::vector<std::byte> page(page_size, std::byte{0xff});
  recover::Checksum chained{0xffffffffU, 0xfffffffeU, false};
  recover::Checksum by_page = chained;
  chained.add(page);
  recover::PageChecksum(page_size).add_page(by_page, page.data());
  EXPECT_EQ(by_page.s0, chained.s0);
  EXPECT_EQ(by_page.s1, chained.s1);
}

INSTANTIATE_TEST_SUITE_P(EveryPageSize, PageChecksumSizes,
                         ::testing::Values(512, 1024, 2048, 4096, 8192, 16384, 32768, 65536));

}  // namespace
}  // namespace sqlite_backup::testing
