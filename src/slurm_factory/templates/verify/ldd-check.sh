#!/bin/sh
# slurm-factory verification: unpack the artifact at PREFIX and check that every ELF file finds its libraries.
# usage: ldd-check.sh TARBALL PREFIX [HOST_PROVIDED_REGEX]
# Prints "root <dir>", "elf <count>" and one "missing <file>: <library>" line per unresolved library; libraries
# matching HOST_PROVIDED_REGEX (GPU vendor libraries dlopened from the host driver) are reported as "host ...".
set -eu
tarball=$1 prefix=$2 host_provided=${3:-}
mkdir -p "$prefix"
# Safe to unpack only because verify scanned every member first; never as the tarball's owner or modes.
tar -xzf "$tarball" -C "$prefix" --no-same-owner --no-same-permissions
root=$(find "$prefix" -mindepth 1 -maxdepth 1 -type d | head -n 1)
echo "root $root"
count=0
for file in $(find "$root" -type f | sort); do
    [ "$(head -c 4 "$file" | od -An -c | tr -d ' \n')" = '177ELF' ] || continue
    count=$((count + 1))
    ldd "$file" 2>&1 | awk -v file="${file#"$root"/}" -v host="$host_provided" '
        /not found/ { lib = $1; if (host != "" && lib ~ host) print "host " file ": " lib; else print "missing " file ": " lib }'
done
echo "elf $count"
