// Stage 4 of the pipeline: turning a validated copy (staged files) into one self-contained
// database, as SQLite would find it after a crash of the owner: the WAL applied, a journal of
// a commit made during the copy rolled back, the result switched to journal_mode=DELETE and
// checked. What becomes of it is deliver/'s job. Its memory counterpart, a WAL applied to an
// image in memory, is apply_wal.hpp's MemoryImage.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <sqlite_backup/sqlite_backup.hpp>

namespace sqlite_backup::recover {

// What this stage needs of the caller's Options, and nothing more (sqlite_backup.cpp builds
// it, and sets each field for the step at hand).
struct Settings {
  ConnectOptions connect{};      // how SQLite opens the copy (the reference's connect kwargs)
  Verify verify = Verify::none;  // the integrity check of the result
  bool wal_checkpoint = true;    // the reference's wal_checkpoint(TRUNCATE) on the result
  const std::atomic<bool>* cancel = nullptr;
  // A journal hot throughout the copy, staged beside it, is rolled back through roll_back()
  // (checked page by page) before SQLite's own recovery; off for a copy kept unvalidated
  // (copy_retry_strict off), which SQLite recovers as it can and the caller checks.
  bool prove_rollback = true;
};

struct DatabaseFacts {
  std::uint64_t pages = 0;
  int page_size = 0;
};

// Applies the staged copy's WAL (apply_wal(); SQLite replays it where that declines), then
// opens the copy with SQLite, which rolls back a hot journal (inside the private folder:
// the source is not involved), switches it to journal_mode=DELETE so that it is one
// self-contained file, runs the reference's wal_checkpoint(TRUNCATE) when asked, and the
// integrity check of settings.verify. Afterwards the folder holds the database file only.
// Errors about the copy's contents name `source` (what the user knows); failures to open or
// write the copy name `staged` (where a full disk is: the caller names it as the destination
// it becomes, see detail::naming_private_files_as).
DatabaseFacts recover_in_place(const std::filesystem::path& staged, const Settings& settings,
                               const std::filesystem::path& source);

// Rolls the staged copy back through `journal` (a transaction that committed while it was
// copied): the journal is moved beside the copy as its -journal, and SQLite, opening the
// copy, finds it hot and plays it back (checksums, original size), then deletes it. SQLite
// also deletes, silently, a journal it will not play back, so success is checked on the
// result: page 1 must then show `expected_change_counter`, the transaction's original (none
// for a commit that left the counter alone), and the page of the journal's first record its
// original. Errors name `source`, or `staged` as recover_in_place() says.
void roll_back(const std::filesystem::path& staged, const std::filesystem::path& journal,
               std::optional<std::uint32_t> expected_change_counter, const Settings& settings,
               const std::filesystem::path& source);

}  // namespace sqlite_backup::recover
