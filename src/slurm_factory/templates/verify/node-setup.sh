#!/bin/sh
# slurm-factory verification: install the artifact on one node of the check cluster, the way a site would.
# usage: node-setup.sh TARBALL PREFIX ROLE PAM_DIR [DEBUG_TARBALL]
#   ROLE controller: slurm.conf, cgroup.conf, slurmdbd.conf and a JWT key in /etc/slurm (`setup --system`)
#   ROLE node:       configless, no configuration on disk (`setup --configless`)
# On every node the artifact's own sbin/slurm-factory-setup creates the slurm and slurmrestd users, the spool and
# log directories, the systemd units in /etc/systemd/system and the PAM links in PAM_DIR. Then munged with the
# cluster's key (/verify/munge.key) and the check's users alice and bob. Prints "root <dir>".
set -eu
tarball=$1 prefix=$2 role=$3 pam_dir=$4 debug=${5:-}
mkdir -p "$prefix" "$pam_dir"
# Safe to unpack only because verify scanned every member first; never as the tarball's owner or modes.
tar -xzf "$tarball" -C "$prefix" --no-same-owner --no-same-permissions
[ -z "$debug" ] || tar -xzf "$debug" -C "$prefix" --no-same-owner --no-same-permissions
root=$(find "$prefix" -mindepth 1 -maxdepth 1 -type d | sort | tail -n 1)
case "$role" in
    controller) "$root/sbin/slurm-factory-setup" --system --pam-dir "$pam_dir" ;;
    node) "$root/sbin/slurm-factory-setup" --configless --users --dirs --unit-dir /etc/systemd/system \
              --pam-dir "$pam_dir" ;;
    *) echo "node-setup.sh: unknown role $role" >&2; exit 2 ;;
esac
. "$(dirname "$0")/node-accounts.sh"
echo "root $root"
