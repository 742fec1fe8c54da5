#!/bin/bash
# slurm-factory verification: load the artifact's modulefiles under Lmod and show what they put on PATH.
# usage: module-check.sh LMOD_INIT ROOT [SPACK_TREE]
#   The artifact's own modulefile (ROOT/modules/slurm) always. With SPACK_TREE (flat or hierarchy), also Spack's
#   Lmod tree under ROOT/modules/spack: from its Core level, and for a hierarchy through the MPI provider's module,
#   which must open the MPI level of the relocated tree.
set -u
lmod_init=$1 root=$2 spack_tree=${3:-}
unset SLURM_CONF
# shellcheck disable=SC1090
. "$lmod_init"
module use "$root/modules"
module load slurm
echo "SLURM_ROOT=${SLURM_ROOT:-}"
echo "sinfo=$(command -v sinfo)"
echo "slurmd=$(command -v slurmd)"
echo "SLURM_CONF=${SLURM_CONF:-}"
[ -n "$spack_tree" ] || exit 0

module purge
module unuse "$root/modules"
core=$(find "$root/modules/spack" -mindepth 2 -maxdepth 2 -type d -name Core | head -n 1)
echo "spack_core=$core"
module use "$core"
if [ "$spack_tree" = hierarchy ]; then
    # The MPI provider's module is the one that declares the mpi family; loading it extends MODULEPATH.
    mpi_file=$(grep -l 'family("mpi")' "$core"/*/*.lua | head -n 1)
    mpi_module=${mpi_file#"$core"/}
    module load "${mpi_module%.lua}"
    case ":$MODULEPATH:" in
        *":$root/modules/spack/"*"/${mpi_module%%/*}/"*) echo "mpi_level=opened" ;;
        *) echo "mpi_level=missing (MODULEPATH=$MODULEPATH)" ;;
    esac
fi
module load slurm
echo "spack_sinfo=$(command -v sinfo)"
echo "spack_slurmd=$(command -v slurmd)"
