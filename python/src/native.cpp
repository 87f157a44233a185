// sqlite_backup._native: the C++ engine for the Python package (python/sqlite_backup/).
//
// The Python modules keep the reference's signatures, defaults and argument checks; this
// module only runs the library and turns its errors into the exceptions the reference raises.
// Every long call releases the GIL and runs on a thread of its own, while the calling thread
// wakes every few milliseconds to let Python run its signal handlers: a KeyboardInterrupt
// there cancels the backup (Options::cancel), which removes what it staged, and is re-raised.
// Python callbacks (copy_function, progress) and the library's log records are handed to the
// calling thread and run there, as in the reference; an exception raised in a callback
// cancels the backup and comes out of the call unchanged.
#include <cxxabi.h>
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sqlite_backup/log.hpp>
#include <sqlite_backup/sqlite_backup.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "command_line.hpp"

namespace py = pybind11;
namespace fs = std::filesystem;
namespace sb = sqlite_backup;

namespace {

// Paths cross the boundary as bytes (os.fsencode), so that every name the OS accepts works,
// including names that are not valid UTF-8.
fs::path to_path(py::handle encoded) {
  char* data = nullptr;
  Py_ssize_t size = 0;
  if (PyBytes_AsStringAndSize(encoded.ptr(), &data, &size) != 0) throw py::error_already_set();
  return {std::string(data, static_cast<std::size_t>(size))};
}
py::object from_path(const fs::path& path) {
  return py::module_::import("os").attr("fsdecode")(py::bytes(path.native()));
}

// The library's text (a message, a log line) as a str: file names in it are bytes, not
// always UTF-8, and a byte that is not becomes an escape (\xff) rather than an error. (The
// exact name is in the error's `path`, from from_path().)
py::str text_of(const std::string& text) {
  PyObject* decoded =
      PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "backslashreplace");
  if (decoded == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(decoded);
}

// sqlite_backup.SqliteBackupError, created at import and never released: a static py::object
// would be released after the interpreter is gone.
py::handle g_backup_error_type;
// Its subclasses that are also what the reference raised for the same failure (there SQLite's
// or the OS's own errors), so that `except sqlite3.Error` and `except OSError` still catch
// them: a source that is no database (sqlite3.DatabaseError), a destination SQLite cannot
// open or an SQLite failure (sqlite3.OperationalError), an I/O error (OSError).
py::handle g_database_error_type;
py::handle g_operational_error_type;
py::handle g_os_error_type;
// A source that is a named pipe, socket or device: also the shutil.SpecialFileError (an
// OSError) that the reference's shutil.copy raised for a named pipe.
py::handle g_special_file_error_type;

// The type of an invalid_source error about `path`: the special-file one when the path is not a
// regular file or a folder (looked at again here: the library's error says so in words only).
py::handle invalid_source_type_for(const fs::path& path) {
  struct stat st {};
  const bool special = !path.empty() && ::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode) &&
                       !S_ISDIR(st.st_mode);
  return special ? g_special_file_error_type : g_database_error_type;
}

py::handle error_type_of(sb::ErrorKind kind) {
  switch (kind) {
    case sb::ErrorKind::invalid_source:
    case sb::ErrorKind::verification_failed:
      return g_database_error_type;
    case sb::ErrorKind::destination:
    case sb::ErrorKind::sqlite:
      return g_operational_error_type;
    case sb::ErrorKind::io:
      return g_os_error_type;
    case sb::ErrorKind::unstable_source:
    case sb::ErrorKind::cancelled:
      break;
  }
  return g_backup_error_type;
}

// SQLite's name for a result code, as Python's sqlite3 puts it in sqlite_errorname: taken from
// that module's own constants. Primary codes by name; an extended code only among the names
// that begin with its primary's (the module's authorizer constants reuse the small values).
// "unknown" for a code the module does not name, as Python says then. GIL held.
py::str sqlite_error_name(int result) {
  static constexpr std::array<const char*, 31> kPrimaryNames = {
      "OK",       "ERROR",    "INTERNAL",  "PERM",   "ABORT",   "BUSY",       "LOCKED",
      "NOMEM",    "READONLY", "INTERRUPT", "IOERR",  "CORRUPT", "NOTFOUND",   "FULL",
      "CANTOPEN", "PROTOCOL", "EMPTY",     "SCHEMA", "TOOBIG",  "CONSTRAINT", "MISMATCH",
      "MISUSE",   "NOLFS",    "AUTH",      "FORMAT", "RANGE",   "NOTADB",     "NOTICE",
      "WARNING",  "ROW",      "DONE"};
  const py::dict constants = py::module_::import("sqlite3").attr("__dict__");
  const auto value_of = [&constants](const std::string& name) -> std::optional<int> {
    if (!constants.contains(name)) return std::nullopt;
    const py::object value = constants[py::str(name)];
    if (!py::isinstance<py::int_>(value)) return std::nullopt;
    return value.cast<int>();
  };
  for (const char* primary : kPrimaryNames) {
    const std::string name = std::string("SQLITE_") + primary;
    if (value_of(name) != (result & 0xff)) continue;
    if (result == (result & 0xff)) return {name};
    const std::string prefix = name + "_";
    for (const auto item : constants) {
      const std::string key = py::str(item.first);
      if (key.rfind(prefix, 0) == 0 && value_of(key) == result) return {key};
    }
  }
  return {"unknown"};
}

// The classes of the I/O errors raised, by (the OSError subclass Python gives the errno,
// whether SQLite reported it): made once at import (make_os_error_types) so that each has a
// name in sqlite_backup.core, and pickles. Never released, as the other types.
py::handle g_os_error_types;

// SqliteBackupOSError for an errno, narrowed as Python narrows OSError (EACCES to
// PermissionError, ENOENT to FileNotFoundError, ...) so that `except PermissionError`
// written for the reference's shutil errors still catches ours; when SQLite reported the
// failure, also a sqlite3.OperationalError, which Python's sqlite3 raised for it in the
// reference. 0: no errno (OSError itself). GIL held.
py::handle os_error_type_for(int system_errno, bool from_sqlite) {
  const py::object os_error = py::module_::import("builtins").attr("OSError");
  const py::object narrowed =
      system_errno != 0 ? py::object(py::type::of(os_error(system_errno, ""))) : os_error;
  const auto types = py::reinterpret_borrow<py::dict>(g_os_error_types);
  const py::tuple key = py::make_tuple(narrowed, from_sqlite);
  if (types.contains(key)) return types[key].ptr();
  return g_os_error_type;
}

void make_os_error_types(py::module_& module, const py::object& operational_error) {
  const py::object os_error = py::module_::import("builtins").attr("OSError");
  py::dict types;
  const auto make = [&module](const std::string& name, const py::tuple& bases, const char* doc) {
    PyObject* type = PyErr_NewExceptionWithDoc(("sqlite_backup.core." + name).c_str(), doc,
                                               bases.ptr(), nullptr);
    if (type == nullptr) throw py::error_already_set();
    module.attr(name.c_str()) = py::reinterpret_steal<py::object>(type);
    return module.attr(name.c_str());
  };
  constexpr const char* kFromSqlite =
      "An I/O error SQLite reported (also a sqlite3.OperationalError).";
  const auto ours = py::reinterpret_borrow<py::object>(g_os_error_type);
  types[py::make_tuple(os_error, false)] = ours;
  types[py::make_tuple(os_error, true)] =
      make("SqliteBackupOperationalOSError", py::make_tuple(ours, operational_error), kFromSqlite);
  for (const auto item : py::module_::import("errno").attr("errorcode").cast<py::dict>()) {
    const py::object narrowed = py::type::of(os_error(item.first, ""));
    if (types.contains(py::make_tuple(narrowed, false))) continue;
    const std::string name = py::str(narrowed.attr("__name__"));
    const py::object base =
        make("SqliteBackup" + name, py::make_tuple(ours, narrowed),
             "An I/O error (also the OSError subclass Python gives its errno).");
    types[py::make_tuple(narrowed, false)] = base;
    types[py::make_tuple(narrowed, true)] = make(
        "SqliteBackupOperational" + name, py::make_tuple(base, operational_error), kFromSqlite);
  }
  g_os_error_types = types.release();
}

// What an error message needs to know of the call that failed.
struct ErrorContext {
  fs::path source;
  int copy_retry = -1;     // >= 0: a source that kept changing gets the reference's message
  fs::path destination{};  // a file destination, when there is one
  // The engine found the source's -wal and -journal itself (a backup, where the reference
  // globbed them): an error naming one is renamed as the caller named the source. Not for
  // the helpers, which name each file as they were given it (atomic_copy's dst may be
  // called like a side file of its src).
  bool side_files_found = false;
};

const char* kind_name(sb::ErrorKind kind) {
  switch (kind) {
    case sb::ErrorKind::invalid_source:
      return "invalid_source";
    case sb::ErrorKind::unstable_source:
      return "unstable_source";
    case sb::ErrorKind::io:
      return "io";
    case sb::ErrorKind::destination:
      return "destination";
    case sb::ErrorKind::sqlite:
      return "sqlite";
    case sb::ErrorKind::verification_failed:
      return "verification_failed";
    case sb::ErrorKind::cancelled:
      return "cancelled";
  }
  return "unknown";
}

// Thrown through the library when a Python callback raised; the Python error itself waits
// in the call's CallbackErrors and is raised once the library has unwound.
struct PythonCallbackRaised : std::runtime_error {
  PythonCallbackRaised() : std::runtime_error("a Python callback raised an exception") {}
};

// A log record of the library's, kept until a thread that holds the GIL hands it to Python.
struct PendingRecord {
  sb::LogLevel level;
  std::string message;
  const char* file;
  int line;
};

// A Python call the engine waits for: run by the calling thread (see run_without_gil()).
using PythonJob = std::function<void()>;

// State shared by one call and the callbacks it hands to the library. The library's threads
// never touch a Python object: a callback is handed to the calling thread (which waits in
// run_without_gil() with the GIL released) and run there, as the reference ran its callbacks,
// on the caller's thread, in the caller's descriptor table, with the caller's thread-bound
// objects usable.
struct CallState {
  std::atomic<bool> cancel{false};
  std::mutex mutex;
  std::condition_variable changed;
  bool work_done = false;    // the library's work has returned (or thrown)
  PythonJob* job = nullptr;  // a callback waiting for the calling thread
  bool job_done = false;
  bool caller_gone = false;  // the interpreter is shutting down: no more Python
  // The first error a callback raised, as plain references (type, value, traceback): set and
  // raised on the caller's thread with the GIL; never released by a destructor, which may run
  // where the GIL cannot be had (a daemon thread ended at shutdown).
  PyObject* error_type = nullptr;
  PyObject* error_value = nullptr;
  PyObject* error_traceback = nullptr;
  // This call's log records (see run_without_gil()), handed to Python by the calling thread
  // alone: so a record's threadName is the caller's, and what a log handler raises (Ctrl-C)
  // stops this call, not another thread's.
  std::mutex records_mutex;
  std::vector<PendingRecord> records;

  // Called by the calling thread, with the GIL held, from inside a callback's catch block.
  void remember(py::error_already_set& error) {
    if (error_type == nullptr) {
      error.restore();  // back into Python's error indicator, to fetch as plain references
      PyErr_Fetch(&error_type, &error_value, &error_traceback);
    }
    cancel = true;
  }
};

[[noreturn]] void raise_error(py::handle type, const std::string& message,
                              const py::dict& attributes) {
  py::object error = type(text_of(message));
  for (auto item : attributes) error.attr(item.first) = item.second;
  PyErr_SetObject(py::type::handle_of(error).ptr(), error.ptr());
  throw py::error_already_set();
}

[[noreturn]] void raise_unstable(const sb::SqliteBackupError& error, const ErrorContext& context);

// A source file an error names, as the caller named it. The library resolves the source
// (symlinks, the working folder) and names that path; the reference copied the database and
// its -wal and -journal by the names it was given, and its shutil.copy's errors carried
// those in `filename`, which code shows its user or compares with its own path. A side
// file is renamed only where the name given reaches that same file (not beside a symlink
// whose target's folder holds it); anything else keeps the library's name.
fs::path as_the_caller_named_it(const fs::path& named, const ErrorContext& context) {
  const fs::path& source = context.source;
  if (source.empty()) return named;
  std::error_code error;
  const fs::path resolved = fs::canonical(source, error);
  if (error) return named;
  if (named == resolved) return source;
  if (!context.side_files_found) return named;
  for (const char* side : {"-wal", "-journal"}) {
    if (named.native() != resolved.native() + side) continue;
    const fs::path given = source.native() + side;
    return fs::equivalent(given, named, error) && !error ? given : named;
  }
  return named;
}

// The library's errors as the reference raises them. Called with the GIL held.
[[noreturn]] void raise_translated(const std::exception_ptr& failure, const ErrorContext& context) {
  try {
    std::rethrow_exception(failure);
  } catch (const fs::filesystem_error& error) {
    const int code = error.code().value();
    const py::object os = py::module_::import("os");
    const py::object type = py::module_::import("builtins").attr("OSError");
    // OSError(errno, strerror, filename) becomes FileNotFoundError, PermissionError, ...
    const py::object instance = type(code, os.attr("strerror")(code), from_path(error.path1()));
    // Raised as its own type: pybind11 insists that the raised type is the normalized one.
    PyErr_SetObject(py::type::handle_of(instance).ptr(), instance.ptr());
    throw py::error_already_set();
  } catch (const std::invalid_argument& error) {
    PyErr_SetObject(PyExc_ValueError, text_of(error.what()).ptr());
    throw py::error_already_set();
  } catch (const sb::SqliteBackupError& error) {
    if (error.kind() == sb::ErrorKind::unstable_source && context.copy_retry >= 0) {
      raise_unstable(error, context);
    }
    py::dict attributes;
    attributes["kind"] = kind_name(error.kind());
    attributes["path"] = error.path().empty() ? py::none() : from_path(error.path());
    // A destination that is no database: the reference's backup into it raised SQLite's
    // "file is not a database", a sqlite3.DatabaseError and not an OperationalError.
    py::handle type = error.kind() == sb::ErrorKind::invalid_source
                          ? invalid_source_type_for(error.path())
                      : error.cause().sqlite_result == SQLITE_NOTADB ? g_database_error_type
                                                                     : error_type_of(error.kind());
    // What the reference's callers could read off SQLite's or the OS's own error. errno
    // alone, not strerror: OSError's str() would then replace the message that names the path.
    if (error.cause().sqlite_result != 0) {
      attributes["sqlite_errorcode"] = error.cause().sqlite_result;
      attributes["sqlite_errorname"] = sqlite_error_name(error.cause().sqlite_result);
    }
    if (type.is(g_os_error_type)) {
      const int system_errno = error.cause().system_errno;
      if (system_errno != 0) {
        // What `except OSError as e` code reads: e.errno, e.strerror, e.filename. (Our
        // classes keep str() as the one-line message: see sqlite_backup.core.)
        attributes["errno"] = system_errno;
        attributes["strerror"] = py::module_::import("os").attr("strerror")(system_errno);
      }
      if (!error.path().empty()) {
        attributes["filename"] = from_path(as_the_caller_named_it(error.path(), context));
      }
      // Where the reference let SQLite fail (its backup wrote the destination through
      // sqlite3.connect), the error is also the sqlite3.OperationalError it raised there:
      // anything SQLite reported, and any failure to write the destination or its folder.
      const bool at_destination =
          !context.destination.empty() && (error.path() == context.destination ||
                                           error.path() == context.destination.parent_path());
      type = os_error_type_for(system_errno, error.cause().sqlite_result != 0 || at_destination);
      // A destination's full disk was SQLite's SQLITE_FULL to the reference's callers (its
      // backup wrote the destination), whoever wrote it here: the same name to match on.
      // (Only ENOSPC: SQLite's unix layer reports other write errors, EDQUOT too, as
      // SQLITE_IOERR_WRITE.)
      if (at_destination && error.cause().sqlite_result == 0 && system_errno == ENOSPC) {
        attributes["sqlite_errorcode"] = SQLITE_FULL;
        attributes["sqlite_errorname"] = sqlite_error_name(SQLITE_FULL);
      }
    }
    raise_error(type, error.what(), attributes);
  } catch (const py::error_already_set&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw;  // pybind11 turns it into MemoryError
  } catch (const std::exception& error) {
    raise_error(g_backup_error_type, error.what(), py::dict());
  }
}

// ---- Log records of the library's threads ------------------------------------------------------

// Records logged outside any call (by the library on a thread that holds the GIL, or on a
// thread no call of ours started) wait here for a thread that holds the GIL to hand them to
// Python; those of a call wait in its CallState.
std::mutex g_pending_mutex;
std::vector<PendingRecord> g_pending_records;  // NOLINT(cert-err58-cpp): cannot throw

// The Python sink (log.py's _forward), or none. Replaced and called with the GIL held only;
// whether there is one is also told, for the library's threads, by g_python_sink_set.
PyObject* g_python_sink = nullptr;
std::atomic<bool> g_python_sink_set{false};

// A record for which there is no Python sink (any more): printed as the library prints it.
void print_record(const sb::LogRecord& record) {
  static const sb::LogSink print = sb::default_log_sink();
  print(record);
}

// Keeps a record of the library's in `queue` for a thread that holds the GIL.
void keep_record(std::mutex& mutex, std::vector<PendingRecord>& queue,
                 const sb::LogRecord& record) {
  const std::lock_guard lock(mutex);
  queue.push_back(
      PendingRecord{record.level, std::string(record.message), record.file, record.line});
}

// Hands the records waiting in `queue` to Python (or, once there is no Python sink, prints them
// as the library would have); with the GIL held. An exception the sink raises
// is reported as unraisable, as logging's own errors are, except one that is not an Exception
// (KeyboardInterrupt or SystemExit from a signal handler that ran meanwhile): that one is
// thrown, after the last record, for the caller to raise. (Plain references throughout: see
// run_without_gil().)
void flush_records(std::mutex& mutex, std::vector<PendingRecord>& queue) {
  std::vector<PendingRecord> records;
  {
    const std::lock_guard lock(mutex);
    records.swap(queue);
  }
  PyObject* kept_type = nullptr;
  PyObject* kept_value = nullptr;
  PyObject* kept_traceback = nullptr;
  for (const PendingRecord& record : records) {
    if (g_python_sink == nullptr) {
      print_record({record.level, record.message, record.file, record.line});
      continue;
    }
    // (File names in the text are bytes, not always UTF-8: see text_of().)
    PyObject* const message = PyUnicode_DecodeUTF8(
        record.message.data(), static_cast<Py_ssize_t>(record.message.size()), "backslashreplace");
    PyObject* const result =
        message == nullptr
            ? nullptr
            : PyObject_CallFunction(g_python_sink, "iOsi", static_cast<int>(record.level), message,
                                    record.file != nullptr ? record.file : "", record.line);
    Py_XDECREF(message);
    if (result != nullptr) {
      Py_DECREF(result);
      continue;
    }
    if (kept_type == nullptr && PyErr_ExceptionMatches(PyExc_Exception) == 0) {
      PyErr_Fetch(&kept_type, &kept_value, &kept_traceback);
    } else {
      PyErr_WriteUnraisable(g_python_sink);
    }
  }
  if (kept_type != nullptr) {
    PyErr_Restore(kept_type, kept_value, kept_traceback);
    throw py::error_already_set();
  }
}

void flush_pending_records() { flush_records(g_pending_mutex, g_pending_records); }

// A call's records, then any logged outside a call meanwhile.
void flush_call_records(CallState& state) {
  flush_records(state.records_mutex, state.records);
  flush_pending_records();
}

// A debug record of this module's own, handed to Python with the call's (no Python object is
// made here: see run_without_gil()).
void log_later(CallState& state, const char* message, int line) {
  if (sb::log_level() > sb::LogLevel::debug) return;
  const std::lock_guard lock(state.records_mutex);
  state.records.push_back(PendingRecord{sb::LogLevel::debug, message, "native.cpp", line});
}

// ---- Running the library off the calling thread ----------------------------------------------

// Whether Python can no longer be entered from a thread other than the one shutting the
// interpreter down (the main thread): a daemon thread that takes the GIL back then is ended
// on the spot (pthread_exit), which C++ frames with live objects do not survive.
bool python_is_finishing() noexcept {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0 || Py_IsInitialized() == 0;  // (public from 3.13)
#else
  return _Py_IsFinalizing() != 0 || Py_IsInitialized() == 0;
#endif
}

// Runs `job` with the GIL, on the calling thread, which gave it up as `saved`. False (and
// nothing run) when the interpreter is shutting down under this (daemon) thread.
template <typename Job>
bool with_gil(PyThreadState* saved, bool on_main_thread, Job&& job) {
  if (!on_main_thread && python_is_finishing()) return false;
  PyEval_RestoreThread(saved);
  job();
  PyEval_SaveThread();
  return true;
}

// Joins the library's thread whatever ends the wait: should the calling thread be unwound
// (the interpreter ending a daemon thread), the library is told that no callback will run
// any more, so that it stops, and is waited for.
class JoinedThread {
 public:
  JoinedThread(CallState& state, std::thread thread) : state_(state), thread_(std::move(thread)) {}
  JoinedThread(const JoinedThread&) = delete;
  JoinedThread& operator=(const JoinedThread&) = delete;
  JoinedThread(JoinedThread&&) = delete;
  JoinedThread& operator=(JoinedThread&&) = delete;
  ~JoinedThread() {
    if (!thread_.joinable()) return;
    {
      const std::lock_guard lock(state_.mutex);
      state_.caller_gone = true;
      state_.cancel = true;
    }
    state_.changed.notify_all();
    thread_.join();
  }
  void join() { thread_.join(); }

 private:
  CallState& state_;
  std::thread thread_;
};

// Blocks the calling thread for good: the interpreter is shutting down under a daemon thread,
// which Python itself would end or park; returning into Python here would end it in the middle
// of C++ frames (Python 3.14 parks such threads too).
[[noreturn]] void park_for_good() {
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

// Runs `work` (the library) on its own thread with the GIL released, while the calling thread
// waits: it runs the callbacks the library hands it, hands the library's log records to
// Python, and (on the main thread) runs Python's signal handlers every few milliseconds, a
// KeyboardInterrupt there cancelling the work. Then raises what the work threw (or what a
// callback or a signal handler raised).
template <typename Work>
void run_without_gil(CallState& state, const ErrorContext& context, Work&& work) {
  // No Python object stays alive in this frame while the GIL is given up: should the
  // interpreter end this (daemon) thread, unwinding would release it without the GIL.
  const bool on_main_thread = [] {
    const py::object threading = py::module_::import("threading");
    return threading.attr("current_thread")().is(threading.attr("main_thread")());
  }();
  std::exception_ptr failure;
  // What a signal handler (or a log handler, past an Exception) raised: plain references.
  PyObject* raised_type = nullptr;
  PyObject* raised_value = nullptr;
  PyObject* raised_traceback = nullptr;
  const auto keep_raised = [&](py::error_already_set& error) {  // with the GIL
    error.restore();
    if (raised_type == nullptr) {
      PyErr_Fetch(&raised_type, &raised_value, &raised_traceback);
    } else {
      PyErr_WriteUnraisable(nullptr);
    }
    state.cancel = true;
  };
  bool python_gone = false;
  {
    // Started while this thread still holds the GIL, so that a failure to start it (no
    // memory for its stack, a thread limit) leaves as an ordinary exception.
    std::thread thread;
    try {
      thread = std::thread([&] {
        try {
          // The call's records go to its own queue (the library's threads for this call
          // inherit the scope), for this thread alone to hand over; without a Python sink they
          // are printed as the library prints them.
          const sb::ScopedLogSink records([&state](const sb::LogRecord& record) {
            if (g_python_sink_set) {
              keep_record(state.records_mutex, state.records, record);
            } else {
              print_record(record);
            }
          });
          work();
        } catch (...) {
          failure = std::current_exception();
        }
        const std::lock_guard lock(state.mutex);
        state.work_done = true;
        state.changed.notify_all();
      });
    } catch (const std::system_error& error) {
      py::dict attributes;
      attributes["kind"] = "io";
      attributes["path"] = context.source.empty() ? py::none() : from_path(context.source);
      raise_error(g_backup_error_type,
                  "cannot start a thread to copy " + context.source.string() + ": " +
                      error.code().message(),
                  attributes);
    }
    JoinedThread runner(state, std::move(thread));
    // Not py::gil_scoped_release: its destructor would take the GIL back from a noexcept
    // context, which a daemon thread cannot survive at shutdown.
    PyThreadState* const saved = PyEval_SaveThread();
    std::unique_lock lock(state.mutex);
    while (!state.work_done) {
      state.changed.wait_for(lock, std::chrono::milliseconds(20), [&] {
        return state.work_done || (state.job != nullptr && !state.job_done);
      });
      PythonJob* const job = state.job != nullptr && !state.job_done ? state.job : nullptr;
      lock.unlock();
      const bool ran = with_gil(saved, on_main_thread, [&] {
        // The records first: the library logged them before it asked for the callback.
        try {
          flush_call_records(state);
        } catch (py::error_already_set& error) {
          keep_raised(error);  // (a signal handler ran inside a log handler)
        }
        if (job != nullptr) (*job)();
        if (on_main_thread && raised_type == nullptr && PyErr_CheckSignals() != 0) {
          // KeyboardInterrupt (or whatever the handler raised): stop the work, which then
          // removes what it staged, and raise this once it has.
          PyErr_Fetch(&raised_type, &raised_value, &raised_traceback);
          state.cancel = true;
        }
      });
      lock.lock();
      if (!ran) {
        python_gone = true;
        state.caller_gone = true;
        state.cancel = true;
      }
      if (job != nullptr) state.job_done = true;
      state.changed.notify_all();
    }
    lock.unlock();
    runner.join();
    if (python_gone || (!on_main_thread && python_is_finishing())) park_for_good();
    PyEval_RestoreThread(saved);
  }
  try {
    flush_call_records(state);
  } catch (py::error_already_set& error) {
    keep_raised(error);
  }
  if (raised_type != nullptr) {
    Py_XDECREF(std::exchange(state.error_type, nullptr));
    Py_XDECREF(std::exchange(state.error_value, nullptr));
    Py_XDECREF(std::exchange(state.error_traceback, nullptr));
    PyErr_Restore(raised_type, raised_value, raised_traceback);
    throw py::error_already_set();
  }
  if (state.error_type != nullptr) {
    PyErr_Restore(std::exchange(state.error_type, nullptr),
                  std::exchange(state.error_value, nullptr),
                  std::exchange(state.error_traceback, nullptr));
    throw py::error_already_set();
  }
  if (failure) raise_translated(failure, context);
}

// Runs `call` (a call of a Python callback) on the calling thread with the GIL, for the
// library's thread, which waits for it; an exception it raises is kept for the caller and
// stops the backup. `call` runs with the GIL held and may return a value of type R.
template <typename R, typename Call>
R call_python(CallState& state, Call&& call) {
  std::optional<R> result;
  bool raised = false;
  std::exception_ptr failure;  // anything else it threw, for this thread to rethrow
  PythonJob job = [&] {
    try {
      result.emplace(call());
    } catch (py::error_already_set& error) {
      state.remember(error);
      raised = true;
    } catch (abi::__forced_unwind&) {
      throw;  // the interpreter ending this (daemon) thread inside the callback: let it
    } catch (...) {
      failure = std::current_exception();
    }
  };
  {
    std::unique_lock lock(state.mutex);
    // One callback at a time, whichever of the library's threads asks.
    state.changed.wait(lock, [&] { return state.job == nullptr || state.caller_gone; });
    if (state.caller_gone) throw PythonCallbackRaised();
    state.job = &job;
    state.job_done = false;
    state.changed.notify_all();
    state.changed.wait(lock, [&] { return state.job_done || state.caller_gone; });
    const bool done = state.job_done;
    state.job = nullptr;
    state.changed.notify_all();
    if (!done) throw PythonCallbackRaised();
  }
  if (failure) std::rethrow_exception(failure);
  if (raised || !result) throw PythonCallbackRaised();
  return std::move(*result);
}

// The Python copy_function(src: str, dst: str) -> bool, called by the library's copy loop.
// The function is held by the caller's options for the whole call: the library's copies of
// this std::function hold only its address (no reference count changes off the GIL).
sb::CopyFunction wrap_copy_function(const py::object& function, CallState& state) {
  if (function.is_none()) return {};
  PyObject* const callable = function.ptr();
  return [callable, &state](const fs::path& src, const fs::path& dst) {
    return call_python<bool>(state, [&] {
      // Plain references, released by hand: should the interpreter end this thread inside
      // the call (a daemon thread at shutdown), they are left, not released without the GIL.
      PyObject* const src_text = PyUnicode_DecodeFSDefaultAndSize(
          src.c_str(), static_cast<Py_ssize_t>(src.native().size()));
      PyObject* const dst_text = PyUnicode_DecodeFSDefaultAndSize(
          dst.c_str(), static_cast<Py_ssize_t>(dst.native().size()));
      PyObject* const result =
          src_text != nullptr && dst_text != nullptr
              ? PyObject_CallFunctionObjArgs(callable, src_text, dst_text, nullptr)
              : nullptr;
      Py_XDECREF(src_text);
      Py_XDECREF(dst_text);
      if (result == nullptr) throw py::error_already_set();
      const int truth = PyObject_IsTrue(result);
      Py_DECREF(result);
      if (truth < 0) throw py::error_already_set();
      return truth != 0;
    });
  };
}

sb::BackupProgress wrap_progress(const py::object& progress, CallState& state) {
  if (progress.is_none()) return {};
  PyObject* const callable = progress.ptr();  // (held by the caller's options: see above)
  return [callable, &state](int status, int remaining, int total) {
    call_python<bool>(state, [&] {
      PyObject* const result = PyObject_CallFunction(callable, "iii", status, remaining, total);
      if (result == nullptr) throw py::error_already_set();
      Py_DECREF(result);
      return true;
    });
  };
}

// The keyword arguments core.py has already checked, as the library's Options.
struct CallOptions {
  bool wal_checkpoint = true;
  bool copy_use_tempdir = true;
  int attempts = 101;
  int copy_retry = 100;  // as the caller gave it, for the message
  bool copy_retry_strict = true;
  double timeout = 5.0;
  int pages = -1;
  py::object progress = py::none();
  std::string name = "main";
  double sleep = 0.250;
  py::object copy_function = py::none();
};

sb::Options to_options(const CallOptions& call, CallState& state) {
  sb::Options options;
  options.wal_checkpoint = call.wal_checkpoint;
  options.copy_use_tempdir = call.copy_use_tempdir;
  options.copy_retry = call.attempts;
  options.copy_retry_strict = call.copy_retry_strict;
  options.sqlite_connect_kwargs.busy_timeout =
      std::chrono::milliseconds(static_cast<long long>(call.timeout * 1000.0));
  options.sqlite_backup_kwargs.pages = call.pages;
  options.sqlite_backup_kwargs.progress = wrap_progress(call.progress, state);
  options.sqlite_backup_kwargs.name = call.name;
  // As Connection.backup: a busy source is waited for, 'sleep' between steps, without limit.
  options.sqlite_backup_kwargs.wait_while_busy = true;
  options.sqlite_backup_kwargs.sleep =
      std::chrono::milliseconds(static_cast<long long>(call.sleep * 1000.0));
  options.copy_function = wrap_copy_function(call.copy_function, state);
  options.cancel = &state.cancel;
  return options;
}

// The reference's message for a source that kept changing, which callers match on, with the
// library's reason for the last rejected attempt after it.
[[noreturn]] void raise_unstable(const sb::SqliteBackupError& error, const ErrorContext& context) {
  const std::string what = error.what();
  const auto last = what.find("(last: ");
  // The reference's sentence first, as its callers match on it; then the source, and why the
  // last attempt was rejected.
  std::string message =
      "While in strict mode, this failed to copy all files without any of "
      "them changing " +
      std::to_string(context.copy_retry) +
      " times. Increase 'copy_retry' or disable 'copy_retry_strict' (source: " +
      context.source.string() + ")";
  if (last != std::string::npos) message += " " + what.substr(last);
  py::dict attributes;
  attributes["kind"] = "unstable_source";
  attributes["path"] = from_path(context.source);
  raise_error(g_backup_error_type, message, attributes);
}

// (The entry points take their arguments as py::handle, which holds no reference: see
// run_without_gil().)
void backup_to_file(py::handle source, py::handle destination, const CallOptions& call) {
  CallState state;
  const sb::Options options = to_options(call, state);
  const fs::path from = to_path(source);
  const fs::path to = to_path(destination);
  run_without_gil(state, {from, call.copy_retry, to, true},
                  [&] { sb::sqlite_backup(from, to, options); });
}

// ---- Memory snapshots into the caller's own sqlite3.Connection ------------------------------
//
// The snapshot goes straight into the handle of a connection the interpreter's own sqlite3
// module opened (sqlite3_deserialize on memory SQLite owns: one copy of the bytes). Python
// does not expose that handle; SQLite does, to an auto-extension, which it runs for every
// connection opened in the process. Armed for the current thread only, around the one
// connect() call, it records the handle that connect() opened: only where connect() opened
// exactly one and did not close it (a wrapper of sqlite3.connect may open others, or close
// one, whose handle would then be freed memory). The handle is then proved to be that
// connection's: a marker set through Python (its busy timeout, which is each connection's
// own, where its cache size would be shared by connections of one shared cache) must read
// back through the handle.
// Where any of this fails (another SQLite library in the interpreter, say), the snapshot is
// handed over through Connection.deserialize instead: correct, with one more copy.

thread_local sqlite3* g_captured = nullptr;
thread_local int g_opened = 0;                // connections opened during the capture
thread_local bool g_captured_closed = false;  // the captured one closed meanwhile
thread_local bool g_capturing = false;
std::atomic<bool> g_capture_enabled{true};

// A function registered on the captured connection while connect() runs: SQLite destroys it
// when that connection closes (or the function is replaced), which says the handle is gone.
constexpr const char* kCloseWatch = "sqlite_backup_capture_close_watch";

void no_op(sqlite3_context* /*context*/, int /*argc*/, sqlite3_value** /*argv*/) {}

void captured_connection_closed(void* db) noexcept {
  if (db == g_captured) g_captured_closed = true;
}

int capture_new_connection(sqlite3* db, char** /*error*/, const sqlite3_api_routines* /*api*/) {
  if (g_capturing && ++g_opened == 1) {
    g_captured = db;
    // (A failed registration runs the destructor at once: the handle is then not used.)
    sqlite3_create_function_v2(db, kCloseWatch, 0, SQLITE_UTF8, db, &no_op, nullptr, nullptr,
                               &captured_connection_closed);
  }
  return SQLITE_OK;
}

// The handle connect() opened, once it returned: null unless it opened exactly one, still
// open. The close watch is taken off it (its destructor then runs, harmlessly).
sqlite3* take_captured() noexcept {
  sqlite3* const db = std::exchange(g_captured, nullptr);
  const bool usable = db != nullptr && g_opened == 1 && !g_captured_closed;
  if (db != nullptr && !g_captured_closed) {
    sqlite3_create_function_v2(db, kCloseWatch, 0, SQLITE_UTF8, nullptr, nullptr, nullptr, nullptr,
                               nullptr);
  }
  g_opened = 0;
  g_captured_closed = false;
  return usable ? db : nullptr;
}

void register_capture() {
  static const int registered = [] {
    // SQLite declares the entry point as void(*)(void) and calls it with its real signature.
    return sqlite3_auto_extension(reinterpret_cast<void (*)()>(&capture_new_connection));  // NOLINT
  }();
  (void)registered;
}

// Opens the connection with `connect` and returns it (a new plain reference: see
// run_without_gil()) with its proven handle (or null). Throws error_already_set, having
// released the connection, when Python raised.
std::pair<PyObject*, sqlite3*> connect_and_capture(py::handle connect) {
  std::mt19937 random{std::random_device{}()};  // (before the connection exists: may throw)
  const int marker = std::uniform_int_distribution<int>(1, 0x7fffffff)(random);
  const bool capture = g_capture_enabled;
  if (capture) {
    register_capture();
    g_captured = nullptr;
    g_opened = 0;
    g_captured_closed = false;
    g_capturing = true;
  }
  PyObject* const connection = PyObject_CallNoArgs(connect.ptr());
  g_capturing = false;
  sqlite3* const handle = capture ? take_captured() : nullptr;
  if (connection == nullptr) throw py::error_already_set();
  if (handle == nullptr) return {connection, nullptr};
  const auto execute = [connection](const std::string& sql) -> PyObject* {
    PyObject* const cursor = PyObject_CallMethod(connection, "execute", "s", sql.c_str());
    if (cursor == nullptr) {
      Py_DECREF(connection);
      throw py::error_already_set();
    }
    return cursor;
  };
  // The marker is the connection's busy timeout, not anything in its database: a write (the
  // user_version) would make the empty database a 4 KiB-page one, and SQLite's backup API
  // then refuses a source of another page size into it (SQLITE_READONLY), where the
  // reference's fresh ":memory:" database takes any.
  // The original, read through Python whatever execute() and fetchone() give (a row
  // factory's Row too); where it cannot be read, the handle stays unproven.
  const std::optional<long> original = [&execute]() -> std::optional<long> {
    PyObject* const cursor = execute("PRAGMA busy_timeout");
    PyObject* const row = PyObject_CallMethod(cursor, "fetchone", nullptr);
    Py_DECREF(cursor);
    std::optional<long> value;
    if (row != nullptr && PySequence_Check(row) != 0 && PySequence_Size(row) == 1) {
      PyObject* const item = PySequence_GetItem(row, 0);
      if (item != nullptr && PyLong_Check(item) != 0) {
        const long read = PyLong_AsLong(item);
        if (PyErr_Occurred() == nullptr) value = read;
      }
      Py_XDECREF(item);
    }
    Py_XDECREF(row);
    PyErr_Clear();
    return value;
  }();
  if (!original) return {connection, nullptr};
  Py_DECREF(execute("PRAGMA busy_timeout = " + std::to_string(marker)));
  sqlite3_stmt* statement = nullptr;
  int seen = 0;
  if (sqlite3_prepare_v2(handle, "PRAGMA busy_timeout", -1, &statement, nullptr) == SQLITE_OK &&
      sqlite3_step(statement) == SQLITE_ROW) {
    seen = sqlite3_column_int(statement, 0);
  }
  sqlite3_finalize(statement);
  Py_DECREF(execute("PRAGMA busy_timeout = " + std::to_string(*original)));
  return {connection, seen == marker ? handle : nullptr};
}

// The database's size in pages (0 for an empty one), or -1 when it cannot be read.
int page_count(sqlite3* db) {
  sqlite3_stmt* statement = nullptr;
  int pages = -1;
  if (sqlite3_prepare_v2(db, "PRAGMA page_count", -1, &statement, nullptr) == SQLITE_OK &&
      sqlite3_step(statement) == SQLITE_ROW) {
    pages = sqlite3_column_int(statement, 0);
  }
  sqlite3_finalize(statement);
  return pages;
}

py::object backup_to_memory(py::handle source, py::handle connect, const CallOptions& call) {
  CallState state;
  const sb::Options options = to_options(call, state);
  const fs::path from = to_path(source);
  // Held as a plain reference while the library works (see run_without_gil()).
  const std::pair<PyObject*, sqlite3*> opened = connect_and_capture(connect);
  PyObject* const connection = opened.first;
  sqlite3* const handle = opened.second;
  const auto take_connection = [connection] {
    return py::reinterpret_steal<py::object>(connection);
  };
  std::optional<sb::Connection> memory;
  try {
    if (handle != nullptr) {
      log_later(state, "the snapshot goes straight into the new connection's handle", __LINE__);
      run_without_gil(state, {from, call.copy_retry, {}, true},
                      [&] { sb::sqlite_backup_to_connection(from, handle, options); });
      return take_connection();
    }
    log_later(state,
              "the new connection's handle could not be proven; the snapshot is handed over "
              "through Connection.deserialize (one more copy)",
              __LINE__);
    run_without_gil(state, {from, call.copy_retry, {}, true},
                    [&] { memory = sb::sqlite_backup(from, std::nullopt, options); });
  } catch (abi::__forced_unwind&) {
    throw;  // (the connection is left: see above)
  } catch (...) {
    take_connection();  // released here, with the GIL
    throw;
  }
  // The image as a plain reference too, and the connection kept as one until it is returned:
  // deserialize is a call into Python (see run_without_gil()).
  sqlite3_int64 size = 0;
  PyObject* image_bytes = nullptr;
  if (unsigned char* image =
          sqlite3_serialize(memory->get(), "main", &size, SQLITE_SERIALIZE_NOCOPY)) {
    image_bytes =
        PyBytes_FromStringAndSize(static_cast<const char*>(static_cast<const void*>(image)), size);
  } else if (image = sqlite3_serialize(memory->get(), "main", &size, 0); image != nullptr) {
    image_bytes =
        PyBytes_FromStringAndSize(static_cast<const char*>(static_cast<const void*>(image)), size);
    sqlite3_free(image);
  } else if (page_count(memory->get()) == 0) {
    size = 0;  // an empty database (a 0-byte source), which serialize gives as null
  } else {
    take_connection();
    throw std::bad_alloc();
  }
  memory.reset();
  // (Not an empty image: deserialize does not take one, and the new connection already is an
  // empty database.)
  if (size > 0) {
    PyObject* const done = image_bytes == nullptr
                               ? nullptr
                               : PyObject_CallMethod(connection, "deserialize", "O", image_bytes);
    Py_XDECREF(image_bytes);
    if (done == nullptr) {
      take_connection();
      throw py::error_already_set();
    }
    Py_DECREF(done);
  } else {
    Py_XDECREF(image_bytes);
  }
  return take_connection();
}

// ---- The reference's core helpers -----------------------------------------------------------

bool atomic_copy(py::handle src, py::handle dst) {
  CallState state;
  bool unchanged = false;
  const fs::path from = to_path(src);
  const fs::path to = to_path(dst);
  run_without_gil(state, {from}, [&] { unchanged = sb::atomic_copy(from, to, &state.cancel); });
  return unchanged;
}

py::list glob_database_files(py::handle source) {
  const std::vector<fs::path> found = sb::glob_database_files(to_path(source));
  // What the library logged meanwhile, before any Python object is made here (a log handler
  // may give up the GIL: see run_without_gil()).
  flush_pending_records();
  py::list files;
  for (const fs::path& file : found) files.append(py::bytes(file.native()));
  return files;
}

bool copy_all_files(py::handle source_files, py::handle temporary_dest, py::handle copy_function,
                    int attempts) {
  CallState state;
  std::vector<fs::path> files;
  for (const py::handle file : source_files) files.push_back(to_path(file));
  const fs::path folder = to_path(temporary_dest);
  const sb::CopyFunction copy =
      wrap_copy_function(py::reinterpret_borrow<py::object>(copy_function), state);
  bool validated = false;
  run_without_gil(state, {files.empty() ? fs::path() : files.front()}, [&] {
    validated = sb::copy_all_files(files, folder, copy, attempts, &state.cancel);
  });
  return validated;
}

// ---- Logging ----------------------------------------------------------------------------------

// The library's records go to Python's logging on a thread that holds the GIL: a call's through
// its CallState, handed over by its calling thread (see run_without_gil()), any other through
// g_pending_records. With the GIL held.
void set_log_sink(const py::object& sink) {
  flush_pending_records();
  g_python_sink_set = false;
  Py_XDECREF(std::exchange(g_python_sink, nullptr));
  if (sink.is_none()) {
    sb::set_log_sink({});
    return;
  }
  g_python_sink = sink.inc_ref().ptr();
  g_python_sink_set = true;
  // Every record waits for a thread that holds the GIL (the library's own threads never do;
  // "does this thread hold it" cannot be asked reliably once a sub-interpreter exists).
  sb::set_log_sink(
      [](const sb::LogRecord& record) { keep_record(g_pending_mutex, g_pending_records, record); });
}

int run_command_line(const std::vector<std::string>& arguments) {
  std::vector<std::string> owned(arguments);
  std::vector<char*> argv;
  argv.reserve(owned.size() + 1);
  for (auto& argument : owned) argv.push_back(argument.data());
  argv.push_back(nullptr);
  int code = 0;
  {
    py::gil_scoped_release released;
    code = sqlite_backup::cli::run_command_line(static_cast<int>(owned.size()), argv.data());
    std::fflush(stdout);
    std::fflush(stderr);
  }
  return code;
}

}  // namespace

PYBIND11_MODULE(_native, module) {
  module.doc() = "The C++ engine of the sqlite_backup package (use the package's modules).";
  module.attr("__version__") = SQLITE_BACKUP_VERSION;
  module.attr("sqlite_version") = sqlite3_libversion();

  py::object runtime_error = py::module_::import("builtins").attr("RuntimeError");
  g_backup_error_type = PyErr_NewExceptionWithDoc(
      "sqlite_backup.core.SqliteBackupError",
      "Generic error for the sqlite_backup module; .kind says what went wrong, .path where.",
      runtime_error.ptr(), nullptr);
  if (!g_backup_error_type) throw py::error_already_set();
  module.attr("SqliteBackupError") = g_backup_error_type;
  const py::module_ python_sqlite3 = py::module_::import("sqlite3");
  // A new exception type of `base` (ours) and `also` (what the reference raised).
  const auto subclass = [](const char* name, const char* doc, py::handle base,
                           const py::object& also) {
    const py::tuple bases = py::make_tuple(py::reinterpret_borrow<py::object>(base), also);
    PyObject* type = PyErr_NewExceptionWithDoc(name, doc, bases.ptr(), nullptr);
    if (type == nullptr) throw py::error_already_set();
    return py::handle(type);
  };
  g_database_error_type =
      subclass("sqlite_backup.core.SqliteBackupDatabaseError",
               "The source is not a usable database (also a sqlite3.DatabaseError).",
               g_backup_error_type, python_sqlite3.attr("DatabaseError"));
  g_operational_error_type =
      subclass("sqlite_backup.core.SqliteBackupOperationalError",
               "SQLite could not do what was asked: open the destination, back up a schema, "
               "... (also a sqlite3.OperationalError).",
               g_backup_error_type, python_sqlite3.attr("OperationalError"));
  g_os_error_type =
      subclass("sqlite_backup.core.SqliteBackupOSError", "An I/O error (also an OSError).",
               g_backup_error_type, py::module_::import("builtins").attr("OSError"));
  g_special_file_error_type =
      subclass("sqlite_backup.core.SqliteBackupSpecialFileError",
               "The source is a named pipe, socket or device, not a database file (also a "
               "sqlite3.DatabaseError, and the shutil.SpecialFileError, an OSError, that the "
               "reference's copy raised).",
               g_database_error_type, py::module_::import("shutil").attr("SpecialFileError"));
  module.attr("SqliteBackupDatabaseError") = g_database_error_type;
  module.attr("SqliteBackupSpecialFileError") = g_special_file_error_type;
  module.attr("SqliteBackupOperationalError") = g_operational_error_type;
  module.attr("SqliteBackupOSError") = g_os_error_type;
  make_os_error_types(module, python_sqlite3.attr("OperationalError"));

  py::class_<CallOptions>(module, "CallOptions")
      .def(py::init<>())
      .def_readwrite("wal_checkpoint", &CallOptions::wal_checkpoint)
      .def_readwrite("copy_use_tempdir", &CallOptions::copy_use_tempdir)
      .def_readwrite("attempts", &CallOptions::attempts)
      .def_readwrite("copy_retry", &CallOptions::copy_retry)
      .def_readwrite("copy_retry_strict", &CallOptions::copy_retry_strict)
      .def_readwrite("timeout", &CallOptions::timeout)
      .def_readwrite("pages", &CallOptions::pages)
      .def_readwrite("progress", &CallOptions::progress)
      .def_readwrite("name", &CallOptions::name)
      .def_readwrite("sleep", &CallOptions::sleep)
      .def_readwrite("copy_function", &CallOptions::copy_function);

  module.def("backup_to_file", &backup_to_file, py::arg("source"), py::arg("destination"),
             py::arg("options"));
  module.def("backup_to_memory", &backup_to_memory, py::arg("source"), py::arg("connect"),
             py::arg("options"));
  module.def("atomic_copy", &atomic_copy, py::arg("src"), py::arg("dst"));
  module.def("glob_database_files", &glob_database_files, py::arg("source"));
  module.def("copy_all_files", &copy_all_files, py::arg("source_files"), py::arg("temporary_dest"),
             py::arg("copy_function"), py::arg("attempts"));
  module.def("set_log_sink", &set_log_sink, py::arg("sink"));
  module.def(
      "set_log_level",
      [](int level) { sb::set_log_level(sb::parse_log_level(std::to_string(level))); },
      py::arg("level"));
  module.def(
      "set_log_level_text",
      [](const std::string& text) { sb::set_log_level(sb::parse_log_level(text)); },
      py::arg("text"), "The level as the command line reads SQLITE_BACKUP_LOGS' text.");
  module.def("run_command_line", &run_command_line, py::arg("argv"));
  module.def(
      "set_handle_capture", [](bool enabled) { g_capture_enabled = enabled; }, py::arg("enabled"),
      "Tests only: with False, memory snapshots take the Connection.deserialize path.");
  module.def("sqlite_error_name", &sqlite_error_name, py::arg("result"),
             "The name sqlite_errorname gives a result code, as Python's sqlite3 names it.");
}
