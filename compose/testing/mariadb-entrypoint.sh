#!/bin/bash
# Test stand-in for the official mariadb image's entrypoint: on an empty data directory, create the
# root password, MARIADB_DATABASE and MARIADB_USER from the environment on a server without networking;
# then run mariadbd with the container's arguments (arguments starting with '-' go to mariadbd).
set -euo pipefail
if [ $# -eq 0 ] || [ "${1:0:1}" = '-' ]; then set -- mariadbd "$@"; fi
datadir=/var/lib/mysql
if [ ! -d "$datadir/mysql" ]; then
  mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db > /dev/null
  mariadbd --user=mysql --datadir="$datadir" --skip-networking --socket=/run/mysqld/init.sock &
  init=$!
  for _ in $(seq 120); do
    mariadb --socket=/run/mysqld/init.sock -uroot -e 'SELECT 1' > /dev/null 2>&1 && break
    sleep 0.5
  done
  mariadb --socket=/run/mysqld/init.sock -uroot <<SQL
CREATE DATABASE IF NOT EXISTS \`${MARIADB_DATABASE}\`;
CREATE USER '${MARIADB_USER}'@'%' IDENTIFIED BY '${MARIADB_PASSWORD}';
GRANT ALL ON \`${MARIADB_DATABASE}\`.* TO '${MARIADB_USER}'@'%';
ALTER USER 'root'@'localhost' IDENTIFIED BY '${MARIADB_ROOT_PASSWORD}';
SQL
  kill "$init"
  wait "$init" || true
fi
exec "$@" --user=mysql --datadir="$datadir"
