"""Real Docker: text files copied from a Spack view find the unpacked tree instead of the view — pkg-config files
through ${pcfiledir}, scripts their interpreter on PATH — while binaries and unrelated text are left alone."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from slurm_factory.docker_engine import DockerSession
from slurm_factory.plan import PlanFile
from slurm_factory.plan.templating import render
from tests.conftest import BASE_IMAGE

pytestmark = pytest.mark.docker

PREFIX = "/opt/slurm-factory-build/slurm-24.11.5-trixie"
VIEW = "/opt/slurm-factory/spack/view"
RESOLVED_VIEW = "/opt/slurm-factory/spack/._view/4ylk2bqmh6lwcfyv"
TREE = f"""set -euo pipefail
mkdir -p {PREFIX}/lib/pkgconfig {PREFIX}/bin {PREFIX}/share/doc
printf 'prefix={VIEW}\\nlibdir=${{prefix}}/lib\\nName: foo\\nDescription: f\\nVersion: 1\\n' \\
    > {PREFIX}/lib/pkgconfig/foo.pc
printf 'prefix={RESOLVED_VIEW}\\nincludedir=${{prefix}}/include\\nName: bar\\nDescription: b\\nVersion: 2\\n' \\
    > {PREFIX}/lib/pkgconfig/bar.pc
printf '#!{VIEW}/bin/sh\\necho plain\\n' > {PREFIX}/bin/plain
printf '#!{VIEW}/bin/sh -eu\\necho with-arguments\\n' > {PREFIX}/bin/with-arguments
printf 'built in {VIEW}\\n' > {PREFIX}/share/doc/NOTES
cp /bin/true {PREFIX}/bin/true
chmod +x {PREFIX}/bin/plain {PREFIX}/bin/with-arguments
sha256sum {PREFIX}/bin/true > /tmp/true.sha256
"""


def _relocation_script() -> str:
    header = f"set -euo pipefail\nPREFIX={PREFIX}\nstage() {{ :; }}\nINSTALL_PATHS=({VIEW} {RESOLVED_VIEW})\n"
    return header + render("common/relocate-text.sh.j2")


def test_view_paths_in_pkg_config_files_and_shebangs_follow_the_unpacked_tree(project_cleanup: str) -> None:
    session = DockerSession(project_cleanup)
    files = {
        PurePosixPath("/tmp/tree.sh"): PlanFile(TREE),
        PurePosixPath("/tmp/relocate.sh"): PlanFile(_relocation_script()),
    }
    with session.container(BASE_IMAGE, ["sleep", "infinity"], role="relocate-text") as box:
        box.put_files(files)
        box.start()
        assert box.run(["bash", "/tmp/tree.sh"])[0] == 0
        code, output = box.run(["bash", "/tmp/relocate.sh"])
        assert code == 0, output
        code, output = box.run(["sh", "-c", "apt-get -qq update && apt-get -qq install -y pkgconf >/dev/null"])
        assert code == 0, output
        moved = "/srv/elsewhere/slurm"
        assert box.run(["sh", "-c", f"mkdir -p /srv/elsewhere && mv {PREFIX} {moved}"])[0] == 0
        pkgconfig = f"PKG_CONFIG_PATH={moved}/lib/pkgconfig pkg-config"
        for variable, package, expected in (("libdir", "foo", "lib"), ("includedir", "bar", "include")):
            command = f'realpath -m "$({pkgconfig} --variable={variable} {package})"'
            assert box.run(["sh", "-c", command]) == (0, f"{moved}/{expected}\n")
        assert box.run([f"{moved}/bin/plain"]) == (0, "plain\n")
        assert box.run([f"{moved}/bin/with-arguments"]) == (0, "with-arguments\n")
        assert box.run(["head", "-n1", f"{moved}/bin/with-arguments"])[1] == "#!/usr/bin/env -S sh -eu\n"
        assert box.run(["cat", f"{moved}/share/doc/NOTES"])[1] == f"built in {VIEW}\n"  # reported, not guessed
        code, output = box.run(["sh", "-c", f"sed 's|{PREFIX}|{moved}|' /tmp/true.sha256 | sha256sum -c"])
        assert code == 0, output
