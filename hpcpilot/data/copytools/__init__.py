"""The copytool family: cp, mv, symlink (shared filesystem), xrdcp, gfal, rucio."""
