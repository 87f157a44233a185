// Part of stage 4: moving the committed content of a staged WAL into the staged database
// file ourselves, as SQLite's checkpoint would, instead of having SQLite rebuild its WAL
// index page by page and then checkpoint.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace sqlite_backup::recover {

struct WalApplication {
  // false: the WAL is left, untouched, for SQLite to replay (why_not says why); nothing was
  // written. true: its committed pages are in the database file and the WAL is deleted.
  bool applied = false;
  std::string why_not;
  std::uint64_t valid_frames = 0;      // frames SQLite would accept (salts and checksums)
  std::uint64_t wal_bytes = 0;         // the WAL's header and those frames, in bytes
  std::uint64_t committed_frames = 0;  // of those, up to the last commit frame
  std::uint64_t pages_written = 0;     // distinct pages written into the database
  bool left_wal_mode = false;          // the header was switched to rollback mode, as below
  // A live WAL was cut while it was read (apply_live_wal): the image is partly written, and
  // the attempt must be dropped.
  bool cut_while_read = false;
  // The WAL's 32-byte header as read (all zero when the WAL was no longer than that): the
  // generation the frames came from, for the validation of a live WAL.
  std::array<std::byte, 32> wal_header{};
};

// Where the database being recovered lives: a staged file (FileImage, apply_wal.cpp) or memory
// SQLite will own (MemoryImage, memory_image.hpp). Errors throw SqliteBackupError.
class DatabaseImage {
 public:
  DatabaseImage() = default;
  DatabaseImage(const DatabaseImage&) = delete;
  DatabaseImage& operator=(const DatabaseImage&) = delete;
  DatabaseImage(DatabaseImage&&) = delete;
  DatabaseImage& operator=(DatabaseImage&&) = delete;
  virtual ~DatabaseImage() = default;

  [[nodiscard]] virtual std::uint64_t size() = 0;
  // Up to buffer.size() bytes at offset; fewer only at the end.
  virtual std::size_t read(std::span<std::byte> buffer, std::uint64_t offset) = 0;
  virtual void write(std::span<const std::byte> bytes, std::uint64_t offset) = 0;
  // Pages that belong at consecutive page numbers from `first_page` (1-based) on.
  virtual void write_pages(std::uint32_t first_page, std::span<const std::byte* const> pages,
                           std::size_t page_size) = 0;
  // Cuts or extends (with zeros) to `size` bytes.
  virtual void resize(std::uint64_t size) = 0;
  // The image's own bytes, when it is plain memory, first extended (with zeros) to `size`
  // when shorter: apply_live_wal() then reads the frames straight into their pages. nullptr
  // (a file) when not.
  virtual std::byte* bytes_extended_to(std::uint64_t /*size*/) { return nullptr; }
  // Everything written is where it belongs (a file is closed, reporting a write error some
  // filesystems report only then); nothing is written after it.
  virtual void finish() = 0;
};

// Writes the pages that belong at consecutive page numbers from `first_page` on into the file
// behind `fd`, each taken from where `pages[i]` points, in as few system calls as the kernel
// allows (pwritev). `vectors` is scratch space (its size bounds the pages per call). Errors
// throw SqliteBackupError(io) "cannot write <written>: <reason>".
void write_run(int fd, std::uint32_t first_page, std::span<const std::byte* const> pages,
               std::size_t page_size, std::span<iovec> vectors,
               const std::filesystem::path& written);

// Applies `wal` to `database` (both private staged copies) exactly as SQLite recovers and
// then fully checkpoints a WAL: the frames it would accept are those with the header's
// salts and an unbroken chain of checksums; of those, the ones up to the last commit frame
// count; the latest frame of each page wins; pages past the last commit's database size are
// skipped and the file is cut (or extended) to that size. Then the header is switched out
// of WAL mode as `PRAGMA journal_mode=DELETE` would switch it, and `wal` is deleted.
//
// Anything unusual (a WAL header SQLite would ignore or reject, a page size differing from
// the database's, an empty or too-short database file) is left for SQLite: the result is then
// `applied == false` and neither file was modified. Errors throw SqliteBackupError: reading
// names `source`, writing names `database` (where a full disk is; the caller names it as the
// destination it becomes); cancellation is ErrorKind::cancelled. Not thread-safe on the same
// files.
WalApplication apply_wal(const std::filesystem::path& database, const std::filesystem::path& wal,
                         const std::atomic<bool>* cancel, const std::filesystem::path& source);

// A first look at the source's live WAL, before its database is read: the pages its committed
// frames hold, which go into the copy of the database while it is made (laid into its chunks,
// or written ahead), before apply_live_wal() writes what later frames changed. Frames committed in
// one generation of the WAL are never rewritten, so the application after the database copy finds
// them all again, provided the WAL header it reads is `wal_header` (the caller checks). Page 1 is
// never listed (the application reads the copy's header). nullopt when the WAL has no committed
// frame or is not one this library applies. Read errors name `source`.
struct WalPages {
  std::array<std::byte, 32> wal_header{};
  std::uint32_t page_size = 0;
  std::vector<std::uint32_t> pages;  // ascending, each once
  // Where the scan stood at the last committed frame, so that apply_live_wal() goes on from
  // there instead of reading those frames again for their checksums.
  std::vector<std::uint32_t> page_of_frame;  // the committed frames' pages, in frame order
  std::uint32_t pages_after_commit = 0;
  std::optional<std::array<std::byte, 100>> page1;  // page 1 as a committed frame rewrote it
  std::array<std::uint32_t, 2> checksum{};          // the chain at the last committed frame
  // Set once every listed page is in the database copy, each from its latest frame up to this
  // frame (the look's last committed frame): written by write_looked_pages(), or laid over
  // the copy's own bytes by the copy (io::LateOverlay), each page read whole.
  // apply_live_wal() then writes only the pages a later frame changed. 0: it writes them all.
  std::uint32_t written_through_frame = 0;
  // The database copy's size when its copy ended, before write_looked_pages() could extend
  // it with pages past that end (0: unknown, the file's own size counts). apply_live_wal()
  // judges whether the WAL's last commit can be filled by this size, as SQLite judges it
  // by the database file's: the pages written ahead must not make a WAL SQLite refuses
  // look acceptable.
  std::uint64_t database_bytes_copied = 0;
};
std::optional<WalPages> committed_pages_of_live_wal(int wal_fd, const std::atomic<bool>* cancel,
                                                    const std::filesystem::path& source);

// While the database is still being copied into `database_fd` (the staged copy), writes into
// it the pages `look` lists, each from its latest frame up to the look's last commit, read
// from the source's live WAL through `wal_fd`: in page order, each run of pages only once
// `copied_through(end)` has returned true for the run's end (it waits until the copy has
// passed that offset, so the copy never overwrites what was written here; false stops this,
// having written what it had). Returns true when every listed page was written: the caller
// then sets look.written_through_frame. A WAL read short (cut by its owner) stops it too:
// what was written is then proven by nothing, and the application after the copy, which
// finds the WAL changed, ends the attempt. Read errors name `source`, write errors
// `database` (the staged copy); cancellation is ErrorKind::cancelled.
// `written_by_copy(offset)`, when given, says the copy itself wrote the page at that offset
// (laid over its bytes, see io::LateOverlay), asked once the copy has passed it: such pages are
// left out.
bool write_looked_pages(const WalPages& look, int wal_fd, int database_fd,
                        const std::function<bool(std::uint64_t end)>& copied_through,
                        const std::atomic<bool>* cancel, const std::filesystem::path& source,
                        const std::filesystem::path& database,
                        const std::function<bool(std::uint64_t begin)>& written_by_copy = {});

// Where write_looked_pages() reads each page `look` lists from: the offset in the WAL of the
// data of its latest frame up to the look's last commit, in the order of look.pages (0: no
// such frame, which a look does not produce).
std::vector<std::uint64_t> wal_offsets_of_looked_pages(const WalPages& look);

// apply_wal(), into a database image held elsewhere (memory), straight from the source's own
// WAL, read through `wal_fd` (never mapped, never written): the snapshot of a live WAL
// written once, with no staged copy of the WAL written and read back. Its owner may append to
// the WAL, restart it or cut it meanwhile, so what was read is proven only by the validation
// that follows (result.wal_header is the generation read; the caller's look at the set after
// this call must find the same header). A WAL cut under the reads ends in `applied == false`
// with the image partly written: the caller drops it, as it does any attempt that does not
// validate (result.cut_while_read). Read errors name `source`.
WalApplication apply_live_wal(DatabaseImage& database, int wal_fd, const std::atomic<bool>* cancel,
                              const std::filesystem::path& source,
                              const WalPages* first_look = nullptr);

// The same into a staged database file (write errors name `database`). With `first_look`
// (taken in the same generation: the header read must be its wal_header, or the look is not
// used) the frames it scanned are not scanned again.
WalApplication apply_live_wal(const std::filesystem::path& database, int wal_fd,
                              const std::atomic<bool>* cancel, const std::filesystem::path& source,
                              const WalPages* first_look = nullptr);

}  // namespace sqlite_backup::recover
