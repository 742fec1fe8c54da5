#!/usr/bin/env bash
# slurm-factory build-compiler publish: GCC 13.4.0 and its dependencies pushed to the local binary mirror
# `slurm-factory-local` (for `build-slurm --compiler-version 13.4.0 --use-local-buildcache`).
# Runs in the same container after the build.
set -euo pipefail

ENV_DIR=/opt/slurm-factory/plan
PREFIX=/opt/slurm-factory-build/gcc-13.4.0-rockylinux10
META_DIR=/build/meta
JOBS=${SLURM_FACTORY_JOBS:-$(nproc)}

stage() { printf '==> slurm-factory stage: %s\n' "$1"; }
fail() { printf 'slurm-factory: %s\n' "$1" >&2; exit 1; }
is_elf() { [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]; }

export CCACHE_DIR=/var/cache/slurm-factory/ccache
# shellcheck disable=SC1091
. /opt/spack/share/spack/setup-env.sh

stage push
spack -e "$ENV_DIR" buildcache push --unsigned --update-index slurm-factory-local
