#!/usr/bin/env bash
# Concretize the generated environment inside the toolchain image, offline, as build-spack.sh's first steps do:
# the OS externals are detected first when the plan takes any (--os-packages), then the environment concretizes.
set -euo pipefail
# shellcheck disable=SC1091
. /opt/spack/share/spack/setup-env.sh
plan=/opt/slurm-factory/plan
mkdir -p "$1" /build/meta
if [ -f "$plan/os-externals.json" ]; then
    spack -e "$plan" python "$plan/detect_externals.py" "$plan/os-externals.json" "$plan/externals.yaml" \
        /build/meta/os-externals.json
fi
spack -e "$plan" concretize --fresh
cp "$plan/spack.lock" /build/meta/spack.lock
