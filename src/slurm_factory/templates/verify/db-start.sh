#!/bin/sh
# slurm-factory verification: the accounting database of the check cluster, from the OS's own MariaDB server.
# usage: db-start.sh PASSWORD_FILE
# Initializes the data directory if the package did not, starts the server on the cluster network and creates the
# account slurmdbd uses (StorageUser slurm, from any host of the network, with the password in PASSWORD_FILE).
set -eu
password=$(cat "$1")
# The first of the names that is a program here (MariaDB renamed its programs; older ones have only mysql*).
first() { for candidate in "$@"; do command -v "$candidate" 2>/dev/null && return 0; done; return 1; }
server=$(first mariadbd mysqld /usr/libexec/mariadbd /usr/libexec/mysqld)
admin=$(first mariadb-admin mysqladmin)
client=$(first mariadb mysql)
install -d -o mysql -g mysql /run/mysqld
if [ ! -d /var/lib/mysql/mysql ]; then
    installer=$(first mariadb-install-db mysql_install_db)
    "$installer" --user=mysql --datadir=/var/lib/mysql >/var/log/mariadb-install.log 2>&1
fi
"$server" --user=mysql --datadir=/var/lib/mysql --bind-address=0.0.0.0 --skip-name-resolve \
    --innodb-buffer-pool-size=64M >/var/log/mariadb.log 2>&1 &
tries=0
until "$admin" --silent ping >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -lt 300 ] || { tail -n 20 /var/log/mariadb.log >&2; exit 1; }
    sleep 0.2
done
"$client" --user=root <<SQL
CREATE USER IF NOT EXISTS 'slurm'@'%' IDENTIFIED BY '$password';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'%';
FLUSH PRIVILEGES;
SQL
"$server" --version
