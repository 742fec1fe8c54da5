"""Whether this host runs another arch's binaries (binfmt_misc + qemu-user-static), also inside containers.

A cross build compiles with the OS's cross compiler, but its last steps run what it built (the target's dynamic
loader lists each binary's libraries; `slurmd -V` records the version), so the host needs the arch's binfmt handler
with the F flag (the kernel keeps the interpreter open: it works in containers that do not have it).
"""

from __future__ import annotations

from pathlib import Path

from slurm_factory.choices import Arch
from slurm_factory.exceptions import ConfigurationError

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
# The binfmt handler Debian's qemu-user-static registers for each arch.
HANDLERS = {Arch.ARM64: "qemu-aarch64", Arch.AMD64: "qemu-x86_64"}


def emulation_problem(arch: Arch, binfmt_dir: Path = BINFMT_DIR) -> str | None:
    """Why this host cannot run `arch` binaries in containers, or None when it can."""
    handler = binfmt_dir / HANDLERS[arch]
    if not (binfmt_dir / "status").exists():
        return f"binfmt_misc is not mounted at {binfmt_dir}"
    try:
        lines = handler.read_text(encoding="utf-8").splitlines()
    except OSError:
        return f"no {HANDLERS[arch]} binfmt handler is registered (install qemu-user-static and binfmt-support)"
    if not lines or lines[0].strip() != "enabled":
        return f"the {HANDLERS[arch]} binfmt handler is disabled"
    flags = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("flags:")), "")
    if "F" not in flags:
        return f"the {HANDLERS[arch]} binfmt handler lacks the F flag, so it does not work inside containers"
    return None


def require_emulation(arch: Arch, why: str, binfmt_dir: Path = BINFMT_DIR) -> None:
    problem = emulation_problem(arch, binfmt_dir)
    if problem is not None:
        raise ConfigurationError(
            f"{why} needs this host to run {arch.value} binaries, and it cannot: {problem}",
            hint="`scripts/testenv arm64` sets it up on Debian (root): qemu-user-static, binfmt_misc, "
            "update-binfmts --enable qemu-aarch64",
        )
