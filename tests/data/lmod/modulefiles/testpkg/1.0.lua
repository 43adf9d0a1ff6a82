-- A test package: variables with quotes, a $ and spaces, PATH prepended, MANPATH appended, one removed.
whatis("a test package")
setenv("TESTPKG_HOME", "/opt/testpkg/1.0")
setenv("TESTPKG_QUOTE", "it's a \"quoted\" value with $dollar and spaces")
prepend_path("PATH", "/opt/testpkg/1.0/bin")
append_path("MANPATH", "/opt/testpkg/1.0/man")
unsetenv("TESTPKG_OLD")
