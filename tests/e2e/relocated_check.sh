#!/usr/bin/env bash
# Runs inside a fresh container of the toolchain's base image: installs only the artifact's runtime packages
# (from its manifest), unpacks it at a prefix different from the build prefix, and proves it runs from there.
# usage: relocated_check.sh TARBALL PREFIX RUNTIME_PACKAGE...
set -euo pipefail
tarball=$1 prefix=$2
shift 2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$@" lmod >/dev/null
mkdir -p "$prefix"
tar -xzf "$tarball" -C "$prefix"
root=$(find "$prefix" -mindepth 1 -maxdepth 1 -type d)
echo "root=$root"

missing=0
while IFS= read -r -d '' file; do
    [ "$(head -c 4 "$file" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
    if ldd "$file" | grep -q 'not found'; then
        echo "MISSING in ${file#"$root"/}: $(ldd "$file" | grep 'not found' | tr -s ' \t' ' ')"
        missing=1
    fi
done < <(find "$root" -type f -print0)
[ "$missing" -eq 0 ] && echo "ldd: every library found"

echo "slurmctld: $("$root/sbin/slurmctld" -V)"
echo "slurmd: $("$root/sbin/slurmd" -V)"
# The configuration names SlurmUser=slurm: --users creates it (and slurmrestd), as a site's setup does.
"$root/sbin/slurm-factory-setup" --users >/dev/null
id slurm >/dev/null && echo "users: slurm $(id -u slurm), slurmrestd $(id -u slurmrestd)"
echo "sinfo: $(SLURM_CONF="$root/etc/slurm.conf" "$root/bin/sinfo" -V)"
echo "PluginDir lines: $(grep -c '^PluginDir=' "$root/etc/slurm.conf" || true)"
grep '^ExecStart=' "$root/etc/systemd/slurmd.service"

set +u
# shellcheck disable=SC1091
. /usr/share/lmod/lmod/init/bash
module use "$root/modules"
module load slurm
echo "module: SLURM_ROOT=$SLURM_ROOT sinfo=$(command -v sinfo) slurmd=$(command -v slurmd)"
exit "$missing"
