"""Loader of airflow_settings.yaml (Astro CLI format) for the local, non-Astro stack.

    python scripts/settings.py env       print `export AIRFLOW_CONN_*=...` for the local stack
    python scripts/settings.py buckets   create the S3 bucket(s) named by the variables
    python scripts/settings.py backup-buckets
                                         create the pgBackRest repository buckets (TLS S3, platform_backup)
    python scripts/settings.py pgbackrest-conf
                                         print the local pgbackrest.conf (contains the cipher passphrases:
                                         services.sh writes it to a postgres-owned file, mode 600)
    python scripts/settings.py airflow [--connections]
                                         import pools and variables into Airflow's metadata DB;
                                         --connections also imports the connections as written
                                         (compose addressing; the compose stack exports them from its
                                         secrets instead, scripts/compose/secrets_init.py)

airflow_settings.yaml names docker-compose services as hosts (postgres:5432, kafka:9092, ...).
Locally every service listens on loopback, on the port scripts/ports.env gives it; this loader
rewrites host:port accordingly, so both setups come from the one file.

Backups (issue 10): connection ``platform_backup`` describes the pgBackRest repositories (S3 API over
TLS, repo1 main + repo2 DR). Locally its endpoint is the gunicorn-served moto of service `backup-s3`
(https://localhost:BACKUP_S3_PORT, CA under the data dir), and its AES-256 cipher passphrases are
generated once into the git-ignored ``.local/secrets/`` and added to the connection's extra here; they
are never in the repository. Elsewhere they come from the secrets backend.

TLS mode (docs/tls.md): when ``$STATE/tls-mode`` says ``on`` (scripts/services.sh up --tls), every local
connection is written to verify the project-local CA: ``sslmode=verify-full`` + ``sslrootcert`` (PostgreSQL),
``ssl`` + ``ssl_ca_certs`` (Redis), ``security.protocol=SSL`` + ``ssl.ca.location`` (Kafka), an https
``endpoint_url`` + ``verify`` (S3), ``https`` + ``ca_certs`` and the file-realm user (Elasticsearch), and the
Airflow settings get the api-server's certificate and https URLs. ``PLATFORM_STATE_DIR`` and
``PLATFORM_PORTS_FILE`` select another state directory and ports file (a second stack, as in scripts/lib.sh).

In docker-compose the same connection (as written) drives ``scripts/compose/backup_init.py``, which renders
the two pgbackrest.conf of that stack with :func:`render_compose_pgbackrest_conf` (docs/retain.md,
"docker-compose"). The compose-only extras (``pg1_host``: the pgBackRest TLS server, ``scratch_root``) are
dropped by the local mapping, where pgBackRest runs directly as the cluster's OS user.
"""
from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shlex
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ROOT / "airflow_settings.yaml"

# compose service name -> (port variable in scripts/ports.env, port inside the compose network)
SERVICE_PORTS = {
    "postgres": ("PG_PORT", 5432),
    "redis": ("REDIS_PORT", 6379),
    "kafka": ("KAFKA_PORT", 9092),
    "elasticsearch": ("ES_PORT", 9200),
    "minio": ("S3_PORT", 9000),
}


STATE = Path(os.environ.get("PLATFORM_STATE_DIR") or ROOT / ".local")
PORTS_FILE = Path(os.environ.get("PLATFORM_PORTS_FILE") or ROOT / "scripts" / "ports.env")
BACKUP_CONN = "platform_backup"
BACKUP_REPOS = (1, 2)  # 1: main repository, 2: disaster-recovery repository (other bucket/region)


def data_dir() -> Path:
    """The service data directory chosen by scripts/lib.sh (data_dir), or its default."""
    f = STATE / "data-dir"
    return Path(f.read_text().strip()) if f.exists() else STATE / "data"


def backup_paths() -> dict[str, Path]:
    """Where the local backup pieces live (services.sh creates them, owned by postgres)."""
    d = data_dir()
    return {"pgbackrest_dir": d / "pgbackrest", "config": d / "pgbackrest" / "pgbackrest.conf",
            "ca_file": d / "backup-s3" / "tls" / "ca.crt", "pg1_path": d / "postgres",
            "pg1_socket_path": d / "pg-socket"}


def write_secret(f: Path, text: str) -> None:
    """Write ``text`` to ``f`` atomically (a temporary file, then rename), mode 600, in a directory of mode
    700 (made when missing)."""
    f.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(f.parent, 0o700)
    tmp = f.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, f)


def secret_file(name: str, make) -> Path:
    """``$STATE/secrets/<name>``, written once with ``make()`` and never replaced (a new key would make what
    the old one protects unreadable); the directory is kept at mode 700."""
    f = STATE / "secrets" / name
    f.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(f.parent, 0o700)
    if not f.exists():
        write_secret(f, make())
    return f


def backup_cipher_pass(repo: int) -> str:
    """The AES-256 passphrase of repository ``repo``: generated once into .local/secrets (mode 600)."""
    return secret_file(f"pgbackrest-repo{repo}.pass", lambda: secrets.token_urlsafe(48) + "\n").read_text().strip()


def read_ports(path: Path | None = None) -> dict[str, int]:
    path = path or PORTS_FILE
    ports = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            k, v = line.split("=", 1)
            ports[k.strip()] = int(v.strip())
    return ports


# ------------------------------------------------------------------ TLS mode (scripts/tls.sh, docs/tls.md)
ES_TLS_USER = "platform"


def tls_mode() -> bool:
    """True when the local stack runs in TLS mode (``$STATE/tls-mode``, written by services.sh up)."""
    f = STATE / "tls-mode"
    return f.exists() and f.read_text().strip() == "on"


def tls_paths() -> dict[str, Path]:
    d = data_dir() / "tls"
    return {"ca": d / "ca.crt", "cert": d / "server.crt", "key": d / "server.key"}


def es_tls_password() -> str:
    """The password of the Elasticsearch file-realm user (TLS mode): generated once into .local/secrets;
    services.sh (scripts/tls.sh) gives it to ``elasticsearch-users``."""
    return secret_file("elasticsearch-platform.pass", lambda: secrets.token_hex(24) + "\n").read_text().strip()


def tls_connection(conn_id: str, d: dict) -> dict:
    """Connection ``d`` (local form) set up to verify the project CA over TLS; unknown types unchanged."""
    ca = str(tls_paths()["ca"])
    d = {**d, "extra": dict(d.get("extra") or {})}
    x = d["extra"]
    kind = d.get("conn_type")
    if kind == "postgres":
        x.update({"sslmode": "verify-full", "sslrootcert": ca})
    elif kind == "redis":
        x.update({"ssl": True, "ssl_ca_certs": ca, "ssl_cert_reqs": "required", "ssl_check_hostname": True})
    elif kind == "kafka":
        x.update({"security.protocol": "SSL", "ssl.ca.location": ca,
                  "ssl.endpoint.identification.algorithm": "https"})
    elif kind == "elasticsearch":
        d["schema"] = "https"
        d["login"], d["password"] = ES_TLS_USER, es_tls_password()
        x.update({"ca_certs": ca, "verify_certs": True})
    elif kind == "aws" and conn_id != BACKUP_CONN and "endpoint_url" in x:
        # platform_backup keeps its own TLS endpoint (service backup-s3, its own CA)
        x["endpoint_url"] = "https://" + x["endpoint_url"].split("://", 1)[-1]
        x["verify"] = ca
    if not x:
        d.pop("extra")
    return d


def load_settings(path: Path = SETTINGS) -> dict:
    return yaml.safe_load(path.read_text())["airflow"]


def _local_hostport(host: str, port: int | None, ports: dict[str, int]) -> tuple[str, int | None]:
    if host in SERVICE_PORTS:
        var, _ = SERVICE_PORTS[host]
        return "127.0.0.1", ports[var]
    return host, port


def _rewrite_address(value: str, ports: dict[str, int]) -> str:
    """Rewrite 'host:port' or 'scheme://host:port' of a compose service to loopback."""
    scheme = ""
    rest = value
    if "://" in value:
        scheme, rest = value.split("://", 1)
        scheme += "://"
    hostport, sep, tail = rest.partition("/")
    host, _, port = hostport.partition(":")
    if host not in SERVICE_PORTS:
        return value
    h, p = _local_hostport(host, int(port) if port else None, ports)
    return f"{scheme}{h}:{p}{sep}{tail}"


def local_connections(settings: dict | None = None, ports: dict[str, int] | None = None,
                      tls: bool | None = None) -> dict[str, dict]:
    """conn_id -> Airflow connection JSON dict, addressed to the local stack (in its TLS mode unless
    ``tls`` says which)."""
    settings = settings or load_settings()
    ports = ports or read_ports()
    tls = tls_mode() if tls is None else tls
    out = {}
    for c in settings.get("connections", []):
        extra = dict(c.get("conn_extra") or {})
        for key in ("endpoint_url", "bootstrap.servers", "hosts"):
            if key in extra and isinstance(extra[key], str):
                extra[key] = _rewrite_address(extra[key], ports)
        d = {"conn_type": c["conn_type"]}
        if c.get("conn_host"):
            d["host"], port = _local_hostport(c["conn_host"], c.get("conn_port"), ports)
            if port:
                d["port"] = port
        for src, dst in (("conn_login", "login"), ("conn_password", "password"), ("conn_schema", "schema")):
            if c.get(src) not in (None, ""):
                d[dst] = c[src]
        if c["conn_id"] == BACKUP_CONN:
            _localize_backup(d, extra, ports)
        if extra:
            d["extra"] = extra
        out[c["conn_id"]] = tls_connection(c["conn_id"], d) if tls else d
    return out


# extras of platform_backup that only the compose stack has (its pgBackRest TLS server and the worker's
# scratch directory for the restore drill): locally pgBackRest runs on the cluster's host itself
COMPOSE_ONLY_BACKUP_EXTRAS = ("pg1_host", "pg1_host_port", "scratch_root")


def _localize_backup(d: dict, extra: dict, ports: dict[str, int]) -> None:
    """platform_backup on this machine: TLS moto (service backup-s3), local CA, paths, cipher passphrases."""
    for key in COMPOSE_ONLY_BACKUP_EXTRAS:
        extra.pop(key, None)
    # pgBackRest 2.45 matches only DNS names of the certificate, so the endpoint is localhost, not an IP
    extra["endpoint_url"] = f"https://localhost:{ports['BACKUP_S3_PORT']}"
    p = backup_paths()
    extra.update({"ca_file": str(p["ca_file"]), "config": str(p["config"]), "pg1_path": str(p["pg1_path"]),
                  "pg1_port": ports["PG_PORT"], "pg1_socket_path": str(p["pg1_socket_path"]),
                  "os_user": "postgres"})
    for repo in BACKUP_REPOS:
        extra[f"repo{repo}_cipher_pass"] = backup_cipher_pass(repo)


# Connections that hold only keys. They are not in airflow_settings.yaml (nothing secret is in the
# repository): production reads them from the secrets backend; locally each is generated once into
# the git-ignored .local/secrets/ (mode 600) and exported from .local/env.sh.
SECRET_CONNECTIONS = {
    # column encryption keyring (AES-256-GCM, key ids for rotation): include/security
    "platform_encryption": lambda: _run_json([sys.executable, "-m", "include.security", "new-keyring"]),
    # chain-wide HMAC-SHA256 key of hashed item ids: include/privacy/hashing.py
    "platform_privacy_hmac": lambda: {"conn_type": "generic", "password": secrets.token_hex(32)},
    # the platform API's database login (NOINHERIT, only SET ROLE app_<role>): include/access/dbroles.py
    "platform_api_postgres": lambda: {"conn_type": "postgres", "host": "127.0.0.1", "port": read_ports()["PG_PORT"],
                                      "login": "platform_api", "password": secrets.token_urlsafe(32),
                                      "schema": "platform"},
}


def _run_json(cmd: list[str]) -> dict:
    import subprocess

    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    return json.loads(out)


def local_secret_connections() -> dict[str, dict]:
    """conn_id -> connection dict of the local key connections, generated on first use."""
    return {conn_id: json.loads(secret_file(f"{conn_id}.json", lambda make=make: json.dumps(make())).read_text())
            for conn_id, make in SECRET_CONNECTIONS.items()}


# Airflow's own keys (issue 12 item 4): read through Airflow's documented ``_CMD`` variants of its sensitive
# options, so neither airflow.cfg nor the environment holds them: the api-server's JWT signing key, the
# Fernet key of the metadata DB's encrypted fields, the session secret of the UI. Locally each is a file
# in .local/secrets/ (mode 600); docker-compose reads the same options from its secrets (docs/compose.md).
AIRFLOW_KEYS = {  # option of the env name -> (airflow.cfg section, key, generator)
    "API_AUTH__JWT_SECRET": ("api_auth", "jwt_secret", lambda: secrets.token_urlsafe(48)),
    "CORE__FERNET_KEY": ("core", "fernet_key", lambda: base64.urlsafe_b64encode(os.urandom(32)).decode()),
    "API__SECRET_KEY": ("api", "secret_key", lambda: secrets.token_urlsafe(32)),
}


def airflow_cfg() -> Path:
    """airflow.cfg of this stack: $AIRFLOW_HOME's (compose, a sourced env.sh) or the local default."""
    return Path(os.environ.get("AIRFLOW_HOME") or STATE / "airflow") / "airflow.cfg"


def airflow_key_files() -> dict[str, Path]:
    """option -> file of each Airflow key, made on first use. A key airflow.cfg already holds is adopted
    (a new Fernet key would make the encrypted variables unreadable, a new JWT key log every user out);
    ``cmd_airflow`` then blanks it in airflow.cfg."""
    import configparser

    cfg = configparser.ConfigParser(interpolation=None, strict=False)
    if airflow_cfg().exists():
        cfg.read(airflow_cfg())

    def adopt_or_make(section: str, key: str, make) -> str:  # no newline: Airflow takes a _CMD's output as it is
        return cfg.get(section, key, fallback="").strip() or make()

    return {option: secret_file(f"airflow_{key}", lambda s=section, k=key, m=make: adopt_or_make(s, k, m))
            for option, (section, key, make) in AIRFLOW_KEYS.items()}


def blank_airflow_cfg_keys() -> list[str]:
    """Empty the AIRFLOW_KEYS values Airflow wrote into airflow.cfg when it created it (they are read from
    .local/secrets through ``_CMD``); returns the ``section.key`` names it blanked."""
    f = airflow_cfg()
    if not f.exists():
        return []
    wanted = {(section, key) for section, key, _ in AIRFLOW_KEYS.values()}
    section, out, blanked = "", [], []
    for line in f.read_text().splitlines(keepends=True):
        m = re.match(r"\[(\w+)\]\s*$", line)
        if m:
            section = m.group(1)
        m = re.match(r"(\w+)\s*=\s*(\S.*)?$", line)
        if m and (section, m.group(1)) in wanted and m.group(2):
            line = f"{m.group(1)} =\n"
            blanked.append(f"{section}.{m.group(1)}")
        out.append(line)
    if blanked:
        tmp = f.with_suffix(".tmp")
        tmp.write_text("".join(out))
        os.chmod(tmp, f.stat().st_mode & 0o777)
        os.replace(tmp, f)
    return blanked


def cmd_env() -> None:
    ports = read_ports()
    state = STATE
    tls = tls_mode()
    lines = ["# generated by scripts/settings.py from airflow_settings.yaml: do not edit",
             f"export PLATFORM_ROOT={shlex.quote(str(ROOT))}"]
    if state != ROOT / ".local" or PORTS_FILE != ROOT / "scripts" / "ports.env":
        lines += [f"export PLATFORM_STATE_DIR={shlex.quote(str(state))}",
                  f"export PLATFORM_PORTS_FILE={shlex.quote(str(PORTS_FILE))}"]
    for conn_id, d in local_connections(ports=ports, tls=tls).items():
        lines.append(f"export AIRFLOW_CONN_{conn_id.upper()}={shlex.quote(json.dumps(d, sort_keys=True))}")
    for conn_id, d in local_secret_connections().items():
        d = tls_connection(conn_id, d) if tls else d
        lines.append(f"export AIRFLOW_CONN_{conn_id.upper()}={shlex.quote(json.dumps(d, sort_keys=True))}")
    for v in load_settings().get("variables", []):
        lines.append(f"export AIRFLOW_VAR_{v['variable_name'].upper()}={shlex.quote(str(v['variable_value']))}")
    for option, f in airflow_key_files().items():
        lines.append(f"export AIRFLOW__{option}_CMD=" + shlex.quote("cat " + shlex.quote(str(f))))
    airflow_home = state / "airflow"
    api = f"http://127.0.0.1:{ports['AIRFLOW_API_PORT']}"
    es_host = f"http://127.0.0.1:{ports['ES_PORT']}"
    meta_db = f"postgresql+psycopg://airflow:airflow@127.0.0.1:{ports['PG_PORT']}/airflow"
    if tls:
        t = tls_paths()
        api = f"https://127.0.0.1:{ports['AIRFLOW_API_PORT']}"
        es_host = f"https://127.0.0.1:{ports['ES_PORT']}"  # no credentials: the UI shows it as the log source
        meta_db += f"?sslmode=verify-full&sslrootcert={t['ca']}"
        lines += [
            "export PLATFORM_TLS_MODE=on",
            f"export PLATFORM_CA_FILE={shlex.quote(str(t['ca']))}",
            # OPENSSL_CONF of the api-server's process only (TLS 1.3 minimum, see the file): ./dev ui and
            # tests/tlsmode.py set it; it is not exported for every process, so a test's TLS 1.2 client
            # still tests the servers
            f"export PLATFORM_API_OPENSSL_CONF={shlex.quote(str(ROOT / 'scripts' / 'openssl-tls13.cnf'))}",
            # the api-server serves https with the project certificate; the Task SDK's client trusts the CA
            f"export AIRFLOW__API__SSL_CERT={shlex.quote(str(t['cert']))}",
            f"export AIRFLOW__API__SSL_KEY={shlex.quote(str(t['key']))}",
            f"export AIRFLOW__API__SSL_CA_FILE={shlex.quote(str(t['ca']))}",
            # task logs in Elasticsearch: the handler's client verifies the CA too
            f"export AIRFLOW__ELASTICSEARCH_CONFIGS__CA_CERTS={shlex.quote(str(t['ca']))}",
            # the file-realm user, as elasticsearch-py's basic_auth string form (base64 of user:password)
            "export AIRFLOW__ELASTICSEARCH_CONFIGS__BASIC_AUTH="
            + base64.b64encode(f"{ES_TLS_USER}:{es_tls_password()}".encode()).decode(),
            "export AIRFLOW__ELASTICSEARCH_CONFIGS__VERIFY_CERTS=True",
        ]
    else:
        lines.append("export PLATFORM_TLS_MODE=off")
    lines += [
        f"export AIRFLOW_HOME={shlex.quote(str(airflow_home))}",
        f"export AIRFLOW__CORE__DAGS_FOLDER={shlex.quote(str(ROOT / 'dags'))}",
        f"export AIRFLOW__CORE__PLUGINS_FOLDER={shlex.quote(str(ROOT / 'plugins'))}",
        "export AIRFLOW__CORE__LOAD_EXAMPLES=False",
        "export AIRFLOW__CORE__PARALLELISM=4",
        "export AIRFLOW__CORE__EXECUTOR=LocalExecutor",
        # custom roles (store_manager, regional_coordinator, admin) need FAB, as in docker-compose (docs/access.md)
        "export AIRFLOW__CORE__AUTH_MANAGER=airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager",
        "export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=" + shlex.quote(meta_db),
        f"export AIRFLOW__API__PORT={ports['AIRFLOW_API_PORT']}",
        f"export AIRFLOW__API__BASE_URL={api}",
        f"export AIRFLOW__CORE__EXECUTION_API_SERVER_URL={api}/execution/",
        "export SPARK_LOCAL_IP=127.0.0.1",
        # task logs are written to Elasticsearch and read back from it by the UI (docs/search.md)
        "export AIRFLOW__LOGGING__REMOTE_LOGGING=True",
        "export AIRFLOW__ELASTICSEARCH__HOST=" + shlex.quote(es_host),
        "export AIRFLOW__ELASTICSEARCH__WRITE_TO_ES=True",
        "export AIRFLOW__ELASTICSEARCH__JSON_FORMAT=True",
        "export AIRFLOW__ELASTICSEARCH__WRITE_STDOUT=False",
        "export AIRFLOW__ELASTICSEARCH__TARGET_INDEX=airflow-logs",
        "export AIRFLOW__ELASTICSEARCH__INDEX_PATTERNS='airflow-logs*'",
        "export AIRFLOW__ELASTICSEARCH__ES_COMPAT_WITH=8",
        f"export MPLCONFIGDIR={shlex.quote(str(state / 'mpl'))}",
        # `include` is imported by DAGs, tests and commands from the repository root
        f"export PYTHONPATH={shlex.quote(str(ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}",
    ]
    print("\n".join(lines))


def cmd_buckets() -> None:
    import boto3
    from botocore.exceptions import ClientError

    conns = local_connections()
    c = conns["platform_s3"]
    s3 = boto3.client("s3", endpoint_url=c["extra"]["endpoint_url"], region_name=c["extra"]["region_name"],
                      aws_access_key_id=c["login"], aws_secret_access_key=c["password"],
                      verify=c["extra"].get("verify"))
    for v in load_settings().get("variables", []):
        if v["variable_name"].endswith("_bucket"):
            try:
                s3.create_bucket(Bucket=v["variable_value"])
                print(f"bucket {v['variable_value']} ready", file=sys.stderr)
            except ClientError as e:
                if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise


def cmd_backup_buckets() -> None:
    import boto3
    from botocore.exceptions import ClientError

    c = local_connections()[BACKUP_CONN]
    x = c["extra"]
    for repo in BACKUP_REPOS:
        region = x[f"repo{repo}_region"]
        s3 = boto3.client("s3", endpoint_url=x["endpoint_url"], region_name=region, verify=x["ca_file"],
                          aws_access_key_id=c["login"], aws_secret_access_key=c["password"])
        kw = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        try:
            s3.create_bucket(Bucket=x[f"repo{repo}_bucket"], **kw)
        except ClientError as e:
            if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        print(f"backup bucket {x[f'repo{repo}_bucket']} ({region}) ready", file=sys.stderr)


def _repo_lines(x: dict, s3_key: str, s3_key_secret: str, cipher_pass: dict[int, str]) -> list[str]:
    """The repoN-* options of both repositories (S3 API over TLS, certificate verified against ``ca_file``,
    path-style URIs, AES-256): the same for the local stack and for every host of the compose stack."""
    host, _, port = x["endpoint_url"].split("://", 1)[1].partition(":")
    lines = []
    for repo in BACKUP_REPOS:
        r = f"repo{repo}"
        lines += [f"{r}-type=s3", f"{r}-path=/pgbackrest", f"{r}-s3-bucket={x[f'{r}_bucket']}",
                  f"{r}-s3-endpoint={host}", f"{r}-storage-port={port or 443}", f"{r}-s3-region={x[f'{r}_region']}",
                  f"{r}-s3-uri-style=path", f"{r}-s3-key={s3_key}", f"{r}-s3-key-secret={s3_key_secret}",
                  f"{r}-storage-verify-tls=y", f"{r}-storage-ca-file={x['ca_file']}", f"{r}-cipher-type=aes-256-cbc",
                  f"{r}-cipher-pass={cipher_pass[repo]}",
                  f"{r}-retention-full-type=count", f"{r}-retention-full={x[f'{r}_retention_full']}"]
    return lines


def render_pgbackrest_conf(conn: dict) -> str:
    """pgbackrest.conf of the local cluster from connection platform_backup (local form)."""
    x = conn["extra"]
    pdir = Path(x["config"]).parent
    lines = ["# generated by scripts/settings.py pgbackrest-conf (services.sh): do not edit, holds secrets",
             "[global]", f"log-path={pdir / 'log'}", f"lock-path={pdir / 'lock'}", f"spool-path={pdir / 'spool'}",
             "log-level-console=warn", "log-level-file=info", "start-fast=y", "compress-type=zst",
             "process-max=2", "io-timeout=30",
             # a down repository must never fill pg_wal: past 1 GiB queued WAL is dropped (PITR gap, logged)
             "archive-async=y", "archive-push-queue-max=1GiB"]
    lines += _repo_lines(x, conn["login"], conn["password"],
                         {repo: x[f"repo{repo}_cipher_pass"] for repo in BACKUP_REPOS})
    lines += ["", "[global:archive-push]", "archive-timeout=30", "",
              f"[{x['stanza']}]", f"pg1-path={x['pg1_path']}", f"pg1-port={x['pg1_port']}",
              f"pg1-socket-path={x['pg1_socket_path']}", "pg1-user=postgres", ""]
    return "\n".join(lines)


# docker-compose (scripts/compose/backup_init.py): the pgBackRest TLS server's client certificate CN, which
# its tls-server-auth authorizes for the stanza
COMPOSE_TLS_CLIENT_CN = "pgbackrest-client"


def compose_tls_paths(conn: dict) -> dict[str, str]:
    """Certificate files next to the compose pgbackrest.conf (``<config dir>/tls/``): the CA (== extra
    ``ca_file``), the TLS server's pair (postgres image) and the workers' client pair."""
    tls = Path(conn["extra"]["config"]).parent / "tls"
    return {"ca": conn["extra"]["ca_file"], "server_cert": str(tls / "server.crt"),
            "server_key": str(tls / "server.key"), "client_cert": str(tls / "client.crt"),
            "client_key": str(tls / "client.key")}


def render_compose_pgbackrest_conf(conn: dict, role: str, *, s3_key: str, s3_key_secret: str,
                                   cipher_pass: dict[int, str]) -> str:
    """pgbackrest.conf of the compose stack from connection platform_backup as written (compose addressing).

    ``role="server"``: the postgres image (the server's ``archive_command`` and the ``pgbackrest server``
    sidecar that shares its data directory and socket); ``role="client"``: the Airflow workers, which run
    backup/check/info/expire against the database through that TLS server (``pg1-host-type=tls``, client
    certificate) and restore the drill's scratch copies locally. The repositories are the same on both
    sides: the server pushes WAL straight into them, the workers write the backups."""
    if role not in ("server", "client"):
        raise ValueError(f"role must be 'server' or 'client', got {role!r}")
    x = conn["extra"]
    tls = compose_tls_paths(conn)
    lines = [f"# generated by scripts/compose/backup_init.py ({role}) from connection {BACKUP_CONN}: "
             "do not edit, holds secrets",
             "[global]", "log-path=/var/log/pgbackrest", "lock-path=/tmp/pgbackrest",
             "spool-path=/var/spool/pgbackrest", "log-level-console=warn", "log-level-file=info",
             "compress-type=zst", "process-max=2", "io-timeout=30"]
    if role == "server":
        # a down repository must never fill pg_wal: past 1 GiB queued WAL is dropped (PITR gap, logged)
        lines += ["archive-async=y", "archive-push-queue-max=1GiB"]
    else:
        lines += ["start-fast=y"]
    lines += _repo_lines(x, s3_key, s3_key_secret, cipher_pass)
    if role == "server":
        lines += ["tls-server-address=*", f"tls-server-port={x['pg1_host_port']}",
                  f"tls-server-ca-file={tls['ca']}", f"tls-server-cert-file={tls['server_cert']}",
                  f"tls-server-key-file={tls['server_key']}",
                  f"tls-server-auth={COMPOSE_TLS_CLIENT_CN}={x['stanza']}",
                  "", "[global:archive-push]", "archive-timeout=30"]
    lines += ["", f"[{x['stanza']}]"]
    if role == "client":
        lines += [f"pg1-host={x['pg1_host']}", "pg1-host-type=tls", f"pg1-host-port={x['pg1_host_port']}",
                  f"pg1-host-ca-file={tls['ca']}", f"pg1-host-cert-file={tls['client_cert']}",
                  f"pg1-host-key-file={tls['client_key']}"]
    lines += [f"pg1-path={x['pg1_path']}", f"pg1-port={x['pg1_port']}", f"pg1-socket-path={x['pg1_socket_path']}",
              "pg1-user=postgres", ""]
    return "\n".join(lines)


def cmd_pgbackrest_conf() -> None:
    sys.stdout.write(render_pgbackrest_conf(local_connections()[BACKUP_CONN]))


def compose_connections(settings: dict | None = None) -> dict[str, dict]:
    """conn_id -> connection JSON dict as airflow_settings.yaml writes it (compose addressing)."""
    settings = settings or load_settings()
    out = {}
    for c in settings.get("connections", []):
        d = {"conn_type": c["conn_type"]}
        for src, dst in (("conn_host", "host"), ("conn_port", "port"), ("conn_login", "login"),
                         ("conn_password", "password"), ("conn_schema", "schema")):
            if c.get(src) not in (None, ""):
                d[dst] = c[src]
        if c.get("conn_extra"):
            d["extra"] = dict(c["conn_extra"])
        out[c["conn_id"]] = d
    return out


def cmd_airflow(with_connections: bool = False) -> None:
    """Import pools and variables (and connections) into Airflow's metadata DB, as `astro dev start` does."""
    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session

    blanked = blank_airflow_cfg_keys()
    if blanked:
        print(f"airflow.cfg: {', '.join(blanked)} blanked (read from .local/secrets through _CMD)", file=sys.stderr)
    s = load_settings()
    if with_connections:
        with create_session() as session:
            for conn_id, d in compose_connections(s).items():
                session.query(Connection).filter(Connection.conn_id == conn_id).delete()
                session.add(Connection.from_json(json.dumps(d), conn_id=conn_id))
    for p in s.get("pools", []):
        Pool.create_or_update_pool(p["pool_name"], p["pool_slot"], p.get("pool_description", ""),
                                   include_deferred=False)
    for v in s.get("variables", []):
        if f"AIRFLOW_VAR_{v['variable_name'].upper()}" in os.environ:
            continue  # the local stack exports it (.local/env.sh), which takes precedence anyway
        Variable.set(v["variable_name"], v["variable_value"])
    print(f"imported {len(s.get('pools', []))} pools and {len(s.get('variables', []))} variables",
          file=sys.stderr)


if __name__ == "__main__":
    cmds = {"env": cmd_env, "buckets": cmd_buckets, "airflow": cmd_airflow,
            "backup-buckets": cmd_backup_buckets, "pgbackrest-conf": cmd_pgbackrest_conf}
    args = sys.argv[1:]
    if not args or args[0] not in cmds or args[1:] not in ([], ["--connections"]) \
            or (args[1:] and args[0] != "airflow"):
        sys.exit(f"usage: {sys.argv[0]} env|buckets|backup-buckets|pgbackrest-conf|airflow [--connections]")
    os.chdir(ROOT)
    if args[0] == "airflow":
        cmd_airflow(with_connections=bool(args[1:]))
    else:
        cmds[args[0]]()
