#!/bin/sh
# slurm-factory verification: bring up one node of the check cluster from the relocated artifact.
# usage: node-start.sh TARBALL PREFIX CONTROLLER NODES ROLE
#   ROLE controller: munged + slurmctld + slurmd; ROLE compute: munged + slurmd.
# The cluster's slurm.conf is the artifact's own example rendered by its sbin/slurm-factory-setup, with the
# controller and node names of this cluster; /verify/munge.key is the shared munge key.
set -eu
tarball=$1 prefix=$2 controller=$3 nodes=$4 role=$5
mkdir -p "$prefix" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /etc/munge /run/munge
# Safe to unpack only because verify scanned every member first; never as the tarball's owner or modes.
tar -xzf "$tarball" -C "$prefix" --no-same-owner --no-same-permissions
root=$(find "$prefix" -mindepth 1 -maxdepth 1 -type d | head -n 1)
conf_dir=/etc/slurm-verify
"$root/sbin/slurm-factory-setup" --conf-dir "$conf_dir" --unit-dir /tmp/units >/dev/null
sed -i -e "s/^SlurmctldHost=.*/SlurmctldHost=$controller/" \
       -e "s/^NodeName=.*/NodeName=$nodes CPUs=1 State=UNKNOWN/" "$conf_dir/slurm.conf"
install -o munge -g munge -m 0400 /verify/munge.key /etc/munge/munge.key
chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
runuser -u munge -- munged
export SLURM_CONF="$conf_dir/slurm.conf"
if [ "$role" = controller ]; then
    "$root/sbin/slurmctld"
fi
"$root/sbin/slurmd" -d "$root/sbin/slurmstepd"
echo "root $root"
