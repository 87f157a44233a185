// The copy through a pipe. Direct writes (io::WriteOut::direct): a durable copy of a large
// database goes to the disk past the page cache, byte for byte the source's, with a tail the
// device cannot take directly written through the page cache; and the snapshot chooses it
// only where the copy is fsynced and not read back. Pages laid over the copy's bytes
// (io::LateOverlay), past the page cache or into it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "io/copy.hpp"
#include "io/file.hpp"
#include "snapshot/copy_set.hpp"
#include "test_support.hpp"

namespace sqlite_backup::testing {
namespace {

// How many of the first `bytes` of `file` are in the page cache, in pages (mincore).
std::size_t cached_pages(const fs::path& file, std::size_t bytes) {
  const io::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw std::runtime_error("cannot open " + file.string());
  void* map = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (map == MAP_FAILED) throw std::runtime_error("cannot map " + file.string());
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> resident((bytes + page - 1) / page);
  const int status = ::mincore(map, bytes, resident.data());
  ::munmap(map, bytes);
  if (status != 0) throw std::runtime_error("mincore failed on " + file.string());
  std::size_t cached = 0;
  for (const unsigned char flags : resident) cached += flags & 1U;
  return cached;
}

class DirectCopy : public ::testing::TestWithParam<std::size_t> {};

// 9 MiB and a tail: 1536 bytes (three sectors: all of it direct), then 1000 (the last bytes
// do not fill a sector and go through the page cache).
TEST_P(DirectCopy, CopiesEveryBytePastThePageCache) {
  const TempDir dir;
  if (!direct_writes_possible(dir.path())) {
    GTEST_SKIP() << "the filesystem of " << dir.path() << " refuses O_DIRECT";
  }
  const fs::path source = dir / "source";
  const fs::path copy = dir / "copy";
  const std::size_t main_part = std::size_t{9} << 20;
  const std::string bytes = random_bytes(main_part + GetParam());
  write_file(source, bytes);
  const io::UniqueFd in(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
  io::UniqueFd out(::open(copy.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  const io::CopyOutcome outcome =
      io::copy_file_contents(in.get(), source, out.get(), copy, {}, io::WriteOut::direct);
  EXPECT_EQ(outcome.method, io::CopyMethod::splice_direct);
  EXPECT_EQ(outcome.bytes, bytes.size());
  // The descriptor is handed back as it came (later writes through it are ordinary ones).
  EXPECT_EQ(::fcntl(out.get(), F_GETFL) & O_DIRECT, 0);
  out.close(copy);
  // (Before anything reads the copy: a read would bring it into the page cache.)
  EXPECT_EQ(cached_pages(copy, main_part), 0U);
  EXPECT_TRUE(read_file(copy) == bytes);
}

INSTANTIATE_TEST_SUITE_P(Tail, DirectCopy, ::testing::Values(1536, 1000), [](const auto& test) {
  return test.param % 512 == 0 ? std::string("WholeSectors") : std::string("PartOfASector");
});

// Pages laid over a copy: published before the copy, every page that lies wholly in the file
// comes from the overlay's file; a page reaching past the end is left as the source's
// (whoever published it writes it apart); a page the overlay's file no longer holds whole is
// reported; and the copy says it took the pages from its second chunk. With pages of a memory
// page (spliced into the pipe) and of a quarter of one (laid over a buffer); written directly
// and through the page cache.
class CopyLayingPages : public ::testing::TestWithParam<std::tuple<std::size_t, io::WriteOut>> {
 protected:
  void SetUp() override {
    if (write_out() == io::WriteOut::direct && !direct_writes_possible(dir_.path())) {
      GTEST_SKIP() << "the filesystem of " << dir_.path() << " refuses O_DIRECT";
    }
  }
  [[nodiscard]] static std::size_t page() { return std::get<0>(GetParam()); }
  [[nodiscard]] static io::WriteOut write_out() { return std::get<1>(GetParam()); }
  [[nodiscard]] static io::CopyMethod method() {
    return write_out() == io::WriteOut::direct ? io::CopyMethod::splice_direct
                                               : io::CopyMethod::splice;
  }
  const TempDir dir_;
};

TEST_P(CopyLayingPages, LaysThePublishedPagesOverItsBytes) {
  const std::size_t kPage = page();
  const fs::path source = dir_ / "source";
  const fs::path pages_file = dir_ / "pages";
  const fs::path copy = dir_ / "copy";
  const std::string bytes = random_bytes((std::size_t{3} << 20) + kPage / 2);
  const std::string pages = random_bytes(4 * kPage + 100);
  write_file(source, bytes);
  write_file(pages_file, pages);
  io::LateOverlay overlay;
  // (`from` at odd offsets, as a WAL's frames are.) The third page reaches past the end, the
  // fourth lies beyond it; both would be read short (past the pages file's end) if read.
  overlay.publish(io::UniqueFd(::open(pages_file.c_str(), O_RDONLY | O_CLOEXEC)), kPage,
                  {{(std::size_t{1} << 20) + kPage, 100},
                   {(std::uint64_t{2} << 20) + 8 * kPage, 100 + kPage},
                   {bytes.size() - kPage / 2, 100 + 4 * kPage},
                   {bytes.size() + kPage, 100 + 5 * kPage}});
  std::string expected = bytes;
  expected.replace((std::size_t{1} << 20) + kPage, kPage, pages.substr(100, kPage));
  expected.replace((std::size_t{2} << 20) + 8 * kPage, kPage, pages.substr(100 + kPage, kPage));
  {
    const io::UniqueFd in(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
    io::UniqueFd out(::open(copy.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    const io::CopyOutcome outcome = io::copy_file_contents(in.get(), source, out.get(), copy, {},
                                                           write_out(), nullptr, &overlay);
    // (The position is at the end, as after the other methods.)
    EXPECT_EQ(::lseek(out.get(), 0, SEEK_CUR), static_cast<off_t>(bytes.size()));
    out.close(copy);
    EXPECT_EQ(outcome.method, method());
  }
  // (From the second chunk: the first proves the source can be spliced.)
  EXPECT_EQ(overlay.taken_from(), std::uint64_t{1} << 20);
  EXPECT_FALSE(overlay.read_short()) << "no page past the end is read";
  if (write_out() == io::WriteOut::direct) {
    EXPECT_EQ(cached_pages(copy, std::size_t{3} << 20), 0U);
  }
  EXPECT_TRUE(read_file(copy) == expected);

  // A page of the overlay's file that is not whole any more.
  io::LateOverlay cut;
  cut.publish(io::UniqueFd(::open(pages_file.c_str(), O_RDONLY | O_CLOEXEC)), kPage,
              {{(std::size_t{1} << 20) + 2 * kPage, 100 + 3 * kPage + 1}});
  const io::UniqueFd in(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
  io::UniqueFd out(::open((dir_ / "cut").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  io::copy_file_contents(in.get(), source, out.get(), dir_ / "cut", {}, write_out(), nullptr, &cut);
  EXPECT_TRUE(cut.read_short());
}

// Pages published while the copy runs are laid over only from the chunk the copy starts
// next: what it passed stays the source's (the publisher writes those pages itself).
TEST_P(CopyLayingPages, TakesPagesPublishedMidwayFromItsNextChunk) {
  const std::size_t kPage = page();
  const fs::path source = dir_ / "source";
  const fs::path pages_file = dir_ / "pages";
  const fs::path copy = dir_ / "copy";
  const std::string bytes = random_bytes(std::size_t{3} << 20);
  const std::string pages = random_bytes(2 * kPage);
  write_file(source, bytes);
  write_file(pages_file, pages);
  io::LateOverlay overlay;
  std::uint64_t published_at = 0;
  const io::UniqueFd in(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
  io::UniqueFd out(::open(copy.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  io::copy_file_contents(
      in.get(), source, out.get(), copy,
      [&](std::uint64_t done) {
        if (published_at == 0) {
          published_at = done;
          // One page the copy has passed, one it has not.
          overlay.publish(io::UniqueFd(::open(pages_file.c_str(), O_RDONLY | O_CLOEXEC)), kPage,
                          {{done - kPage, 0}, {done + kPage, kPage}});
        }
        return true;
      },
      write_out(), nullptr, &overlay);
  out.close(copy);
  ASSERT_GT(published_at, 0U);
  ASSERT_LT(published_at, bytes.size() - 2 * kPage);
  EXPECT_EQ(overlay.taken_from(), published_at);
  std::string expected = bytes;
  expected.replace(published_at + kPage, kPage, pages.substr(kPage, kPage));
  EXPECT_TRUE(read_file(copy) == expected);
}

// A chunk that starts inside a page passes that page without laying it: the source ended
// mid-page (1.5 MiB and 100 bytes) after the second chunk, then grew before the third. The
// copy must say that its pages prove nothing, or their publisher would take the page at
// 1.5 MiB as laid.
TEST_P(CopyLayingPages, AChunkStartingInsideAPageVoidsThePages) {
  const std::size_t kPage = page();
  const fs::path source = dir_ / "source";
  const fs::path pages_file = dir_ / "pages";
  const fs::path copy = dir_ / "copy";
  const std::uint64_t mid_page_end = (std::uint64_t{3} << 19) + 100;
  write_file(source, random_bytes(mid_page_end));
  write_file(pages_file, random_bytes(2 * kPage));
  io::LateOverlay overlay;
  overlay.publish(io::UniqueFd(::open(pages_file.c_str(), O_RDONLY | O_CLOEXEC)), kPage,
                  {{std::uint64_t{3} << 19, 0}, {(std::uint64_t{3} << 19) + 2 * kPage, kPage}});
  const io::UniqueFd in(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
  io::UniqueFd out(::open(copy.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  bool grown = false;
  const io::CopyOutcome outcome = io::copy_file_contents(
      in.get(), source, out.get(), copy,
      [&](std::uint64_t done) {
        if (done == mid_page_end && !grown) {
          grown = true;
          ::truncate(source.c_str(), static_cast<off_t>(mid_page_end + 4 * kPage));
        }
        return true;
      },
      write_out(), nullptr, &overlay);
  out.close(copy);
  ASSERT_TRUE(grown) << "the copy never ended a chunk at the source's end";
  EXPECT_EQ(outcome.bytes, mid_page_end + 4 * kPage);
  EXPECT_EQ(overlay.taken_from(), std::uint64_t{1} << 20);
  EXPECT_TRUE(overlay.read_short());
}

// A destination that takes no splice (no filesystem here refuses one, so a seccomp filter
// in a child process makes splice into the destination's descriptor fail with EINVAL): the
// first chunk has written nothing yet, so the copy falls back to the kernel's copy, whole
// and byte for byte, and takes no page (their publisher writes them all).
TEST_P(CopyLayingPages, FallsBackWhereTheDestinationRefusesSplice) {
#if defined(__x86_64__)
  const fs::path source = dir_ / "source";
  const fs::path pages_file = dir_ / "pages";
  const fs::path copy = dir_ / "copy";
  const std::string bytes = random_bytes(std::size_t{3} << 20);
  write_file(source, bytes);
  write_file(pages_file, random_bytes(page()));
  {
    // The control, without the filter: this copy goes through the pipe, so it is the refusal
    // that sends the child's to the kernel's copy.
    const io::UniqueFd in(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
    io::UniqueFd out(
        ::open((dir_ / "control").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    io::LateOverlay overlay;
    overlay.publish(io::UniqueFd(::open(pages_file.c_str(), O_RDONLY | O_CLOEXEC)), page(),
                    {{std::uint64_t{1} << 20, 0}});
    const io::CopyOutcome outcome = io::copy_file_contents(
        in.get(), source, out.get(), dir_ / "control", {}, write_out(), nullptr, &overlay);
    out.close(dir_ / "control");
    ASSERT_EQ(outcome.method, method());
  }
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // (Only async-signal-safe work would be strictly allowed after fork in a threaded
    // process; this child runs one copy on its one thread and leaves with _exit.)
    const io::UniqueFd in(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
    io::UniqueFd out(::open(copy.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    const auto destination = static_cast<std::uint32_t>(out.get());
    std::array<sock_filter, 9> filter{{
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_splice, 0, 3),
        // splice(fd_in, off_in, fd_out, ...): the low half of fd_out (little-endian).
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[2])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, destination, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EINVAL & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    }};
    const sock_fprog program{static_cast<unsigned short>(filter.size()), filter.data()};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
      ::_exit(2);
    }
    io::LateOverlay overlay;
    overlay.publish(io::UniqueFd(::open(pages_file.c_str(), O_RDONLY | O_CLOEXEC)), page(),
                    {{std::uint64_t{1} << 20, 0}});
    const io::CopyOutcome outcome = io::copy_file_contents(in.get(), source, out.get(), copy, {},
                                                           write_out(), nullptr, &overlay);
    out.close(copy);
    const bool kernels = outcome.method == io::CopyMethod::copy_file_range ||
                         outcome.method == io::CopyMethod::sendfile;
    const bool whole = outcome.bytes == bytes.size() && read_file(copy) == bytes;
    const bool untaken = overlay.taken_from() == ~std::uint64_t{0};
    ::_exit(kernels && whole && untaken ? 0 : 3);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died (status " << status << ")";
  EXPECT_NE(WEXITSTATUS(status), 2) << "the seccomp filter could not be installed";
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "the copy did not fall back to the kernel's copy, whole, without taking the pages";
#else
  GTEST_SKIP() << "the seccomp filter of this test is written for x86-64";
#endif
}

INSTANTIATE_TEST_SUITE_P(PageSizeAndWrites, CopyLayingPages,
                         ::testing::Combine(::testing::Values(4096, 1024),
                                            ::testing::Values(io::WriteOut::cached,
                                                              io::WriteOut::direct)),
                         [](const auto& test) {
                           return std::to_string(std::get<0>(test.param)) +
                                  (std::get<1>(test.param) == io::WriteOut::direct ? "Direct"
                                                                                   : "Cached");
                         });

// Without pages to lay over, a copy through the page cache is the kernel's own
// (copy_file_range here): the pipe is for direct writes and overlays only.
TEST(CachedCopy, WithoutPagesToLayIsTheKernels) {
  const TempDir dir;
  const fs::path source = dir / "source";
  const fs::path copy = dir / "copy";
  const std::string bytes = random_bytes(std::size_t{2} << 20);
  write_file(source, bytes);
  const io::UniqueFd in(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
  io::UniqueFd out(::open(copy.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  const io::CopyOutcome outcome =
      io::copy_file_contents(in.get(), source, out.get(), copy, {}, io::WriteOut::cached);
  out.close(copy);
  EXPECT_NE(outcome.method, io::CopyMethod::splice);
  EXPECT_NE(outcome.method, io::CopyMethod::splice_direct);
  EXPECT_TRUE(read_file(copy) == bytes);
}

// The choice: direct writes for a durable copy of a large database only, with a live WAL
// applied (so no content comparison reads the copy back); early writeback for other durable
// database copies; the page cache alone for side files and copies no fsync follows.
TEST(DirectWrites, OnlyForALargeDurableDatabaseCopyWithAWalApplied) {
  snapshot::Settings durable;
  durable.start_writeback = true;
  const snapshot::Settings not_durable;
  const std::uint64_t large = snapshot::kDirectWritesFrom;
  EXPECT_EQ(snapshot::write_out_of(durable, true, true, large), io::WriteOut::direct);
  EXPECT_EQ(snapshot::write_out_of(durable, true, true, large - 4096), io::WriteOut::early);
  EXPECT_EQ(snapshot::write_out_of(durable, true, false, large), io::WriteOut::early);
  EXPECT_EQ(snapshot::write_out_of(durable, false, true, large), io::WriteOut::cached);
  EXPECT_EQ(snapshot::write_out_of(not_durable, true, true, large), io::WriteOut::cached);
}

}  // namespace
}  // namespace sqlite_backup::testing
