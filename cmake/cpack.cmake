# CPack: one .deb carrying the CLI, the library, its headers, the CMake package, the
# pkg-config file and the man page.
#
#   cpack --config build/CPackConfig.cmake -G DEB      (or: cmake --build build --target package)
include_guard(GLOBAL)

# Debian package names allow no underscore.
set(CPACK_PACKAGE_NAME "sqlite-backup")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_VENDOR "sqlite_backup developers")
set(CPACK_PACKAGE_CONTACT "sqlite_backup developers <sqlite-backup@example.invalid>")
set(CPACK_PACKAGE_HOMEPAGE_URL "${PROJECT_HOMEPAGE_URL}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_DESCRIPTION
  "sqlite_backup copies a SQLite database that another program owns and may be writing to\n"
  "right now (a browser's places.sqlite or History, a chat app's database) into a\n"
  "transaction-consistent snapshot, without writing to the source and without taking any\n"
  "lock on it. It copies the database and its -wal/-journal optimistically, proves from\n"
  "SQLite's own on-disk markers that the copy is one committed state (or copies again), and\n"
  "commits the result atomically and durably.\n"
  "\n"
  "This package holds the sqlite_backup command, its manual page, the wrappers\n"
  "sqlite-backup-restic and sqlite-backup-rclone (a snapshot streamed into restic or an\n"
  "rclone remote, nothing stored unless all of it arrived), a templated systemd service\n"
  "and timer (sqlite-backup@NAME), and the C++20 library\n"
  "with its headers, CMake package (find_package(sqlite_backup)) and pkg-config file;\n"
  "when built with SQLITE_BACKUP_PYTHON=ON, also the Python 3 package sqlite_backup.")
string(REPLACE ";" "" CPACK_PACKAGE_DESCRIPTION "${CPACK_PACKAGE_DESCRIPTION}")
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_CHECKSUM "SHA256")
# Executables and shared libraries only (CMake never strips an archive): a smaller .deb.
set(CPACK_STRIP_FILES ON)

set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
set(CPACK_DEBIAN_PACKAGE_SECTION "database")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "${PROJECT_HOMEPAGE_URL}")
set(CPACK_DEBIAN_PACKAGE_RELEASE "1")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)   # sqlite-backup_<version>-1_<arch>.deb
set(CPACK_DEBIAN_COMPRESSION_TYPE "xz")
# Building against the static library (through the CMake package or pkg-config) needs the
# headers and link libraries of its private dependencies; running the CLI does not.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "libsqlite3-dev, libfmt-dev")
# What the wrappers and the service's drop-ins run.
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "restic, rclone")
if(TARGET sqlite_backup_python)
  # The extension module is built for this one interpreter version.
  string(APPEND CPACK_DEBIAN_PACKAGE_RECOMMENDS
    ", python3 (>= ${SQLITE_BACKUP_PYTHON_VERSION}~), python3 (<< ${SQLITE_BACKUP_PYTHON_VERSION}.99)")
endif()

find_program(SQLITE_BACKUP_DPKG_SHLIBDEPS dpkg-shlibdeps)
mark_as_advanced(SQLITE_BACKUP_DPKG_SHLIBDEPS)
if(SQLITE_BACKUP_DPKG_SHLIBDEPS AND TARGET sqlite_backup_cli)
  # The exact shared libraries (and minimum versions) the CLI was linked against: libsqlite3-0
  # and libc6 (it carries fmt and the C++ runtime itself, see cli/CMakeLists.txt), and whatever
  # else the Python extension module needs.
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
  # A shared libsqlite_backup is found in the package itself, not among installed packages.
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS "${PROJECT_BINARY_DIR}/src")
else()
  # Without dpkg-shlibdeps (or without a binary to scan), state the runtime needs by hand.
  # (libstdc++6 for the Python extension module and sanitizer builds.)
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "libsqlite3-0, libstdc++6, libc6")
endif()

set(CPACK_SOURCE_GENERATOR "TGZ")
set(CPACK_SOURCE_IGNORE_FILES "/\\\\.git/" "/build[^/]*/" "/\\\\.cache/" "\\\\.swp$")

include(CPack)
