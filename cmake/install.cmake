# Install rules, the CMake package, the pkg-config file and the CPack .deb.
# Included by the top-level CMakeLists.txt when SQLITE_BACKUP_INSTALL is on (the default when
# this project is the top level; off under add_subdirectory, where the parent decides).
#
#   cmake --install build --prefix /some/prefix
#   find_package(sqlite_backup)  ->  sqlite_backup::sqlite_backup
#   pkg-config --cflags --libs sqlite_backup
#   cpack --config build/CPackConfig.cmake -G DEB
include_guard(GLOBAL)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(SQLITE_BACKUP_CMAKE_INSTALL_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/sqlite_backup"
    CACHE STRING "Where sqlite_backupConfig.cmake is installed (relative to the prefix)")
set(SQLITE_BACKUP_PKGCONFIG_INSTALL_DIR "${CMAKE_INSTALL_LIBDIR}/pkgconfig"
    CACHE STRING "Where sqlite_backup.pc is installed (relative to the prefix)")

# ---- What the library drags along ----------------------------------------------------------
# A static library's private dependencies become its consumers' link dependencies, so the
# installed package must find them again. Read them off the target instead of restating them
# here, so that the package follows src/CMakeLists.txt when a dependency is added or dropped.
get_target_property(_sqlite_backup_type sqlite_backup TYPE)
get_target_property(_sqlite_backup_links sqlite_backup LINK_LIBRARIES)
set(SQLITE_BACKUP_FIND_DEPENDENCIES "")    # lines for sqlite_backupConfig.cmake
set(_sqlite_backup_pc_modules "")          # pkg-config module names
# (SQLite may be named inside a generator expression, see src/CMakeLists.txt.)
string(FIND "${_sqlite_backup_links}" "SQLite::SQLite3" _sqlite_backup_sqlite_at)
if(_sqlite_backup_sqlite_at GREATER -1)
  string(APPEND SQLITE_BACKUP_FIND_DEPENDENCIES "find_dependency(SQLite3)\n")
  list(APPEND _sqlite_backup_pc_modules sqlite3)
endif()
if("fmt::fmt" IN_LIST _sqlite_backup_links OR "fmt::fmt-header-only" IN_LIST _sqlite_backup_links)
  string(APPEND SQLITE_BACKUP_FIND_DEPENDENCIES "find_dependency(fmt)\n")
  list(APPEND _sqlite_backup_pc_modules fmt)
endif()
list(JOIN _sqlite_backup_pc_modules " " _sqlite_backup_pc_modules)

# ---- The targets ---------------------------------------------------------------------------
install(TARGETS sqlite_backup
  EXPORT sqlite_backupTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# A stripped install (`cmake --install --strip`, and the .deb: CPACK_STRIP_FILES) strips the
# executables and shared objects; CMake leaves a static library as built. Without its debug
# information, as Debian's own tools ship one: in a RelWithDebInfo build 4 MB against 59 MB.
get_target_property(_sqlite_backup_type sqlite_backup TYPE)
if(_sqlite_backup_type STREQUAL "STATIC_LIBRARY" AND CMAKE_STRIP)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
    set(_sqlite_backup_archive_dir "${CMAKE_INSTALL_LIBDIR}")
  else()
    set(_sqlite_backup_archive_dir "\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}")
  endif()
  install(CODE "
    if(CMAKE_INSTALL_DO_STRIP)
      execute_process(COMMAND \"${CMAKE_STRIP}\" --strip-debug --enable-deterministic-archives
        \"\$ENV{DESTDIR}${_sqlite_backup_archive_dir}/$<TARGET_FILE_NAME:sqlite_backup>\"
        COMMAND_ERROR_IS_FATAL ANY)
    endif()")
endif()
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/sqlite_backup
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.hpp")

if(TARGET sqlite_backup_cli)
  if(_sqlite_backup_type STREQUAL "SHARED_LIBRARY")
    # An installed bin/sqlite_backup must find lib/libsqlite_backup.so wherever the prefix went.
    file(RELATIVE_PATH _sqlite_backup_bin_to_lib
      "${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}" "${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}")
    set_target_properties(sqlite_backup_cli PROPERTIES
      INSTALL_RPATH "$ORIGIN/${_sqlite_backup_bin_to_lib}")
  endif()
  install(TARGETS sqlite_backup_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(FILES ${PROJECT_SOURCE_DIR}/docs/sqlite_backup.1
    DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
  # Off the machine (README, "Many machines"): the wrappers that send a snapshot to restic or
  # to an rclone remote and leave nothing half-stored when a side of the pipe fails.
  install(PROGRAMS ${PROJECT_SOURCE_DIR}/scripts/sqlite-backup-restic
                   ${PROJECT_SOURCE_DIR}/scripts/sqlite-backup-rclone
    DESTINATION ${CMAKE_INSTALL_BINDIR})
  # The systemd service and timer (templated on a name: /etc/sqlite-backup/NAME.conf; README,
  # "Many machines"). Their ExecStart names the installed binary, so the unit (and the drop-ins
  # that name the wrappers) are written at install time, when the prefix is final (cmake
  # --install --prefix may change it). systemd looks in <prefix>/lib/systemd/system for /usr
  # and /usr/local alike.
  install(CODE "
    set(SQLITE_BACKUP_UNIT_EXEC \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/sqlite_backup\")
    set(SQLITE_BACKUP_UNIT_BINDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}\")
    configure_file(\"${PROJECT_SOURCE_DIR}/systemd/sqlite-backup@.service.in\"
                   \"${PROJECT_BINARY_DIR}/systemd/sqlite-backup@.service\" @ONLY)
    foreach(_tool restic rclone)
      configure_file(\"${PROJECT_SOURCE_DIR}/systemd/override-\${_tool}.conf.in\"
                     \"${PROJECT_BINARY_DIR}/systemd/override-\${_tool}.conf\" @ONLY)
    endforeach()")
  install(FILES ${PROJECT_BINARY_DIR}/systemd/sqlite-backup@.service
                ${PROJECT_SOURCE_DIR}/systemd/sqlite-backup@.timer
    DESTINATION lib/systemd/system)
  install(FILES ${PROJECT_SOURCE_DIR}/systemd/example.conf
    DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples RENAME sqlite-backup.conf)
  # Drop-ins that send the service's snapshot to restic or rclone instead of a file.
  install(FILES ${PROJECT_BINARY_DIR}/systemd/override-restic.conf
                ${PROJECT_BINARY_DIR}/systemd/override-rclone.conf
    DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
endif()

# ---- CMake package: find_package(sqlite_backup) ----------------------------------------------
install(EXPORT sqlite_backupTargets
  NAMESPACE sqlite_backup::
  FILE sqlite_backupTargets.cmake
  DESTINATION ${SQLITE_BACKUP_CMAKE_INSTALL_DIR})
configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/sqlite_backupConfig.cmake.in
  ${PROJECT_BINARY_DIR}/sqlite_backupConfig.cmake
  INSTALL_DESTINATION ${SQLITE_BACKUP_CMAKE_INSTALL_DIR})
# 0.x releases promise nothing across minor versions, but SameMajorVersion is what the 1.x
# line will need, and consumers asking for 0.1 get any 0.y >= 0.1.
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/sqlite_backupConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMajorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/sqlite_backupConfig.cmake
  ${PROJECT_BINARY_DIR}/sqlite_backupConfigVersion.cmake
  DESTINATION ${SQLITE_BACKUP_CMAKE_INSTALL_DIR})

# ---- pkg-config: sqlite_backup.pc ------------------------------------------------------------
# The file finds its prefix from its own location (${pcfiledir}), so it stays right after
# `cmake --install --prefix` elsewhere and inside the .deb (which installs under /usr
# whatever CMAKE_INSTALL_PREFIX was at configure time).
file(RELATIVE_PATH SQLITE_BACKUP_PC_TO_PREFIX
  "${CMAKE_INSTALL_PREFIX}/${SQLITE_BACKUP_PKGCONFIG_INSTALL_DIR}" "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "/$" "" SQLITE_BACKUP_PC_TO_PREFIX "${SQLITE_BACKUP_PC_TO_PREFIX}")
foreach(_dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${_dir}}")
    set(SQLITE_BACKUP_PC_${_dir} "${CMAKE_INSTALL_${_dir}}")
  else()
    set(SQLITE_BACKUP_PC_${_dir} "\${prefix}/${CMAKE_INSTALL_${_dir}}")
  endif()
endforeach()
if(_sqlite_backup_pc_modules STREQUAL "")
  set(SQLITE_BACKUP_PC_REQUIRES "")
elseif(_sqlite_backup_type STREQUAL "STATIC_LIBRARY")
  # A static archive leaves its dependencies' symbols unresolved, so every consumer's link
  # needs them: plain `pkg-config --libs` (without --static) must print them, which only
  # Requires does. A shared library resolves them itself: Requires.private is then right.
  set(SQLITE_BACKUP_PC_REQUIRES "Requires: ${_sqlite_backup_pc_modules}")
else()
  set(SQLITE_BACKUP_PC_REQUIRES "Requires.private: ${_sqlite_backup_pc_modules}")
endif()
configure_file(${CMAKE_CURRENT_LIST_DIR}/sqlite_backup.pc.in
  ${PROJECT_BINARY_DIR}/sqlite_backup.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/sqlite_backup.pc
  DESTINATION ${SQLITE_BACKUP_PKGCONFIG_INSTALL_DIR})

include(${CMAKE_CURRENT_LIST_DIR}/cpack.cmake)
