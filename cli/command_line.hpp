// The whole command-line tool as a function, so that the executable (entry.cpp) and the
// Python package's `python3 -m sqlite_backup` run the very same program.
#pragma once

namespace sqlite_backup::cli {

// Parses argv, runs the backups, prints what the man page describes on stderr (and the
// snapshot on stdout for `-`) and returns the documented exit code. Installs SIGINT, SIGTERM
// and SIGPIPE dispositions for its duration and restores the previous ones before returning.
// Not reentrant: one call at a time per process. Descriptors 0, 1 and 2 that are closed are
// given /dev/null for good, so that no file opened meanwhile takes their numbers; a closed
// stdout is reported as such (as the man page says), also by later calls while descriptor 1
// is a /dev/null (any: see occupy_standard_descriptors()). `whole_process`: the caller is the
// sqlite_backup program itself, so the process holds no SQLite connection to any source and
// the sources are read on the calling thread (Options::private_descriptor_table false);
// anyone else (the Python package) keeps the default.
int run_command_line(int argc, char** argv, bool whole_process = false);

}  // namespace sqlite_backup::cli
