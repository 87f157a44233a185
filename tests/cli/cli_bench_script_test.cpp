// bench/run, the benchmark's one command, on a fresh clone: its first step (configuring the
// build) must work when the build folder and its parent do not exist yet. cmake itself is a
// stub here (first on PATH) that says it ran and fails, so nothing is built or measured.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "cli_harness.hpp"

namespace cli_test {
namespace {

const fs::path kSourceDir = SQLITE_BACKUP_SOURCE_DIR;

TEST(BenchScript, ConfiguresIntoABuildFolderThatDoesNotExistYet) {
  if (!fs::exists("/bin/bash")) GTEST_SKIP() << "bash is not installed";
  TempDir dir;
  fs::create_directory(dir / "bin");
  write_file(dir / "bin" / "cmake", "#!/bin/sh\necho \"stub cmake ran: $*\"\nexit 1\n");
  ASSERT_EQ(::chmod((dir / "bin" / "cmake").c_str(), 0755), 0);
  const fs::path build_dir = dir / "fresh-clone" / "build" / "bench";
  const char* path = std::getenv("PATH");
  RunSettings settings;
  settings.environment = {
      {"PATH", (dir / "bin").string() + ":" + (path != nullptr ? path : "/usr/bin:/bin")},
      {"BENCH_BUILD_DIR", build_dir.string()}};
  Child run("/bin/bash", {(kSourceDir / "bench" / "run").string(), "--no-deps"}, settings);
  const Result result = run.finish();
  EXPECT_EQ(result.exit_code, 1) << describe(result);
  // The configure step ran and its log was kept (and shown), rather than the shell failing to
  // open the log in a folder that does not exist.
  EXPECT_TRUE(contains(result.err, "stub cmake ran")) << describe(result);
  EXPECT_TRUE(contains(result.err, "bench: cmake configure failed")) << describe(result);
  EXPECT_FALSE(contains(result.err, "No such file or directory")) << describe(result);
  EXPECT_TRUE(fs::exists(build_dir / "configure.log"));
}

}  // namespace
}  // namespace cli_test
