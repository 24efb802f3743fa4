#!/usr/bin/env bash
# Makes sure PostgreSQL answers on 127.0.0.1:5432 with trust auth for local
# connections and a database named "test" (what the store/postgres tests
# use): installs it (Debian package) when missing, configures trust auth for
# loopback connections, starts the cluster, creates the database.
# Idempotent: when all of that is already true it only checks.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

ready() { pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }
can_connect() { psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -w -tAc 'SELECT 1' >/dev/null 2>&1; }

if ! (ready && can_connect); then
	if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls -d /etc/postgresql/*/main >/dev/null 2>&1; then
		log "installing PostgreSQL"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq postgresql >/dev/null
	fi
	version=$(ls /etc/postgresql | sort -V | tail -n1)
	conf=/etc/postgresql/$version/main
	changed=
	# Trust auth over loopback and the local socket: a test machine only.
	if ! grep -q '^# otphub-ci' "$conf/pg_hba.conf"; then
		log "configuring trust auth for local connections in $conf/pg_hba.conf"
		{
			echo '# otphub-ci: trust local connections (test machine only)'
			echo 'local   all all               trust'
			echo 'host    all all 127.0.0.1/32  trust'
			echo 'host    all all ::1/128       trust'
			cat "$conf/pg_hba.conf"
		} >"$conf/pg_hba.conf.new"
		chown --reference="$conf/pg_hba.conf" "$conf/pg_hba.conf.new"
		chmod --reference="$conf/pg_hba.conf" "$conf/pg_hba.conf.new"
		mv "$conf/pg_hba.conf.new" "$conf/pg_hba.conf"
		changed=1
	fi
	if ready; then
		if [ -n "$changed" ]; then
			log "reloading cluster $version/main"
			pg_ctlcluster --skip-systemctl-redirect "$version" main reload
		fi
	else
		log "starting cluster $version/main"
		pg_ctlcluster --skip-systemctl-redirect "$version" main start
	fi
	for _ in $(seq 1 60); do
		ready && can_connect && break
		sleep 0.5
	done
	if ! ready; then
		log "PostgreSQL did not become ready on 127.0.0.1:5432"
		exit 1
	fi
	if ! can_connect; then
		log "cannot connect as postgres to 127.0.0.1:5432 without a password (check $conf/pg_hba.conf)"
		exit 1
	fi
fi

if [ "$(psql -h 127.0.0.1 -U postgres -d postgres -w -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'")" != 1 ]; then
	log "creating database test"
	psql -h 127.0.0.1 -U postgres -d postgres -w -qc 'CREATE DATABASE test' >/dev/null
fi
log "ready: postgres://postgres@127.0.0.1:5432/test"
