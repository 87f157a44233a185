// io::copy_file_contents with ranges to leave out: the file copy that a WAL application then
// completes. Left-out ranges are neither read nor written (they stay holes, read as zeros),
// the rest is the source's, and the copy ends where the source ends, also after a range
// that reaches the end. Through the kernel's own copy (a --no-sync copy with a live WAL);
// copies through a pipe (direct writes, overlays) are not given ranges to leave out.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "io/copy.hpp"
#include "io/file.hpp"
#include "test_support.hpp"

namespace sqlite_backup::testing {
namespace {

constexpr std::size_t kSize = std::size_t{9} << 20;  // past the 4 MiB chunks of the copy

std::string patterned(std::size_t size) {
  std::string bytes(size, '\0');
  for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>('a' + (i / 4096) % 26);
  return bytes;
}

std::string copy_leaving_out(const TempDir& dir, const std::string& source_bytes,
                             const std::vector<io::ByteRange>& skip, io::WriteOut write_out) {
  const fs::path source = dir / "source";
  const fs::path copy = dir / "copy";
  write_file(source, source_bytes);
  const io::UniqueFd in(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
  io::UniqueFd out(::open(copy.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  const io::LateRanges ranges(skip);
  const io::CopyOutcome outcome =
      io::copy_file_contents(in.get(), source, out.get(), copy, {}, write_out, &ranges);
  out.close(copy);
  EXPECT_EQ(outcome.bytes, source_bytes.size());
  EXPECT_NE(outcome.method, io::CopyMethod::splice);
  EXPECT_NE(outcome.method, io::CopyMethod::splice_direct);
  return read_file(copy);
}

// What the copy must hold: the source, with zeros where ranges were left out.
std::string expected(std::string bytes, const std::vector<io::ByteRange>& skip) {
  for (const io::ByteRange& range : skip) {
    std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(range.begin),
              bytes.begin() + static_cast<std::ptrdiff_t>(range.end), '\0');
  }
  return bytes;
}

class CopyLeavingOut : public ::testing::TestWithParam<io::WriteOut> {};

TEST_P(CopyLeavingOut, LeavesTheRangesAsZerosAndCopiesEverythingElse) {
  const TempDir dir;
  const std::string source = patterned(kSize);
  // One inside a chunk, one across a chunk boundary (4 MiB), two adjacent ones.
  const std::vector<io::ByteRange> skip{
      {8192, 16384},
      {(std::uint64_t{4} << 20) - 4096, (std::uint64_t{4} << 20) + 8192},
      {std::uint64_t{6} << 20, (std::uint64_t{6} << 20) + 4096},
      {(std::uint64_t{6} << 20) + 4096, (std::uint64_t{6} << 20) + 12288}};
  const std::string copy = copy_leaving_out(dir, source, skip, GetParam());
  ASSERT_EQ(copy.size(), source.size());
  EXPECT_TRUE(copy == expected(source, skip));
}

TEST_P(CopyLeavingOut, ARangeReachingTheEndStillGivesTheWholeLength) {
  const TempDir dir;
  const std::string source = patterned(kSize);
  const std::vector<io::ByteRange> skip{{0, 4096}, {kSize - 3 * 4096, kSize}};
  const std::string copy = copy_leaving_out(dir, source, skip, GetParam());
  ASSERT_EQ(copy.size(), source.size());
  EXPECT_TRUE(copy == expected(source, skip));
}

INSTANTIATE_TEST_SUITE_P(WriteOut, CopyLeavingOut,
                         ::testing::Values(io::WriteOut::cached, io::WriteOut::early),
                         [](const auto& test) {
                           return test.param == io::WriteOut::early ? "Early" : "Cached";
                         });

}  // namespace
}  // namespace sqlite_backup::testing
