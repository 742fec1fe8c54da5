#!/usr/bin/env bash
# The build step of a Spack build container with a stand-in for Slurm: concretize and install the environment
# (one package that needs no download), and leave the prefix and metadata directory the copy-out expects.
set -euo pipefail
# shellcheck disable=SC1091
. /opt/spack/share/spack/setup-env.sh
spack --version
spack -e /opt/slurm-factory/plan concretize --fresh
spack -e /opt/slurm-factory/plan install
mkdir -p "$1" /build/meta
spack -e /opt/slurm-factory/plan find --format '{name} {version}' > /build/meta/installed.txt
