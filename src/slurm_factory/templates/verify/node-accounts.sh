# slurm-factory verification, sourced by node-setup.sh and package-node-setup.sh: munged with the cluster's key
# (/verify/munge.key) and the check's users alice and bob, on any node of the check cluster.
if ! pgrep -x munged >/dev/null; then
    install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
    install -d -o munge -g munge -m 0755 /run/munge
    install -o munge -g munge -m 0400 /verify/munge.key /etc/munge/munge.key
    runuser -u munge -- munged
fi
for user in alice:2001 bob:2002; do
    name=${user%%:*} uid=${user#*:}
    getent passwd "$name" >/dev/null || useradd --create-home --uid "$uid" --user-group "$name"
done
