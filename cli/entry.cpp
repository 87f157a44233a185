#include "command_line.hpp"

int main(int argc, char** argv) {
  return sqlite_backup::cli::run_command_line(argc, argv, /*whole_process=*/true);
}
