// The status file a sqlite_churn writer publishes and the stress harness reads: one
// definition of its layout for both sides. Each field is an aligned int64, stored and loaded
// atomically through a shared mapping, so a reader never sees a torn value.
#pragma once

#include <cstddef>

namespace sqlite_backup::testing::churn {

// Slot index (in int64s) of each counter.
enum class StatusField : std::size_t {
  committed = 0,  // seq of the last committed transaction
  pending = 1,    // seq of the transaction being written
  transactions = 2,
  busy_retries = 3,
  checkpoints = 4,
  big_transactions = 5,
  ready = 6,
  cache_spills = 7,  // pages spilled to the database file before COMMIT
};

inline constexpr std::size_t kStatusBytes = 4096;

}  // namespace sqlite_backup::testing::churn
