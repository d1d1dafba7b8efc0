#!/bin/sh
# The secrets of the docker-compose stack, generated once on the Docker host before the first
# `docker compose up` (docs/compose.md; the backups: docs/retain.md "docker-compose"). One file per compose
# secret (docker-compose.yml `secrets:`), in .local/compose-secrets/ or $COMPOSE_SECRETS_DIR:
#   backup_s3_access_key, backup_s3_secret_key     S3 keys of service backup-s3 (MinIO root user, pgBackRest)
#   pgbackrest_repo1_cipher_pass                   AES-256 passphrase of repo1 (main)
#   pgbackrest_repo2_cipher_pass                   AES-256 passphrase of repo2 (DR)
#   airflow_fernet_key                             [core] fernet_key (urlsafe base64 of 32 bytes)
#   airflow_jwt_secret                             [api_auth] jwt_secret: signs the API's and the tasks' JWTs
#   airflow_secret_key                             [api] secret_key
#   elasticsearch_platform_password                the Elasticsearch file-realm user `platform`
#   platform_api_postgres_password                 the platform API's database login (connection platform_api_postgres)
#   platform_privacy_hmac_key                      connection platform_privacy_hmac (HMAC-SHA256 key, hex)
#   platform_encryption_keyring                    connection platform_encryption, as `python -m include.security
#                                                  new-keyring` prints it (column encryption keys)
# Existing files are never overwritten: a new cipher passphrase would make every existing backup unreadable, a
# new keyring every encrypted column, a new Fernet key Airflow's encrypted fields.
# .local/ is git-ignored and excluded from the build context (.dockerignore). The directory is mode 700, the
# files 600: compose bind-mounts a file secret with the host file's owner and mode (it ignores uid/gid/mode for
# file secrets), so only the root one-shots (backup-init, secrets-init, backup-s3, backup-s3-init) read them;
# secrets-init hands each value to the user of the service that needs it (docs/compose.md, "Secrets").
# KEEP A COPY of the two passphrases and of the keyring in your secrets store.
#
# The keyring is made by the project's own command, so it needs a Python with `cryptography` (the project's
# .venv, or python3 with the Debian/Ubuntu package python3-cryptography); PLATFORM_PYTHON picks another one.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR="${COMPOSE_SECRETS_DIR:-$ROOT/.local/compose-secrets}"
umask 077
mkdir -p "$DIR"
chmod 700 "$DIR"

rand() {  # $1 bytes of randomness, URL-safe (no '/', '+', '=': safe in pgbackrest.conf, MinIO and URLs)
  if command -v openssl >/dev/null 2>&1; then
    openssl rand -base64 "$1" | tr -d '\n=' | tr '/+' '_-'
  else
    python3 -c "import secrets, sys; print(secrets.token_urlsafe(int(sys.argv[1])), end='')" "$1"
  fi
}

fernet() {  # a Fernet key: urlsafe base64 of 32 random bytes, padding kept (44 characters)
  if command -v openssl >/dev/null 2>&1; then
    openssl rand -base64 32 | tr -d '\n' | tr '/+' '_-'
  else
    python3 -c "import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode(), end='')"
  fi
}

hexkey() {  # $1 random bytes as hex
  if command -v openssl >/dev/null 2>&1; then
    openssl rand -hex "$1"
  else
    python3 -c "import secrets, sys; print(secrets.token_hex(int(sys.argv[1])), end='')" "$1"
  fi
}

keyring_python() {  # the first Python that can run include.security (it needs `cryptography`)
  for py in "${PLATFORM_PYTHON:-}" "$ROOT/.venv/bin/python" python3; do
    [ -n "$py" ] || continue
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import cryptography' >/dev/null 2>&1; then
      echo "$py"; return 0
    fi
  done
  return 1
}

keyring() {
  py=$(keyring_python) || {
    echo "secrets.sh: platform_encryption_keyring needs a Python with the cryptography package" \
         "(python3-cryptography, or PLATFORM_PYTHON=/path/to/python)" >&2
    return 1
  }
  (cd "$ROOT" && PYTHONPATH="$ROOT" "$py" -m include.security new-keyring)
}

write_new() {  # name command...: the command's output into $DIR/name, unless that file exists (not empty)
  f="$DIR/$1"; shift
  if [ -s "$f" ]; then echo "kept      $f"; return; fi
  "$@" >"$f.tmp" || { rm -f "$f.tmp"; echo "secrets.sh: generating $f failed" >&2; exit 1; }
  [ -s "$f.tmp" ] || { rm -f "$f.tmp"; echo "secrets.sh: generating $f gave nothing" >&2; exit 1; }
  mv "$f.tmp" "$f"
  echo "generated $f"
}

line() {  # prefix generator argument: one line, the prefix and what the generator printed (never empty)
  v=$("$2" "$3") && [ -n "$v" ] && printf '%s%s\n' "$1" "$v"
}

make_secret() {  # name bytes [fixed-prefix]: random URL-safe text
  write_new "$1" line "${3:-}" rand "$2"
}

# backups (issue 10)
make_secret backup_s3_access_key 12 pgbackrest-
make_secret backup_s3_secret_key 32
make_secret pgbackrest_repo1_cipher_pass 48
make_secret pgbackrest_repo2_cipher_pass 48
# Airflow's own keys, read through its _CMD options (issue 12)
write_new airflow_fernet_key line "" fernet ""
make_secret airflow_jwt_secret 48
make_secret airflow_secret_key 32
# the platform's keys and passwords (issue 12): connections and the Elasticsearch user
make_secret elasticsearch_platform_password 24
make_secret platform_api_postgres_password 32
write_new platform_privacy_hmac_key line "" hexkey 32
write_new platform_encryption_keyring keyring
