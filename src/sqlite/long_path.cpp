#include "sqlite/long_path.hpp"

#include <fcntl.h>
#include <sqlite3.h>

#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string_view>

#include "error_internal.hpp"
#include "sqlite/uri.hpp"

namespace sqlite_backup::sql {
namespace {

namespace fs = std::filesystem;

// SQLite's unix VFS limit (MAX_PATHNAME) is 512 bytes for the resolved path, and it derives
// longer names from it (-journal, -wal, -shm, a super-journal's -mjXXXXXXXXXX): keep well
// clear of it.
constexpr std::size_t kLongestPathForSqlite = 400;
constexpr std::string_view kFdPrefix = "/proc/self/fd/";

sqlite3_vfs* base_of(sqlite3_vfs* wrapper) { return static_cast<sqlite3_vfs*>(wrapper->pAppData); }

// The only method that differs: a /proc/self/fd/N/NAME name is already absolute and short;
// resolving its magic link would give the long path back.
int full_pathname(sqlite3_vfs* vfs, const char* name, int size, char* out) {
  const std::size_t length = std::strlen(name);
  if (std::string_view(name).substr(0, kFdPrefix.size()) == kFdPrefix) {
    if (length + 1 > static_cast<std::size_t>(size)) return SQLITE_CANTOPEN;
    std::memcpy(out, name, length + 1);
    return SQLITE_OK;
  }
  return base_of(vfs)->xFullPathname(base_of(vfs), name, size, out);
}

// Every other method calls the base VFS with the base VFS itself, so a VFS that keeps its
// state behind its own pointer (pAppData, or a larger struct) works unchanged.
sqlite3_vfs make_wrapper(sqlite3_vfs* base, const char* name) {
  sqlite3_vfs vfs{};
  vfs.iVersion = base->iVersion < 3 ? base->iVersion : 3;
  vfs.szOsFile = base->szOsFile;
  vfs.mxPathname = base->mxPathname;
  vfs.zName = name;
  vfs.pAppData = base;
  vfs.xOpen = [](sqlite3_vfs* self, const char* file, sqlite3_file* out, int flags, int* got) {
    return base_of(self)->xOpen(base_of(self), file, out, flags, got);
  };
  vfs.xDelete = [](sqlite3_vfs* self, const char* file, int sync) {
    return base_of(self)->xDelete(base_of(self), file, sync);
  };
  vfs.xAccess = [](sqlite3_vfs* self, const char* file, int flags, int* result) {
    return base_of(self)->xAccess(base_of(self), file, flags, result);
  };
  vfs.xFullPathname = full_pathname;
  vfs.xDlOpen = [](sqlite3_vfs* self, const char* file) {
    return base_of(self)->xDlOpen(base_of(self), file);
  };
  vfs.xDlError = [](sqlite3_vfs* self, int size, char* out) {
    base_of(self)->xDlError(base_of(self), size, out);
  };
  vfs.xDlSym = [](sqlite3_vfs* self, void* handle, const char* symbol) {
    return base_of(self)->xDlSym(base_of(self), handle, symbol);
  };
  vfs.xDlClose = [](sqlite3_vfs* self, void* handle) {
    base_of(self)->xDlClose(base_of(self), handle);
  };
  vfs.xRandomness = [](sqlite3_vfs* self, int size, char* out) {
    return base_of(self)->xRandomness(base_of(self), size, out);
  };
  vfs.xSleep = [](sqlite3_vfs* self, int microseconds) {
    return base_of(self)->xSleep(base_of(self), microseconds);
  };
  vfs.xCurrentTime = [](sqlite3_vfs* self, double* now) {
    return base_of(self)->xCurrentTime(base_of(self), now);
  };
  vfs.xGetLastError = [](sqlite3_vfs* self, int size, char* out) {
    return base_of(self)->xGetLastError != nullptr
               ? base_of(self)->xGetLastError(base_of(self), size, out)
               : 0;
  };
  if (vfs.iVersion >= 2) {
    vfs.xCurrentTimeInt64 = [](sqlite3_vfs* self, sqlite3_int64* now) {
      return base_of(self)->xCurrentTimeInt64(base_of(self), now);
    };
  }
  if (vfs.iVersion >= 3) {
    vfs.xSetSystemCall = [](sqlite3_vfs* self, const char* call, sqlite3_syscall_ptr pointer) {
      return base_of(self)->xSetSystemCall(base_of(self), call, pointer);
    };
    vfs.xGetSystemCall = [](sqlite3_vfs* self, const char* call) {
      return base_of(self)->xGetSystemCall(base_of(self), call);
    };
    vfs.xNextSystemCall = [](sqlite3_vfs* self, const char* call) {
      return base_of(self)->xNextSystemCall(base_of(self), call);
    };
  }
  return vfs;
}

// The wrapper of `base_name` ("" = the default VFS), registered (not as the default) on
// first use and kept for the process's life: SQLite keeps pointers to registered VFSes.
// nullptr when there is no such base VFS.
const char* wrapper_vfs_name(const std::string& base_name) {
  struct Wrapper {
    std::string name;
    sqlite3_vfs vfs{};
  };
  static std::mutex mutex;
  static std::map<sqlite3_vfs*, std::unique_ptr<Wrapper>> wrappers;
  sqlite3_vfs* base = sqlite3_vfs_find(base_name.empty() ? nullptr : base_name.c_str());
  if (base == nullptr) return nullptr;
  const std::lock_guard<std::mutex> lock(mutex);
  auto& wrapper = wrappers[base];
  if (!wrapper) {
    auto made = std::make_unique<Wrapper>();
    made->name = std::string("sqlite_backup-fd-paths-") + (base->zName ? base->zName : "vfs");
    made->vfs = make_wrapper(base, made->name.c_str());
    if (sqlite3_vfs_register(&made->vfs, 0) != SQLITE_OK) return nullptr;
    wrapper = std::move(made);
  }
  return wrapper->name.c_str();
}

// The length SQLite would see: every symbolic link resolved (as its unix VFS does).
std::size_t resolved_length(const fs::path& path) {
  std::error_code error;
  const fs::path resolved = fs::weakly_canonical(fs::absolute(path, error), error);
  return (error ? fs::absolute(path, error) : resolved).native().size();
}

}  // namespace

OpenableFile openable_file(const fs::path& path, const std::string& query, const std::string& vfs) {
  OpenableFile file;
  file.path = path;
  file.vfs = vfs;
  if (resolved_length(path) <= kLongestPathForSqlite || !path.has_filename()) {
    file.uri = file_uri(path, query);
    return file;
  }
  const fs::path folder = path.has_parent_path() ? path.parent_path() : fs::path(".");
  io::UniqueFd folder_fd(::open(folder.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  const char* wrapper = wrapper_vfs_name(vfs);
  if (!folder_fd || wrapper == nullptr) {
    // Let SQLite try, and fail, with the path as it is: its error says why.
    file.uri = file_uri(path, query);
    return file;
  }
  file.uri = file_uri(
      fs::path(std::string(kFdPrefix) + std::to_string(folder_fd.get())) / path.filename(), query);
  file.vfs = wrapper;
  file.folder = std::move(folder_fd);
  return file;
}

}  // namespace sqlite_backup::sql
