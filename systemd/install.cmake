# install.cmake: the install-time part of `cmake --install` for the systemd unit and the
# configuration (run by install(SCRIPT) in the top-level CMakeLists.txt, after an install(CODE)
# that sets FS_SOURCE_DIR, FS_BINDIR, FS_LIBEXECDIR, FS_SYSCONFDIR and FS_SYSTEMD_UNITDIR).
#
# It runs at install time so that `cmake --install build --prefix P` (and DESTDIR) give files
# whose paths name P:
#  - systemd/flowscore.service is written with its /usr/local/... and /etc/flowscore paths
#    replaced by the real ones, into lib/systemd/system under the prefix (for prefix /usr:
#    pkg-config's systemdsystemunitdir; -DFS_SYSTEMD_UNITDIR=DIR at configure time overrides);
#  - config/flowscore.json becomes <sysconfdir>/flowscore/flowscore.json with models_dir and
#    state_dir pointing at the unit's state directory (/var/lib/flowscore). An existing file
#    that differs is never overwritten (an operator may have edited it): the new one is put
#    next to it as flowscore.json.new, as dpkg does with changed configuration files.

cmake_minimum_required(VERSION 3.22)

# A GNUInstallDirs directory, absolute at install time (the prefix may differ from configure).
function(fs_full_dir out dir)
    if(IS_ABSOLUTE "${dir}")
        set(${out} "${dir}" PARENT_SCOPE)
    else()
        set(${out} "${CMAKE_INSTALL_PREFIX}/${dir}" PARENT_SCOPE)
    endif()
endfunction()

fs_full_dir(fs_bindir "${FS_BINDIR}")
fs_full_dir(fs_libexecdir "${FS_LIBEXECDIR}")
if(NOT IS_ABSOLUTE "${FS_SYSCONFDIR}" AND CMAKE_INSTALL_PREFIX MATCHES "^/usr/?$")
    set(fs_sysconfdir "/etc") # GNUInstallDirs' rule for the /usr prefix
else()
    fs_full_dir(fs_sysconfdir "${FS_SYSCONFDIR}")
endif()

if(FS_SYSTEMD_UNITDIR)
    fs_full_dir(fs_unitdir "${FS_SYSTEMD_UNITDIR}")
elseif(CMAKE_INSTALL_PREFIX MATCHES "^/usr/?$")
    execute_process(COMMAND pkg-config --variable=systemdsystemunitdir systemd
                    OUTPUT_VARIABLE fs_unitdir OUTPUT_STRIP_TRAILING_WHITESPACE
                    RESULT_VARIABLE fs_rc ERROR_QUIET)
    if(NOT fs_rc EQUAL 0 OR fs_unitdir STREQUAL "")
        set(fs_unitdir "/lib/systemd/system")
    endif()
else()
    set(fs_unitdir "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
endif()

set(fs_stage "${FS_BINARY_DIR}/install-staging")
file(MAKE_DIRECTORY "${fs_stage}")

# The unit, with the install's own paths.
file(READ "${FS_SOURCE_DIR}/systemd/flowscore.service" fs_unit)
string(REPLACE "/usr/local/bin/flowscore" "${fs_bindir}/flowscore" fs_unit "${fs_unit}")
string(REPLACE "/usr/local/libexec/flowscore/" "${fs_libexecdir}/flowscore/" fs_unit "${fs_unit}")
string(REPLACE "/etc/flowscore/flowscore.json" "${fs_sysconfdir}/flowscore/flowscore.json"
       fs_unit "${fs_unit}")
file(WRITE "${fs_stage}/flowscore.service" "${fs_unit}")
file(INSTALL DESTINATION "${fs_unitdir}" TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ
     WORLD_READ FILES "${fs_stage}/flowscore.service")

# The configuration: the repository's defaults, with the state directory's paths.
file(READ "${FS_SOURCE_DIR}/config/flowscore.json" fs_conf)
foreach(fs_pair "models_dir=/var/lib/flowscore/models" "state_dir=/var/lib/flowscore/state")
    string(REGEX REPLACE "=.*" "" fs_key "${fs_pair}")
    string(REGEX REPLACE "^[^=]*=" "" fs_value "${fs_pair}")
    string(REGEX MATCH "\"${fs_key}\"[ \t]*:[ \t]*\"[^\"]*\"" fs_found "${fs_conf}")
    if(fs_found STREQUAL "")
        message(FATAL_ERROR "config/flowscore.json has no string key ${fs_key}")
    endif()
    string(REPLACE "${fs_found}" "\"${fs_key}\": \"${fs_value}\"" fs_conf "${fs_conf}")
endforeach()
file(WRITE "${fs_stage}/flowscore.json" "${fs_conf}")

set(fs_confdir "${fs_sysconfdir}/flowscore")
set(fs_conf_dest "$ENV{DESTDIR}${fs_confdir}/flowscore.json")
if(EXISTS "${fs_conf_dest}")
    file(READ "${fs_conf_dest}" fs_old)
    if(fs_old STREQUAL fs_conf)
        message(STATUS "Up-to-date: ${fs_conf_dest}")
        list(APPEND CMAKE_INSTALL_MANIFEST_FILES "${fs_confdir}/flowscore.json")
    else()
        file(RENAME "${fs_stage}/flowscore.json" "${fs_stage}/flowscore.json.new")
        file(INSTALL DESTINATION "${fs_confdir}" TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE
             GROUP_READ WORLD_READ FILES "${fs_stage}/flowscore.json.new")
        message(STATUS "Kept ${fs_conf_dest} (it was changed); the new defaults are in "
                       "${fs_conf_dest}.new")
    endif()
else()
    file(INSTALL DESTINATION "${fs_confdir}" TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE
         GROUP_READ WORLD_READ FILES "${fs_stage}/flowscore.json")
endif()
