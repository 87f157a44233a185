#include "snapshot/copy_set.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "error_internal.hpp"
#include "io/copy.hpp"
#include "io/file.hpp"
#include "log_internal.hpp"
#include "validate/set_state.hpp"

namespace sqlite_backup::snapshot {
namespace {

using detail::log_debug;
using detail::quoted;
using detail::throw_error;

// Waits before attempt `attempt` (2, 3, ...). A checkpoint or commit that spoiled the last
// attempt is usually over within a millisecond, so the first retries come at once; later
// ones back off exponentially to 32 ms with jitter, so that a steadily writing owner is not
// met at the same phase of its cycle every time, and we never spin.
void back_off(int attempt) {
  if (attempt <= 3) return;
  thread_local std::minstd_rand random{std::random_device{}()};
  const int exponent = std::min(attempt - 3, 5);
  const int ceiling_us = 1000 << exponent;  // 2 ms .. 32 ms
  std::uniform_int_distribution<int> pick(ceiling_us / 4, ceiling_us);
  std::this_thread::sleep_for(std::chrono::microseconds(pick(random)));
}

// When attempts keep colliding with the owner, the best moment to start the next one is
// right after the marker that spoiled the last one has changed: then the copy has the whole
// of the owner's next cycle.
// - Rollback mode: a copy validates only if its window starts inside one transaction (or a
//   quiet moment), so start when a transaction has just begun: the journal is hot with a
//   nonce other than the last one seen.
// - WAL mode: a copy validates only within one WAL generation, so start right after a
//   checkpoint restarted the WAL: its 32-byte header differs from the last one seen.
// Either wait reads a header (read-only) every 0.2 ms and gives up after 40 ms.
enum class Cycle { transaction, wal_generation };

void await_next_cycle(const discover::DatabaseFiles& source, Cycle cycle,
                      const validate::MemberState& seen) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::milliseconds(40);
  const bool seen_hot = validate::journal_is_hot(seen);
  while (clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    if (cycle == Cycle::wal_generation) {
      const validate::MemberState now =
          validate::capture_member(source.wal, validate::kWalHeaderSize);
      if (now.exists != seen.exists || now.header_bytes != seen.header_bytes ||
          std::memcmp(now.header.data(), seen.header.data(), validate::kWalHeaderSize) != 0) {
        return;
      }
      continue;
    }
    const validate::MemberState now =
        validate::capture_member(source.journal, validate::kJournalHeaderSize);
    if (validate::journal_is_hot(now) &&
        !(seen_hot && std::memcmp(now.header.data() + 12, seen.header.data() + 12, 8) == 0)) {
      return;
    }
  }
}

struct Member {
  const std::filesystem::path* source;
  std::filesystem::path staged;
};

// Our copy: the staged file is created new (O_EXCL: a leftover would mean a bug), mode 0600
// until commit gives it the source's bits.
std::uint64_t copy_member(const std::filesystem::path& source, io::UniqueFd in,
                          const std::filesystem::path& staged, const Settings& settings,
                          std::uint64_t done_before, std::uint64_t total, int attempt,
                          bool& vanished) {
  if (!in) in = io::open_source_file(source);
  if (!in) {
    vanished = true;
    return 0;
  }
  const std::filesystem::path& shown =
      settings.destination_for_errors.empty() ? staged : settings.destination_for_errors;
  io::UniqueFd out(::open(staged.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!out) io::throw_errno(errno, "cannot create a temporary file for", shown);
  const auto observer = [&](std::uint64_t done) {
    if (detail::cancelled(settings.cancel)) return false;
    if (settings.on_progress) settings.on_progress({done_before + done, total, attempt});
    return true;
  };
  const io::CopyOutcome outcome = io::copy_file_contents(in.get(), source, out.get(), shown,
                                                         observer, settings.start_writeback);
  detail::throw_if_cancelled(settings.cancel, source);
  log_debug("copied {} ({} bytes, {})", quoted(source), outcome.bytes,
            io::to_string(outcome.method));
  return outcome.bytes;
}

void remove_staged(const std::vector<Member>& members) {
  for (const auto& member : members) ::unlink(member.staged.c_str());
}

// Copies each member in order; false when a member vanished or the caller's copy function
// reported a change. `bytes` is set to what was copied.
bool copy_members(const std::vector<Member>& members, io::UniqueFd held_journal,
                  const discover::DatabaseFiles& source, const Settings& settings,
                  std::uint64_t total, int attempt, std::uint64_t& bytes) {
  bool copies_settled = true;
  std::uint64_t done = 0;
  for (const auto& member : members) {
    if (settings.copy_function) {
      // The caller's copy says itself whether the file changed under it; the whole-set
      // judgement still applies on top.
      if (!settings.copy_function(*member.source, member.staged)) copies_settled = false;
      detail::throw_if_cancelled(settings.cancel, source.database);
      continue;
    }
    bool vanished = false;
    // Only the journal member takes the descriptor held since before the first look.
    io::UniqueFd held = member.source == &source.journal
                            ? std::exchange(held_journal, io::UniqueFd())
                            : io::UniqueFd();
    done += copy_member(*member.source, std::move(held), member.staged, settings, done, total,
                        attempt, vanished);
    if (vanished) copies_settled = false;
  }
  bytes = done;
  return copies_settled;
}

// The second look at the source, and the content comparison where judge() asks for one.
// The comparison happens before the last look, so that the look also covers it.
validate::Verdict judge_copy(const discover::DatabaseFiles& source,
                             const discover::DatabaseFiles& staged_files,
                             const validate::SetState& before) {
  const validate::MemberState staged_wal =
      validate::capture_member(staged_files.wal, validate::kWalHeaderSize);
  const validate::MemberState staged_journal =
      validate::capture_member(staged_files.journal, validate::kJournalHeaderSize);
  const auto judge_against = [&](const validate::SetState& after) {
    return validate::judge(before, after, staged_wal, staged_journal, staged_files.journal);
  };
  validate::Verdict verdict = judge_against(validate::capture(source));
  if (!verdict.consistent || verdict.need != validate::Need::content_comparison) return verdict;
  if (!validate::same_contents(source.database, staged_files.database)) {
    return {false, validate::Need::nothing_more,
            "the database changed during the copy (contents differ)"};
  }
  return judge_against(validate::capture(source));
}

}  // namespace

Outcome copy_consistent_set(const discover::DatabaseFiles& source,
                            const std::filesystem::path& staged, const Settings& settings) {
  const discover::DatabaseFiles staged_files(staged);
  Outcome outcome;
  // Set when an attempt is rejected: which cycle of the owner's to wait for, and the marker
  // (journal or WAL header) the attempt saw.
  std::optional<std::pair<Cycle, validate::MemberState>> last_seen;
  for (int attempt = 1; attempt <= settings.attempts; ++attempt) {
    detail::throw_if_cancelled(settings.cancel, source.database);
    if (attempt > 1) {
      if (last_seen) {
        await_next_cycle(source, last_seen->first, last_seen->second);
      } else {
        back_off(attempt);
      }
    }
    outcome.attempts = attempt;
    last_seen.reset();

    // The journal is opened before the first look and read through this descriptor after
    // the database: should its transaction commit meanwhile and delete it, the descriptor
    // still reads the whole file (see judge()).
    io::UniqueFd held_journal = io::open_source_file(source.journal);
    const validate::SetState before = validate::capture(source);
    if (held_journal && !(before.journal.exists && before.journal.stat.same_file(io::stat_fd(
                                                       held_journal.get(), source.journal)))) {
      outcome.last_reason = "the journal changed as we opened it";
      log_debug("attempt {} of {}: {}; copying again", attempt, settings.attempts,
                outcome.last_reason);
      continue;
    }
    if (!before.database.exists) {
      throw_error(ErrorKind::io, source.database,
                  "cannot read {}: the database was deleted while it was being copied",
                  quoted(source.database));
    }

    // Database first, then the WAL, then the journal: judge() relies on this order.
    std::vector<Member> members{{&source.database, staged_files.database}};
    if (before.wal.exists) members.push_back({&source.wal, staged_files.wal});
    if (held_journal) members.push_back({&source.journal, staged_files.journal});
    remove_staged({{&source.database, staged_files.database},
                   {&source.wal, staged_files.wal},
                   {&source.journal, staged_files.journal}});

    std::uint64_t total = before.database.stat.size;
    if (before.wal.exists) total += before.wal.stat.size;
    if (before.journal.exists) total += before.journal.stat.size;

    const bool copies_settled = copy_members(members, std::move(held_journal), source, settings,
                                             total, attempt, outcome.bytes);

    const validate::Verdict verdict =
        copies_settled ? judge_copy(source, staged_files, before)
                       : validate::Verdict{false, validate::Need::nothing_more,
                                           settings.copy_function
                                               ? "the copy function reported a change"
                                               : "a file vanished while it was being copied"};
    if (verdict.consistent) {
      outcome.validated = true;
      log_debug("attempt {}: the copy of {} is one consistent state", attempt,
                quoted(source.database));
      return outcome;
    }
    outcome.last_reason = verdict.reason;
    // A -wal file (even an empty one) means WAL mode; without one, rollback mode.
    last_seen = before.wal.exists ? std::pair{Cycle::wal_generation, before.wal}
                                  : std::pair{Cycle::transaction, before.journal};
    log_debug("attempt {} of {}: {}; copying again", attempt, settings.attempts, verdict.reason);
  }
  return outcome;
}

}  // namespace sqlite_backup::snapshot
