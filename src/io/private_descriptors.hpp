// Reading the source without dropping the calling process's own SQLite locks on it.
//
// POSIX record locks (SQLite's unix VFS uses them) belong to the process, or precisely to its
// descriptor table: closing ANY descriptor of a file drops every such lock the table's owner
// holds on that file (fcntl(2), "the lock is released ... when any file descriptor referring
// to the file is closed"). A program that backs up a database it has open itself (a web app
// backing up its own database from inside a session) would lose its locks to our close().
// SQLite's own VFS defers such closes in a process-wide table; we cannot join that table, so
// we read the source from a thread whose descriptor table is its own (unshare(CLONE_FILES)):
// the kernel keys record locks on the table, so our closes there drop nothing of the caller's.
#pragma once

#include <functional>

namespace sqlite_backup::io {

// Runs `work` on a new thread with a private copy of the descriptor table, waits for it and
// rethrows what it threw. Descriptors `work` opens stay in that table and are closed when the
// thread ends (any it forgets too). Descriptors of the caller's table are usable by their
// numbers (the copy holds them), but must not be closed by `work`. Where the kernel refuses
// unshare() the work runs all the same and a warning says the caller's locks may be dropped.
// Thread safety: any thread may call it; `work` runs on another thread, so it must not rely
// on thread-local state of the caller.
void with_private_descriptor_table(const std::function<void()>& work);

}  // namespace sqlite_backup::io
