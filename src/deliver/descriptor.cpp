#include "deliver/descriptor.hpp"

#include <fmt/format.h>

#include "error_internal.hpp"
#include "io/copy.hpp"
#include "io/file.hpp"

namespace sqlite_backup::deliver {

void to_descriptor(const std::filesystem::path& staged, int fd, const std::filesystem::path& source,
                   const std::atomic<bool>* cancel) {
  const io::UniqueFd in = io::open_source_file(staged);
  if (!in) io::throw_errno(errno, "cannot read the snapshot of", source);
  const std::filesystem::path output = fmt::format("/dev/fd/{}", fd);
  io::copy_file_contents(in.get(), staged, fd, output,
                         [cancel](std::uint64_t) { return !detail::cancelled(cancel); });
  detail::throw_if_cancelled(cancel, source);
}

}  // namespace sqlite_backup::deliver
