"""One-shot `secrets-init` of docker-compose (issue 12, docs/compose.md): hands the stack's secrets to the
non-root services that need them, and writes the Airflow connections of the stack, every one verifying the
project CA.

    python scripts/compose/secrets_init.py      (the compose service runs it as root, in the platform image)

Why a one-shot: compose mounts a file secret as a bind mount of the host file, with the host file's owner and
mode (it ignores ``uid``/``gid``/``mode`` for file secrets), and scripts/compose/secrets.sh makes those files
mode 600. Root in a container reads them; the Airflow image's user (AIRFLOW_UID, group 0) and Elasticsearch's
(uid 1000) do not. So this script, as root, reads /run/secrets/<name> and writes what each user needs into a
named volume owned by that user (mode 400, directories 700):

    /out/airflow/                       volume airflow-secrets, AIRFLOW_UID:0, mounted at /run/airflow-secrets
        airflow_fernet_key              [core] fernet_key    } read through Airflow's documented _CMD options
        airflow_jwt_secret              [api_auth] jwt_secret} (AIRFLOW__CORE__FERNET_KEY_CMD="cat ..."), so
        airflow_secret_key              [api] secret_key     } they are in no environment and no airflow.cfg
        env/AIRFLOW_CONN_<ID>           every connection (JSON). The image's entrypoint (docker/airflow/
                                        entrypoint.sh) exports each file as the variable of its name: Airflow has
        env/AIRFLOW__ELASTICSEARCH_CONFIGS__BASIC_AUTH    no _CMD for connections or for the task-log
                                        handler's client options, and the project's own code outside the hooks
                                        (include/connections.py) reads the same AIRFLOW_CONN_* variables
    /out/elasticsearch/platform.pass    volume elasticsearch-secrets, uid 1000 gid 0: the file-realm user's
                                        password, given to `elasticsearch-users` when the container starts

The connections are airflow_settings.yaml's (compose addressing) with the TLS settings of scripts/settings.py
(``tls_connection``, the table of docs/tls.md) for the compose CA path, plus the key-only connections of the
secrets: platform_encryption (the keyring), platform_privacy_hmac, platform_api_postgres (the API's database
login, created by `python -m include.access api-login` in airflow-init). Rendered on every run: a changed secret
or connection takes effect with the next `up`. Secrets that are missing, empty or malformed stop it with a
message naming the file.

Environment: PLATFORM_SECRETS_DIR (/run/secrets), SECRETS_INIT_OUT (/out), AIRFLOW_UID (50000), ES_UID/ES_GID
(1000/0).
"""
from __future__ import annotations

import base64
import binascii
import importlib.util
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WHO = "secrets-init"
SECRETS_DIR = Path(os.environ.get("PLATFORM_SECRETS_DIR", "/run/secrets"))

# where the compose services see the project CA (volume tls-ca) and the Airflow secrets (volume airflow-secrets)
CA_FILE = "/opt/airflow/tls/ca.crt"
AIRFLOW_SECRETS_MOUNT = "/run/airflow-secrets"
ES_PASSWORD_FILE = "platform.pass"
API_LOGIN = "platform_api"  # the platform API's database login role (include/access/dbroles.py)

# compose secret -> what it is (all written by scripts/compose/secrets.sh)
SECRET_NAMES = ("airflow_fernet_key", "airflow_jwt_secret", "airflow_secret_key", "elasticsearch_platform_password",
                "platform_api_postgres_password", "platform_privacy_hmac_key", "platform_encryption_keyring")
# Airflow option (the part of AIRFLOW__<...>_CMD) -> the file under /run/airflow-secrets (= the secret's name)
AIRFLOW_KEYS = {"CORE__FERNET_KEY": "airflow_fernet_key", "API_AUTH__JWT_SECRET": "airflow_jwt_secret",
                "API__SECRET_KEY": "airflow_secret_key"}


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


pki = _load("compose_backup_init", HERE / "backup_init.py")  # _write: atomic, mode and owner


def read_secrets(directory: Path = SECRETS_DIR) -> dict[str, str]:
    """Every secret, stripped; exits naming the files that are missing, empty or malformed."""
    out, bad = {}, []
    for name in SECRET_NAMES:
        f = directory / name
        value = f.read_text().strip() if f.exists() else ""
        if not value:
            bad.append(f"{f} (missing or empty)")
        out[name] = value
    if not bad:
        bad += _malformed(out, directory)
    if bad:
        sys.exit(f"{WHO}: {'; '.join(bad)}: run scripts/compose/secrets.sh on the Docker host before "
                 "`docker compose up` (docs/compose.md)")
    return out


def _malformed(s: dict[str, str], directory: Path) -> list[str]:
    bad = []
    try:
        if len(base64.urlsafe_b64decode(s["airflow_fernet_key"].encode())) != 32:
            raise ValueError
    except (ValueError, binascii.Error):
        bad.append(f"{directory / 'airflow_fernet_key'} (not a Fernet key: urlsafe base64 of 32 bytes)")
    try:
        if len(bytes.fromhex(s["platform_privacy_hmac_key"])) < 32:
            raise ValueError
    except ValueError:
        bad.append(f"{directory / 'platform_privacy_hmac_key'} (not a hex key of at least 32 bytes)")
    try:
        from include.security.crypto import Keyring

        d = json.loads(s["platform_encryption_keyring"])
        Keyring.from_dict(d["extra"])
    except Exception as e:  # noqa: BLE001  (any defect: the message says which file)
        bad.append(f"{directory / 'platform_encryption_keyring'} (not a keyring connection as "
                   f"`python -m include.security new-keyring` prints it: {type(e).__name__})")
    if len(s["elasticsearch_platform_password"]) < 6:
        bad.append(f"{directory / 'elasticsearch_platform_password'} (Elasticsearch wants at least 6 characters)")
    return bad


def connections(sec: dict[str, str]) -> dict[str, dict]:
    """conn_id -> connection JSON dict of the compose stack: airflow_settings.yaml's connections with
    scripts/settings.py's TLS settings for the compose CA, and the key-only connections."""
    st = _load("platform_settings_compose", ROOT / "scripts" / "settings.py")
    # tls_connection reads the CA path and the Elasticsearch password through these two functions (the local
    # stack's files); this private copy of the module gets the compose ones
    st.tls_paths = lambda: {"ca": Path(CA_FILE)}
    st.es_tls_password = lambda: sec["elasticsearch_platform_password"]
    conns = st.compose_connections()
    pg = conns["platform_postgres"]
    conns["platform_api_postgres"] = {"conn_type": "postgres", "host": pg["host"], "port": pg["port"],
                                      "login": API_LOGIN, "password": sec["platform_api_postgres_password"],
                                      "schema": pg["schema"]}
    out = {conn_id: st.tls_connection(conn_id, d) for conn_id, d in conns.items()}
    out["platform_privacy_hmac"] = {"conn_type": "generic", "password": sec["platform_privacy_hmac_key"]}
    out["platform_encryption"] = json.loads(sec["platform_encryption_keyring"])
    out["_es_user"] = st.ES_TLS_USER  # not a connection: popped by run()
    return out


def run(out: Path, secrets_dir: Path = SECRETS_DIR, airflow_uid: int | None = None,
        es_owner: tuple[int, int] | None = None) -> None:
    sec = read_secrets(secrets_dir)
    airflow_uid = int(os.environ.get("AIRFLOW_UID") or 50000) if airflow_uid is None else airflow_uid
    airflow_owner = (airflow_uid, 0)  # the official Airflow image runs as AIRFLOW_UID with group 0
    es_owner = es_owner or (int(os.environ.get("ES_UID") or 1000), int(os.environ.get("ES_GID") or 0))

    conns = connections(sec)
    es_user = conns.pop("_es_user")
    env = {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(d, sort_keys=True) for conn_id, d in conns.items()}
    env["AIRFLOW__ELASTICSEARCH_CONFIGS__BASIC_AUTH"] = base64.b64encode(
        f"{es_user}:{sec['elasticsearch_platform_password']}".encode()).decode()

    a, e = out / "airflow", out / "airflow" / "env"
    for key_file in AIRFLOW_KEYS.values():  # no newline: Airflow takes a _CMD's output as it is
        pki._write(a / key_file, sec[key_file], 0o400, airflow_owner)
    for name, value in env.items():
        pki._write(e / name, value, 0o400, airflow_owner)
    for stale in set(p.name for p in e.iterdir()) - set(env):
        (e / stale).unlink()
    es = out / "elasticsearch"
    pki._write(es / ES_PASSWORD_FILE, sec["elasticsearch_platform_password"], 0o400, es_owner)
    for d, owner in ((a, airflow_owner), (e, airflow_owner), (es, es_owner)):
        if os.geteuid() == 0:
            os.chown(d, *owner)
        os.chmod(d, 0o700)
    print(f"{WHO}: Airflow keys, {len(conns)} connections ({', '.join(sorted(conns))}) and the Elasticsearch "
          f"user's password written to {out}", file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1:]:
        sys.exit(__doc__)
    sys.path.insert(0, str(ROOT))  # include.security (the keyring's format)
    run(Path(os.environ.get("SECRETS_INIT_OUT", "/out")))
