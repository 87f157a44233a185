// The reference every WAL test compares a snapshot with: the source's database and WAL copied
// as they are now, and the WAL applied to the copy by recover::apply_wal().
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "recover/apply_wal.hpp"
#include "test_support.hpp"

namespace sqlite_backup::testing {

// Copies `source` and its -wal to `plain` and `plain`-wal (replacing what is there), applies
// the WAL and returns the result's bytes. A failed application is a test failure.
inline std::string plain_application_of(const fs::path& source, const fs::path& plain) {
  const fs::path wal = plain.string() + "-wal";
  fs::copy_file(source, plain, fs::copy_options::overwrite_existing);
  fs::copy_file(source.string() + "-wal", wal, fs::copy_options::overwrite_existing);
  EXPECT_TRUE(recover::apply_wal(plain, wal, nullptr, source).applied);
  return read_file(plain);
}

}  // namespace sqlite_backup::testing
