# A package for the Spack tests: nothing to download, nothing to compile, one script installed.
from spack_repo.builtin.build_systems.generic import Package

from spack.package import *


class SfHello(Package):
    """Installs bin/sf-hello, so a buildcache push and an install from it can be tested offline in seconds."""

    homepage = "https://example.invalid/sf-hello"
    has_code = False

    version("1.0")

    def install(self, spec, prefix):
        mkdirp(prefix.bin)
        script = join_path(prefix.bin, "sf-hello")
        with open(script, "w") as stream:
            stream.write("#!/bin/sh\necho hello from sf-hello\n")
        set_executable(script)
