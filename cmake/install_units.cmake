# Run by `cmake --install` (install(SCRIPT) in CMakeLists.txt): the example
# systemd units, with ExecStart= naming the tool where it is installed
# (the units in the repository say /usr/local/bin/ioplex, the default
# prefix's). The prefix is the one given at install time (--prefix), so
# this runs then, not at configure time; file(INSTALL) honours DESTDIR.
# In: IOPLEX_UNITS_SRC, IOPLEX_UNITS_DEST (relative to the prefix),
# IOPLEX_BINDIR (relative to it, or absolute), IOPLEX_UNITS_TMP.
if(IS_ABSOLUTE "${IOPLEX_BINDIR}")
  set(bindir "${IOPLEX_BINDIR}")
else()
  set(bindir "${CMAKE_INSTALL_PREFIX}/${IOPLEX_BINDIR}")
endif()
file(REMOVE_RECURSE "${IOPLEX_UNITS_TMP}")
file(GLOB units "${IOPLEX_UNITS_SRC}/*")
foreach(u IN LISTS units)
  get_filename_component(name "${u}" NAME)
  file(READ "${u}" text)
  string(REPLACE "/usr/local/bin/ioplex " "${bindir}/ioplex " text "${text}")
  file(WRITE "${IOPLEX_UNITS_TMP}/${name}" "${text}")
endforeach()
file(GLOB made "${IOPLEX_UNITS_TMP}/*")
file(INSTALL ${made} DESTINATION "${CMAKE_INSTALL_PREFIX}/${IOPLEX_UNITS_DEST}"
     FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
