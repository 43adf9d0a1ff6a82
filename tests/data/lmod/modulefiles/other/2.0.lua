setenv("OTHER_ROOT", "/opt/other")
prepend_path("LD_LIBRARY_PATH", "/opt/other/lib")
