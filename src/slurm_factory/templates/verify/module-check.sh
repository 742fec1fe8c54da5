#!/bin/bash
# slurm-factory verification: load the artifact's modulefile under Lmod and show what it put on PATH.
# usage: module-check.sh LMOD_INIT ROOT
set -u
lmod_init=$1 root=$2
unset SLURM_CONF
# shellcheck disable=SC1090
. "$lmod_init"
module use "$root/modules"
module load slurm
echo "SLURM_ROOT=${SLURM_ROOT:-}"
echo "sinfo=$(command -v sinfo)"
echo "slurmd=$(command -v slurmd)"
echo "SLURM_CONF=${SLURM_CONF:-}"
