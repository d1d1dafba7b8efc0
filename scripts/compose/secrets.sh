#!/bin/sh
# The secrets of the docker-compose stack's backups (issue 10, docs/retain.md "docker-compose"), generated
# once on the Docker host before the first `docker compose up`:
#   .local/compose-secrets/backup_s3_access_key           S3 keys of service backup-s3 (MinIO root user,
#   .local/compose-secrets/backup_s3_secret_key           used by pgBackRest)
#   .local/compose-secrets/pgbackrest_repo1_cipher_pass   AES-256 passphrase of repo1 (main)
#   .local/compose-secrets/pgbackrest_repo2_cipher_pass   AES-256 passphrase of repo2 (DR)
# Existing files are never overwritten: a new cipher passphrase would make every existing backup unreadable.
# .local/ is git-ignored and excluded from the build context (.dockerignore). Files are mode 600: only
# the containers that run as root read them (backup-init, backup-s3, backup-s3-init); backup-init hands the
# rendered pgbackrest.conf to postgres and to the Airflow workers. KEEP A COPY of the two passphrases in
# your secrets store: without them the backups cannot be restored.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR="$ROOT/.local/compose-secrets"
umask 077
mkdir -p "$DIR"
chmod 700 "$DIR"

rand() {  # $1 bytes of randomness, URL-safe (no '/', '+', '=': safe in pgbackrest.conf and MinIO)
  if command -v openssl >/dev/null 2>&1; then
    openssl rand -base64 "$1" | tr -d '\n=' | tr '/+' '_-'
  else
    python3 -c "import secrets, sys; print(secrets.token_urlsafe(int(sys.argv[1])), end='')" "$1"
  fi
}

make_secret() {  # name bytes [fixed-prefix]
  f="$DIR/$1"
  if [ -s "$f" ]; then echo "kept      $f"; return; fi
  printf '%s%s\n' "${3:-}" "$(rand "$2")" >"$f.tmp"
  mv "$f.tmp" "$f"
  echo "generated $f"
}

make_secret backup_s3_access_key 12 pgbackrest-
make_secret backup_s3_secret_key 32
make_secret pgbackrest_repo1_cipher_pass 48
make_secret pgbackrest_repo2_cipher_pass 48
