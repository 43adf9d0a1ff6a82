-- What a python-mode consumer must survive: aliases and shell functions (not printed in python mode),
-- a backslash, a newline (Lmod prints a backslash-newline, which Python reads as nothing), a family,
-- a message on stderr.
set_alias("tp", "testpkg --verbose")
set_shell_function("tpf", "echo bash $@", "echo csh")
setenv("BACKSLASH", "a\\b")
setenv("NEWLINE", "line1\nline2")
family("compiler")
LmodMessage("loading quirks")
