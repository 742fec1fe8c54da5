#!/bin/sh
# slurm-factory verification of native packages: finish one node of the check cluster as a site does after
# `apt-get install` (the packages made the users, directories and units).
# usage: package-node-setup.sh ROLE
#   ROLE controller: slurm.conf, cgroup.conf and slurmdbd.conf in /etc/slurm from the examples slurm-smd ships, and a
#                    JWT key
#   ROLE node:       configless, no configuration on disk
# Then munged with the cluster's key (/verify/munge.key) and the check's users alice and bob.
set -eu
role=$1
examples=/usr/share/doc/slurm-smd/examples
case "$role" in
    controller)
        for name in slurm.conf cgroup.conf slurmdbd.conf; do
            if [ -f "$examples/$name" ]; then
                cp "$examples/$name" "/etc/slurm/$name"
            else  # dh_compress may have compressed a large one
                zcat "$examples/$name.gz" > "/etc/slurm/$name"
            fi
        done
        chown slurm:slurm /etc/slurm/slurmdbd.conf
        chmod 0600 /etc/slurm/slurmdbd.conf
        head -c 32 /dev/urandom > /etc/slurm/jwt_hs256.key
        chown slurm:slurm /etc/slurm/jwt_hs256.key
        chmod 0600 /etc/slurm/jwt_hs256.key
        ;;
    node) ;;
    *) echo "package-node-setup.sh: unknown role $role" >&2; exit 2 ;;
esac
. "$(dirname "$0")/node-accounts.sh"
echo "configured $role"
