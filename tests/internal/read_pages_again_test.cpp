// io::read_pages_again, the catch-up of a copy (snapshot::CatchUp): the listed pages and the
// tail are read from the source into their places in the copy, every other byte of the copy
// stays as it was, pages at or past the source's end are left out, and the copy ends where
// the source ends, also when the source is now shorter than where the tail begins.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "io/copy.hpp"
#include "io/file.hpp"
#include "test_support.hpp"

namespace sqlite_backup::testing {
namespace {

constexpr std::uint32_t kPage = 4096;

// `pages` pages, each filled with `fill` plus its number, so that every page differs.
std::string pages_of(std::uint32_t pages, char fill) {
  std::string bytes(std::size_t{pages} * kPage, fill);
  for (std::uint32_t page = 0; page < pages; ++page) {
    bytes[std::size_t{page} * kPage] = static_cast<char>('0' + page % 10);
  }
  return bytes;
}

std::string page(const std::string& bytes, std::uint32_t number) {
  return bytes.substr(std::size_t{number - 1} * kPage, kPage);
}

// Catches `copy_bytes` up from `source_bytes`; returns the copy and the length reported.
std::pair<std::string, std::uint64_t> caught_up(const std::string& source_bytes,
                                                const std::string& copy_bytes,
                                                const std::vector<std::uint32_t>& pages,
                                                std::uint64_t tail_from) {
  const TempDir dir;
  const fs::path source = dir / "source";
  const fs::path copy = dir / "copy";
  write_file(source, source_bytes);
  write_file(copy, copy_bytes);
  const io::UniqueFd in(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
  io::UniqueFd out(::open(copy.c_str(), O_RDWR | O_CLOEXEC));
  const io::RefreshOutcome outcome = io::read_pages_again(
      in.get(), source, out.get(), copy, io::PagesToReadAgain{kPage, pages, tail_from});
  out.close(copy);
  return {read_file(copy), outcome.bytes};
}

TEST(ReadPagesAgain, ReadsTheListedPagesAndTheTailAndLeavesTheRest) {
  const std::string source = pages_of(40, 's');  // grown from 30 pages
  const std::string copy = pages_of(30, 'c');
  // Runs and single pages, below the tail; page 35 lies in the tail anyway.
  const std::vector<std::uint32_t> listed{1, 2, 3, 7, 12, 13, 35};
  const auto [result, length] = caught_up(source, copy, listed, std::uint64_t{25} * kPage);
  ASSERT_EQ(result.size(), source.size());
  EXPECT_EQ(length, source.size());
  for (std::uint32_t number = 1; number <= 40; ++number) {
    const bool again =
        number > 25 || std::find(listed.begin(), listed.end(), number) != listed.end();
    EXPECT_EQ(page(result, number), page(again ? source : copy, number)) << "page " << number;
  }
}

TEST(ReadPagesAgain, CutsTheCopyToASourceShorterThanTheTailsStart) {
  const std::string source = pages_of(10, 's');  // shrunk from 30 pages
  const std::string copy = pages_of(30, 'c');
  // Page 12 lies past the source's end now: left out.
  const auto [result, length] = caught_up(source, copy, {4, 12}, std::uint64_t{20} * kPage);
  ASSERT_EQ(result.size(), source.size());
  EXPECT_EQ(length, source.size());
  for (std::uint32_t number = 1; number <= 10; ++number) {
    EXPECT_EQ(page(result, number), page(number == 4 ? source : copy, number)) << "page " << number;
  }
}

}  // namespace
}  // namespace sqlite_backup::testing
