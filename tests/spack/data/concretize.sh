#!/usr/bin/env bash
# Concretize the generated environment inside the toolchain image, offline, as build-spack.sh's first step does.
set -euo pipefail
# shellcheck disable=SC1091
. /opt/spack/share/spack/setup-env.sh
spack -e /opt/slurm-factory/plan concretize --fresh
mkdir -p "$1" /build/meta
cp /opt/slurm-factory/plan/spack.lock /build/meta/spack.lock
