// The whole command-line tool as a function, so that the executable (entry.cpp) and the
// Python package's `python3 -m sqlite_backup` run the very same program.
#pragma once

namespace sqlite_backup::cli {

// Parses argv, runs the backups, prints what the man page describes on stderr (and the
// snapshot on stdout for `-`) and returns the documented exit code. Installs SIGINT, SIGTERM
// and SIGPIPE dispositions for its duration and restores the previous ones before returning.
// Not reentrant: one call at a time per process.
int run_command_line(int argc, char** argv);

}  // namespace sqlite_backup::cli
