"""docker-compose.yml checked statically (no Docker engine on these machines) against
airflow_settings.yaml, and the local settings loader checked against both. The scripts of the compose stack's
one-shot services (backup-init, tls-init, secrets-init, scripts/compose/secrets.sh, the Airflow image's entrypoint)
are executed on the host in temporary directories, and the TLS settings of Redis, PostgreSQL and the api-server
are run with the real servers of this machine (docs/compose.md, "What is verified where")."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SETTINGS = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())["airflow"]
SERVICES = COMPOSE["services"]
ONE_SHOT = {name for name, s in SERVICES.items() if s.get("restart") == "no"}

spec = importlib.util.spec_from_file_location("settings_loader", ROOT / "scripts" / "settings.py")
settings_loader = importlib.util.module_from_spec(spec)
spec.loader.exec_module(settings_loader)


def _container_ports(service: dict) -> set[int]:
    ports = set()
    for p in service.get("ports", []):
        ports.add(int(str(p).split(":")[-1].split("/")[0]))
    for p in service.get("expose", []):
        ports.add(int(p))
    return ports


def _addresses():
    """(conn_id, host, port) of every address a connection names, host part included in extras."""
    for c in SETTINGS["connections"]:
        if c.get("conn_host"):
            yield c["conn_id"], c["conn_host"], c.get("conn_port")
        for key in ("endpoint_url", "bootstrap.servers"):
            v = (c.get("conn_extra") or {}).get(key)
            if v:
                m = re.match(r"^(?:\w+://)?([\w.-]+):(\d+)", v)
                yield c["conn_id"], m.group(1), int(m.group(2))


@pytest.mark.parametrize(("conn_id", "host", "port"), list(_addresses()))
def test_every_connection_names_a_compose_service_and_its_port(conn_id, host, port):
    assert host in SERVICES, f"{conn_id}: host {host!r} is not a compose service"
    assert port in _container_ports(SERVICES[host]), f"{conn_id}: {host} does not publish/expose {port}"


def test_postgres_credentials_agree_with_the_connection():
    pg = next(c for c in SETTINGS["connections"] if c["conn_id"] == "platform_postgres")
    init_sql = (ROOT / "scripts" / "compose" / "init-db.sql").read_text()
    assert f"CREATE ROLE {pg['conn_login']} LOGIN" in init_sql
    assert f"PASSWORD '{pg['conn_password']}'" in init_sql
    assert f"CREATE DATABASE {pg['conn_schema']} OWNER {pg['conn_login']}" in init_sql
    mounted = [v for v in SERVICES["postgres"]["volumes"] if "init-db.sql" in v]
    assert mounted and mounted[0].startswith("./scripts/compose/init-db.sql:/docker-entrypoint-initdb.d/")
    airflow_url = COMPOSE["x-airflow-common"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert airflow_url.split("?")[0] == "postgresql+psycopg://airflow:airflow@postgres:5432/airflow"
    assert "CREATE ROLE airflow LOGIN PASSWORD 'airflow'" in init_sql


def test_minio_credentials_and_bucket_agree_with_the_settings():
    s3 = next(c for c in SETTINGS["connections"] if c["conn_id"] == "platform_s3")
    env = SERVICES["minio"]["environment"]
    assert (env["MINIO_ROOT_USER"], env["MINIO_ROOT_PASSWORD"]) == (s3["conn_login"], s3["conn_password"])
    bucket = next(v["variable_value"] for v in SETTINGS["variables"] if v["variable_name"] == "platform_bucket")
    assert f"local/{bucket}" in SERVICES["minio-init"]["entrypoint"]


def test_images_are_pinned_and_long_running_services_have_healthchecks():
    for name, s in SERVICES.items():
        image = s.get("image") or COMPOSE["x-airflow-common"]["image"]
        tag = image.rsplit(":", 1)[-1] if ":" in image.split("/")[-1] else ""
        assert tag and tag != "latest", f"{name}: image {image!r} is not pinned"
        if name not in ONE_SHOT:
            assert "healthcheck" in s, f"{name}: no healthcheck"
            assert s["healthcheck"]["test"], f"{name}: empty healthcheck"


def test_stack_has_every_component_the_platform_needs():
    expected = {"postgres", "redis", "elasticsearch", "minio", "kafka", "spark-master", "spark-worker",
                "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                "airflow-worker"}
    assert expected <= set(SERVICES)
    assert _dockerfile_arg(ROOT / "docker" / "postgres" / "Dockerfile", "TIMESCALEDB_IMAGE").startswith(
        "timescale/timescaledb:")
    assert COMPOSE["x-airflow-common"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert COMPOSE["x-airflow-common"]["environment"]["AIRFLOW__CELERY__BROKER_URL"].startswith("rediss://redis:6379")
    mounts = {v.split(":")[0] for v in COMPOSE["x-airflow-common"]["volumes"]}
    assert {"./dags", "./plugins", "./include"} <= mounts
    named = set(COMPOSE["volumes"])
    for name, s in SERVICES.items():
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if not src.startswith("."):
                assert src in named, f"{name}: volume {src} is not a declared named volume"


def test_local_loader_maps_every_service_to_its_loopback_port():
    ports = settings_loader.read_ports()
    local = settings_loader.local_connections(tls=False)  # the TLS form: tests/foundation/test_tls.py
    assert local["platform_postgres"]["host"] == "127.0.0.1"
    assert local["platform_postgres"]["port"] == ports["PG_PORT"]
    assert local["platform_s3"]["extra"]["endpoint_url"] == f"http://127.0.0.1:{ports['S3_PORT']}"
    assert local["platform_kafka"]["extra"]["bootstrap.servers"] == f"127.0.0.1:{ports['KAFKA_PORT']}"
    assert local["platform_es"]["port"] == ports["ES_PORT"]
    assert local["platform_redis"]["port"] == ports["REDIS_PORT"]
    # credentials are carried over unchanged
    compose = settings_loader.compose_connections()
    for conn_id, d in compose.items():
        assert local[conn_id].get("login") == d.get("login")
        assert local[conn_id].get("password") == d.get("password")
    assert set(compose) == set(local)
    # backups: locally pgBackRest runs on the cluster's host (no TLS server, no compose paths)
    b = local["platform_backup"]["extra"]
    assert b["endpoint_url"] == f"https://localhost:{ports['BACKUP_S3_PORT']}"
    assert not set(settings_loader.COMPOSE_ONLY_BACKUP_EXTRAS) & set(b)
    assert b["pg1_port"] == ports["PG_PORT"] and b["os_user"] == "postgres"


# ------------------------------------------------------------------------------------------------------------
# Backups in compose (issue 10, docs/retain.md "docker-compose"): pgBackRest in the postgres image, its TLS
# server sidecar, the TLS S3 service of the repositories, the secrets, and the workers as repository hosts.
import configparser  # noqa: E402
import os  # noqa: E402
import datetime as dt  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402

PG_DOCKERFILE = ROOT / "docker" / "postgres" / "Dockerfile"
PG_ENTRYPOINT = ROOT / "docker" / "postgres" / "entrypoint.sh"
AIRFLOW_DOCKERFILE = ROOT / "Dockerfile"
BACKUP = next(c for c in SETTINGS["connections"] if c["conn_id"] == "platform_backup")
BX = BACKUP["conn_extra"]
WORKERS = ("airflow-worker",)  # the services that run the backup DAGs' tasks

bi_spec = importlib.util.spec_from_file_location("backup_init", ROOT / "scripts" / "compose" / "backup_init.py")
backup_init = importlib.util.module_from_spec(bi_spec)
bi_spec.loader.exec_module(backup_init)
si_spec = importlib.util.spec_from_file_location("secrets_init", ROOT / "scripts" / "compose" / "secrets_init.py")
secrets_init = importlib.util.module_from_spec(si_spec)
si_spec.loader.exec_module(secrets_init)


def _dockerfile_args(path: Path, name: str) -> list[str]:
    """Every default of ``ARG name=...`` in a Dockerfile (one per stage that declares it)."""
    return re.findall(rf"^ARG {name}=(\S+)\s*$", path.read_text(), flags=re.M)


def _dockerfile_arg(path: Path, name: str) -> str:
    values = set(_dockerfile_args(path, name))
    assert len(values) == 1, f"{path.name}: ARG {name} has {len(values)} different defaults: {values}"
    return values.pop()


def _mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """container path -> (source, read_only) of a service's volumes (short syntax)."""
    out = {}
    for v in service.get("volumes", []):
        parts = v.split(":")
        out[parts[1]] = (parts[0], len(parts) > 2 and "ro" in parts[2].split(","))
    return out


def _pg_settings(service: dict) -> dict[str, str]:
    cmd = service["command"]
    cmd = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    assert cmd[0] == "postgres"
    return dict(cmd[i + 1].split("=", 1) for i, a in enumerate(cmd) if a == "-c")


def _secret_names(service: dict) -> set[str]:
    return {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}


def _depends(service: dict) -> dict[str, str]:
    d = service.get("depends_on") or {}
    return {k: "service_started" for k in d} if isinstance(d, list) else {k: v["condition"] for k, v in d.items()}


def test_postgres_image_is_built_from_docker_postgres_on_the_timescaledb_image():
    for name in ("postgres", "pgbackrest-server"):
        s = SERVICES[name]
        assert s["build"]["context"] == "docker/postgres", f"{name} is not built from docker/postgres/"
        assert s["image"] == SERVICES["postgres"]["image"], f"{name} must run the very image of postgres"
    text = PG_DOCKERFILE.read_text()
    base = _dockerfile_arg(PG_DOCKERFILE, "TIMESCALEDB_IMAGE")
    assert re.fullmatch(r"timescale/timescaledb:\d+\.\d+\.\d+-pg\d+", base), base
    froms = re.findall(r"^FROM (\S+)", text, flags=re.M)
    assert froms and all(f.startswith("${TIMESCALEDB_IMAGE}") for f in froms), froms
    assert 'ENTRYPOINT ["platform-entrypoint.sh"]' in text and "COPY --chmod=0755 entrypoint.sh" in text
    subprocess.run(["sh", "-n", str(PG_ENTRYPOINT)], check=True)
    # what the entrypoint installs is what backup-init renders, where the connection says it is
    ep = PG_ENTRYPOINT.read_text()
    assert f"CONF={BX['config']}" in ep
    src = re.search(r"^SRC=(\S+)", ep, flags=re.M).group(1)
    for name in ("postgres", "pgbackrest-server"):
        assert _mounts(SERVICES[name]).get(src) == ("pgbackrest-server-conf", True), f"{name}: {src} not mounted ro"
    assert _mounts(SERVICES["backup-init"])["/out/pgbackrest-server"][0] == "pgbackrest-server-conf"


def test_pgbackrest_is_pinned_to_one_version_in_both_images():
    """pgBackRest refuses a remote of another version: the workers' (Dockerfile) and the database's
    (docker/postgres/Dockerfile) must be built from the same release, verified by the same checksum."""
    v_pg, v_af = (_dockerfile_arg(f, "PGBACKREST_VERSION") for f in (PG_DOCKERFILE, AIRFLOW_DOCKERFILE))
    sha_pg, sha_af = (_dockerfile_arg(f, "PGBACKREST_SHA256") for f in (PG_DOCKERFILE, AIRFLOW_DOCKERFILE))
    assert v_pg == v_af, f"pgBackRest {v_pg} in the postgres image but {v_af} in the Airflow image"
    assert sha_pg == sha_af and re.fullmatch(r"[0-9a-f]{64}", sha_pg)
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", v_pg)
    for f in (PG_DOCKERFILE, AIRFLOW_DOCKERFILE):
        text = f.read_text()
        assert 'sha256sum -c -' in text, f"{f.name}: the pgBackRest tarball is not verified"
        assert "releases/download/release/${PGBACKREST_VERSION}/pgbackrest-${PGBACKREST_VERSION}.tar.gz" in text
        assert 'pgbackrest version | grep -qx "pgBackRest ${PGBACKREST_VERSION}"' in text, \
            f"{f.name}: the installed binary's version is not checked"
        code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
        assert not re.search(r"(apt-get|apk) (install|add)[^\n]*\bpgbackrest\b", code), \
            f"{f.name}: a packaged pgBackRest would not match the other image's"
    assert SERVICES["postgres"]["image"].endswith(f"pgbackrest{v_pg}")


def test_worker_image_can_start_a_restored_copy_of_the_compose_database():
    """The restore drill starts the restored cluster on the worker (include/retain/drill.py: pg_ctl of
    /usr/lib/postgresql/<major>), and its postgresql.conf preloads timescaledb of the database's version."""
    m = re.fullmatch(r"timescale/timescaledb:(\d+\.\d+\.\d+)-pg(\d+)", _dockerfile_arg(PG_DOCKERFILE, "TIMESCALEDB_IMAGE"))
    ts_version, pg_major = m.groups()
    assert _dockerfile_arg(AIRFLOW_DOCKERFILE, "PG_MAJOR") == pg_major
    assert _dockerfile_arg(AIRFLOW_DOCKERFILE, "TIMESCALEDB_VERSION") == ts_version
    text = AIRFLOW_DOCKERFILE.read_text()
    assert '"postgresql-${PG_MAJOR}"' in text
    assert '"timescaledb-2-postgresql-${PG_MAJOR}=${TIMESCALEDB_VERSION}' in text
    assert "create_main_cluster = false" in text
    assert f"{pg_major}-ts{ts_version}" in SERVICES["postgres"]["image"]


def test_archive_command_uses_pgbackrest_with_the_stanza_of_the_connection():
    pg = _pg_settings(SERVICES["postgres"])
    assert pg["wal_level"] in ("replica", "logical") and pg["archive_mode"] == "on"
    cmd = shlex.split(pg["archive_command"])
    assert cmd[0] == "pgbackrest" and cmd[-2:] == ["archive-push", "%p"]
    assert f"--stanza={BX['stanza']}" in cmd and f"--config={BX['config']}" in cmd
    assert 0 < int(pg["archive_timeout"]) <= 600
    # the one-shot stanza-create (and check) uses the same stanza and the workers' configuration
    st = SERVICES["pgbackrest-stanza"]
    script = st["command"][-1] if isinstance(st["command"], list) else st["command"]
    assert f"--stanza={BX['stanza']} stanza-create" in script and f"--stanza={BX['stanza']} check" in script
    assert f"--config={BX['config']}" in script
    assert _mounts(st)[str(Path(BX["config"]).parent)] == ("pgbackrest-client-conf", True)
    assert "--config=/etc/pgbackrest/pgbackrest.conf" in " ".join(SERVICES["pgbackrest-server"]["command"])


def test_backup_connection_names_the_services_volumes_and_paths_of_the_stack():
    s3 = SERVICES[re.match(r"https://([\w.-]+):(\d+)$", BX["endpoint_url"]).group(1)]
    assert BX["endpoint_url"].startswith("https://"), "pgBackRest's S3 driver speaks HTTPS only"
    assert s3["image"].startswith("minio/minio:") and "--certs-dir" in s3["command"]
    certs = s3["command"][s3["command"].index("--certs-dir") + 1]
    assert _mounts(s3)[certs] == ("backup-s3-certs", True)
    assert _mounts(SERVICES["backup-init"])["/out/backup-s3"][0] == "backup-s3-certs"
    # the repository buckets are created over TLS on that endpoint, with the stack's CA
    init = SERVICES["backup-s3-init"]["entrypoint"]
    assert f"mc alias set backup {BX['endpoint_url']} " in init
    for repo in (1, 2):
        assert f"backup/{BX[f'repo{repo}_bucket']}" in init
    assert BX["repo1_bucket"] != BX["repo2_bucket"]
    assert "--insecure" not in init and "--insecure" not in str(s3["healthcheck"])
    # the pgBackRest TLS server shares the database's data directory and socket
    tls = SERVICES[BX["pg1_host"]]
    assert int(BX["pg1_host_port"]) in _container_ports(tls)
    assert "server" in tls["command"]
    for name in ("postgres", BX["pg1_host"]):
        m = _mounts(SERVICES[name])
        assert m[BX["pg1_path"]][0] == "postgres-data" and m[BX["pg1_socket_path"]][0] == "postgres-socket"
    assert int(BX["pg1_port"]) == 5432
    # workers: the client configuration read-only where the connection says, the drill's scratch volume
    for w in WORKERS:
        m = _mounts(SERVICES[w])
        assert m[str(Path(BX["config"]).parent)] == ("pgbackrest-client-conf", True)
        assert Path(BX["ca_file"]).parent.parent == Path(BX["config"]).parent
        assert m[BX["scratch_root"]][0] == "restore-drill"
        # the worker's own list replaces the common one: it must keep every common mount
        assert set(COMPOSE["x-airflow-common"]["volumes"]) <= set(SERVICES[w]["volumes"])
    assert _mounts(SERVICES["backup-init"])["/out/pgbackrest-client"][0] == "pgbackrest-client-conf"
    assert "os_user" not in BX, "compose workers run pgBackRest as their own user (airflow), not via runuser"


def test_dependencies_exist_and_the_backup_chain_starts_in_order():
    for name, s in SERVICES.items():
        for dep, cond in _depends(s).items():
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
            if cond == "service_completed_successfully":
                assert dep in ONE_SHOT, f"{name} waits for {dep} to complete, but {dep} is not a one-shot"
            if cond == "service_healthy":
                assert "healthcheck" in SERVICES[dep], f"{name} waits for {dep} to be healthy: no healthcheck"
    # no cycle
    state: dict[str, int] = {}

    def visit(n, path=()):
        assert state.get(n) != 1, f"dependency cycle: {' -> '.join(path + (n,))}"
        if state.get(n) == 2:
            return
        state[n] = 1
        for d in _depends(SERVICES[n]):
            visit(d, path + (n,))
        state[n] = 2

    for n in SERVICES:
        visit(n)
    assert _depends(SERVICES["backup-init"]) == {}, "backup-init must not wait for what it configures"
    assert _depends(SERVICES["postgres"]) == {"tls-init": "service_completed_successfully",
                                               "backup-init": "service_completed_successfully",
                                               "backup-s3-init": "service_completed_successfully"}
    assert _depends(SERVICES["backup-s3"])["backup-init"] == "service_completed_successfully"
    assert _depends(SERVICES["pgbackrest-stanza"]) == {"postgres": "service_healthy",
                                                        "pgbackrest-server": "service_healthy",
                                                        "backup-s3-init": "service_completed_successfully"}
    for w in WORKERS:
        assert _depends(SERVICES[w])["pgbackrest-stanza"] == "service_completed_successfully"
    for one_shot in ("backup-init", "backup-s3-init", "pgbackrest-stanza"):
        assert one_shot in ONE_SHOT
    for svc in ("backup-s3", "pgbackrest-server", "postgres"):
        assert SERVICES[svc]["healthcheck"]["test"]
    assert SERVICES["backup-init"].get("user") == "0:0"
    assert SERVICES["backup-init"]["environment"]["CONNECTION_CHECK_MAX_COUNT"] == "0"


def test_every_secret_is_declared_git_ignored_and_never_a_literal():
    declared = COMPOSE["secrets"]
    used = set()
    for name, s in SERVICES.items():
        for sec in _secret_names(s):
            assert sec in declared, f"{name} uses undeclared secret {sec}"
            used.add(sec)
    assert used == set(declared), f"declared but unused: {set(declared) - used}"
    assert set(backup_init.SECRET_NAMES) <= _secret_names(SERVICES["backup-init"])
    assert set(secrets_init.SECRET_NAMES) <= _secret_names(SERVICES["secrets-init"])
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "/.local/" in ignored
    for sec, d in declared.items():
        assert set(d) == {"file"}, f"secret {sec}: only git-ignored files, never `environment:` values"
        assert d["file"] == f"./.local/compose-secrets/{sec}", d["file"]
    # (that scripts/compose/secrets.sh makes each of them: test_secrets_sh_makes_every_compose_secret_once)
    tracked = subprocess.run(["git", "ls-files", ".local"], cwd=ROOT, capture_output=True, text=True).stdout
    assert tracked.strip() == "", f"files under .local/ are tracked by git: {tracked.split()}"
    assert ".local" in (ROOT / ".dockerignore").read_text().split(), ".local (secrets) would go to the build context"
    # MinIO of the backups takes its root credentials from the secrets, not from literals
    env = SERVICES["backup-s3"]["environment"]
    assert "MINIO_ROOT_USER" not in env and "MINIO_ROOT_PASSWORD" not in env
    targets = {s["target"]: s["source"] for s in SERVICES["backup-s3"]["secrets"]}
    assert targets[env["MINIO_ROOT_USER_FILE"]] == "backup_s3_access_key"
    assert targets[env["MINIO_ROOT_PASSWORD_FILE"]] == "backup_s3_secret_key"
    # no literal secret anywhere in the stack beyond the documented local-dev defaults; names of files, types,
    # paths and _CMD options are references (the _CMD ones: test_airflow_reads_its_keys_through_cmd_options)
    allowed = {"minioadmin", "postgres", "airflow", "platform"}
    text = (ROOT / "docker-compose.yml").read_text() + AIRFLOW_DOCKERFILE.read_text() + PG_DOCKERFILE.read_text()
    for key, value in re.findall(r"(\w*(?:PASSWORD|SECRET|PASS|_KEY)\w*)\s*[:=]\s*['\"]?([^\s'\"]+)", text):
        if key.endswith(("_FILE", "_FILENAME", "_CREDENTIALS", "_TYPE", "_CMD")) or key in ("PGBACKREST_SHA256",):
            continue
        if value.startswith("/"):  # a path (AIRFLOW__API__SSL_KEY: /opt/airflow/tls-server/server.key)
            continue
        assert value in allowed, f"literal secret {key}={value} in the compose stack"
    assert not re.search(r"cipher-pass\s*=", text) and "cipher_pass:" not in (ROOT / "airflow_settings.yaml").read_text()
    # the keys of issue 12 are in no service's environment and in no repository file as connections
    sensitive = {f"AIRFLOW__{o}" for o in secrets_init.AIRFLOW_KEYS} | {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_SECRET", "AIRFLOW__ELASTICSEARCH_CONFIGS__BASIC_AUTH"}
    key_conns = ("platform_encryption", "platform_privacy_hmac", "platform_api_postgres")
    for name, s in SERVICES.items():
        env = s.get("environment") or {}
        assert not sensitive & set(env), f"{name}: {sensitive & set(env)} set as a value in docker-compose.yml"
        for k, v in env.items():
            if k.startswith("AIRFLOW_CONN_"):
                assert k[len("AIRFLOW_CONN_"):].lower() not in key_conns + ("platform_es",), f"{name}: {k} literal"
                assert "@" not in str(v) and "password" not in str(v), f"{name}: {k} carries credentials"
    settings_ids = {c["conn_id"] for c in SETTINGS["connections"]}
    assert not settings_ids & set(key_conns), "key connections must come from the secrets, not airflow_settings.yaml"


def _render_stack(tmp_path: Path) -> dict[str, str]:
    sec = tmp_path / "secrets"
    sec.mkdir()
    values = {n: f"{n}-value-0123456789" for n in backup_init.SECRET_NAMES}
    for n, v in values.items():
        (sec / n).write_text(v + "\n")
    backup_init.run(tmp_path / "out", tmp_path / "pki", secrets_dir=sec, airflow_uid=os.getuid())
    return values


def _ini(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None, strict=True)
    cp.optionxform = str
    cp.read_string(path.read_text())
    return cp


def test_rendered_pgbackrest_configurations_verify_tls_and_agree_with_the_connection(tmp_path):
    """What backup-init writes (the real code path, with stand-in secrets): TLS verified everywhere against
    the stack's CA, the repositories of the connection, the TLS server authorizing the workers' certificate."""
    values = _render_stack(tmp_path)
    out = tmp_path / "out"
    host, port = re.match(r"https://([\w.-]+):(\d+)$", BX["endpoint_url"]).groups()
    cfg_dir = Path(BX["config"]).parent
    confs = {role: _ini(out / f"pgbackrest-{role}" / "pgbackrest.conf") for role in ("server", "client")}
    for role, cp in confs.items():
        g = cp["global"]
        for repo in (1, 2):
            r = f"repo{repo}"
            assert g[f"{r}-type"] == "s3" and g[f"{r}-s3-endpoint"] == host and g[f"{r}-storage-port"] == port
            assert g[f"{r}-storage-verify-tls"] == "y", f"{role}: TLS verification off for {r}"
            assert g[f"{r}-storage-ca-file"] == BX["ca_file"]
            assert g[f"{r}-s3-uri-style"] == "path"
            assert g[f"{r}-s3-bucket"] == BX[f"{r}_bucket"] and g[f"{r}-s3-region"] == BX[f"{r}_region"]
            assert g[f"{r}-cipher-type"] == "aes-256-cbc"
            assert g[f"{r}-cipher-pass"] == values[f"pgbackrest_{r}_cipher_pass"]
            assert g[f"{r}-s3-key"] == values["backup_s3_access_key"]
            assert g[f"{r}-s3-key-secret"] == values["backup_s3_secret_key"]
            assert g[f"{r}-retention-full"] == str(BX[f"{r}_retention_full"])
        st = cp[BX["stanza"]]
        assert st["pg1-path"] == BX["pg1_path"] and st["pg1-socket-path"] == BX["pg1_socket_path"]
        assert not any(v.strip().lower() in ("n", "no", "false") for k, v in g.items() if "verify-tls" in k)
    assert (confs["server"]["global"]["repo1-cipher-pass"] != confs["server"]["global"]["repo2-cipher-pass"])
    srv, cli = confs["server"]["global"], confs["client"][BX["stanza"]]
    assert srv["archive-async"] == "y"
    assert srv["tls-server-port"] == str(BX["pg1_host_port"])
    client_cn, stanzas = srv["tls-server-auth"].split("=")
    assert stanzas == BX["stanza"]
    assert cli["pg1-host"] == BX["pg1_host"] and cli["pg1-host-type"] == "tls"
    assert cli["pg1-host-port"] == str(BX["pg1_host_port"]) and cli["pg1-host-ca-file"] == BX["ca_file"]
    assert "pg1-host" not in confs["server"][BX["stanza"]]

    # the certificates: chains, names, purposes
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca = x509.load_pem_x509_certificate((tmp_path / "pki" / "ca.crt").read_bytes())

    def cert(path: Path):
        c = x509.load_pem_x509_certificate(path.read_bytes())
        c.verify_directly_issued_by(ca)
        assert c.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) > dt.timedelta(days=300)
        return c

    def sans(c):
        return set(c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName))

    def eku(c):
        return set(c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)

    s3c = cert(out / "backup-s3" / "public.crt")
    assert host in sans(s3c) and "localhost" in sans(s3c)  # localhost: the healthcheck's `mc ready local`
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku(s3c)
    srv_dir = out / "pgbackrest-server"
    tsc = cert(srv_dir / Path(srv["tls-server-cert-file"]).relative_to(cfg_dir))
    assert BX["pg1_host"] in sans(tsc) and ExtendedKeyUsageOID.SERVER_AUTH in eku(tsc)
    cli_dir = out / "pgbackrest-client"
    clc = cert(cli_dir / Path(cli["pg1-host-cert-file"]).relative_to(cfg_dir))
    assert clc.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == client_cn
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku(clc)
    for f in (srv_dir / Path(srv["tls-server-key-file"]).relative_to(cfg_dir),
              cli_dir / Path(cli["pg1-host-key-file"]).relative_to(cfg_dir), out / "backup-s3" / "private.key"):
        assert f.exists() and f.stat().st_mode & 0o077 == 0, f"{f}: private key readable by others"
    for d in (srv_dir, cli_dir):
        assert (d / "pgbackrest.conf").stat().st_mode & 0o077 == 0, "pgbackrest.conf holds secrets: mode 600"
    assert (out / "ca" / "ca.crt").read_bytes() == (tmp_path / "pki" / "ca.crt").read_bytes()
    assert not (out / "ca" / "ca.key").exists(), "the CA key never leaves backup-pki"
    mounting_pki = [n for n, sv in SERVICES.items() if any(src == "backup-pki" for src, _ in _mounts(sv).values())]
    assert mounting_pki == ["backup-init"], "only backup-init may mount the CA's private key"

    # a second run keeps the CA and the certificates (idempotent `up`)
    before = {p: p.read_bytes() for p in (tmp_path / "pki").iterdir()}
    s3_before = (out / "backup-s3" / "public.crt").read_bytes()
    backup_init.run(out, tmp_path / "pki", secrets_dir=tmp_path / "secrets", airflow_uid=os.getuid())
    assert before == {p: p.read_bytes() for p in (tmp_path / "pki").iterdir()}
    assert s3_before == (out / "backup-s3" / "public.crt").read_bytes()


def test_backup_init_refuses_missing_secrets(tmp_path):
    (tmp_path / "secrets").mkdir()
    with pytest.raises(SystemExit, match="scripts/compose/secrets.sh"):
        backup_init.run(tmp_path / "out", tmp_path / "pki", secrets_dir=tmp_path / "secrets", airflow_uid=os.getuid())


def test_restore_config_copy_drops_the_remote_database(tmp_path, monkeypatch):
    """The workers' configuration names the database through the TLS server; a restore (drill) runs locally,
    and pgBackRest refuses a restore with a pg1-host: the copy must leave those options out."""
    from include.retain import pgbackrest as pb

    _render_stack(tmp_path)
    conf = tmp_path / "out" / "pgbackrest-client" / "pgbackrest.conf"
    s = pb.BackupSettings.from_extra({**BX, "config": str(conf)})
    assert s.os_user is None and s.scratch_root == BX["scratch_root"] and s.stanza == BX["stanza"]
    monkeypatch.setattr(pb.shutil, "which", lambda _: "/usr/bin/pgbackrest")  # no binary needed for a copy
    copy = pb.PgBackRest(s).config_copy(str(tmp_path / "drill.conf"), only_repo=2, spool_path=str(tmp_path / "spool"))
    cp = _ini(Path(copy))
    assert not [k for k in cp[BX["stanza"]] if k.startswith("pg1-host")]
    assert cp[BX["stanza"]]["pg1-path"] == BX["pg1_path"]
    assert not [k for k in cp["global"] if k.startswith("repo1-")] and cp["global"]["repo2-type"] == "s3"
    assert cp["global"]["spool-path"] == str(tmp_path / "spool")


# ------------------------------------------------------------------------------------------------------------
# TLS 1.3 on every connection and the secrets of issue 12 (docs/compose.md): the project CA and the servers'
# certificates (tls-init), TLS-only servers, every client verifying the CA, Airflow's keys and the connections
# from the compose secrets (secrets.sh, secrets-init, the image's entrypoint), airflow-init's access steps.
import base64  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import stat  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from urllib.parse import parse_qs, urlsplit  # noqa: E402

TLS_INIT = ROOT / "scripts" / "compose" / "tls_init.py"
SECRETS_SH = ROOT / "scripts" / "compose" / "secrets.sh"
SECRETS_INIT = ROOT / "scripts" / "compose" / "secrets_init.py"
AIRFLOW_ENTRYPOINT = ROOT / "docker" / "airflow" / "entrypoint.sh"
PG_HBA = ROOT / "docker" / "postgres" / "pg_hba.conf"
COMMON_ENV = COMPOSE["x-airflow-common"]["environment"]
CA_FILE = secrets_init.CA_FILE  # where every Airflow container sees the project CA
AIRFLOW_UID = 50000  # docker-compose.yml's default (${AIRFLOW_UID:-50000})
# the users of the pinned images that must read their server's key (tls-init hands the files to them)
IMAGE_USERS = {"postgres": (0, 0),            # root: the image's entrypoint installs them as postgres, mode 600
               "redis": (999, 1000),          # redis:7.4.1-alpine's `redis`
               "kafka": (1000, 1000),         # apache/kafka's `appuser`
               "elasticsearch": (1000, 0),    # the Elasticsearch image's uid:gid
               "minio": (0, 0),               # MinIO runs as root
               "airflow-apiserver": (AIRFLOW_UID, 0)}
# which servers listen, and how: TLS with TLS 1.3 as the minimum (each checked below) or a documented limit
TLS13_SERVERS = {"postgres", "redis", "kafka", "elasticsearch", "airflow-apiserver"}
KNOWN_LIMITS = {  # docs/compose.md, "Limits"
    "minio": "HTTPS only, but MinIO hard-codes TLS 1.2 as its minimum (no setting); every client here negotiates 1.3",
    "backup-s3": "as minio (the backups' repositories, issue 10)",
    "pgbackrest-server": "pgBackRest's own TLS server, client certificates (issue 10); its TLS floor is pgBackRest's",
    "spark-master": "Spark RPC and web UI are not TLS (not in issue 12's list): nothing is published",
    "spark-worker": "as spark-master",
}
TLS_VOLUMES = {src: Path(dst).name  # volume -> the directory tls-init writes it as (/out/<dir>)
               for dst, (src, _) in _mounts(SERVICES["tls-init"]).items() if dst.startswith("/out/")}


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def _env_of(name: str) -> dict:
    return {k: ("" if v is None else str(v)) for k, v in (SERVICES[name].get("environment") or {}).items()}


def _tls_file(service: str, path: str, tls_out: Path) -> Path:
    """The file of tls-init's output that ``service`` sees at container ``path`` (through a read-only volume)."""
    for dst, (src, ro) in sorted(_mounts(SERVICES[service]).items(), key=lambda m: -len(m[0])):
        if path == dst or path.startswith(dst.rstrip("/") + "/"):
            assert src in TLS_VOLUMES, f"{service}: {path} is on {src}, not on a volume tls-init writes"
            assert ro, f"{service}: {dst} ({src}) must be mounted read-only"
            f = tls_out / "out" / TLS_VOLUMES[src] / Path(path).relative_to(dst)
            assert f.is_file(), f"{service}: {path} -> {f} is not written by tls-init"
            return f
    raise AssertionError(f"{service}: nothing is mounted at {path}")


def _repo_file(service: str, path: str) -> Path:
    """The repository file that ``service`` sees at container ``path`` (through a bind mount)."""
    for dst, (src, _) in sorted(_mounts(SERVICES[service]).items(), key=lambda m: -len(m[0])):
        if src.startswith("./") and (path == dst or path.startswith(dst.rstrip("/") + "/")):
            f = ROOT / src / Path(path).relative_to(dst)
            assert f.is_file(), f"{service}: {path} -> {f} does not exist"
            return f
    raise AssertionError(f"{service}: no bind mount holds {path}")


def _dns_sans(cert: Path) -> set[str]:
    out = _run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(cert)], check=True).stdout
    return set(re.findall(r"DNS:([\w.-]+)", out))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen | None = None, seconds: float = 30) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {seconds}s")


def _tls(port: int, hostname: str, cafile: Path | None, max_version=None, ciphers: str | None = None):
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    if max_version:
        ctx.maximum_version = max_version
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=hostname)


@pytest.fixture(scope="module")
def tls_out(tmp_path_factory) -> Path:
    """What the one-shot tls-init writes: the real script, run as the compose service runs it."""
    d = tmp_path_factory.mktemp("tls-init")
    env = {**os.environ, "TLS_INIT_OUT": str(d / "out"), "TLS_INIT_PKI": str(d / "pki"),
           "AIRFLOW_UID": str(AIRFLOW_UID)}
    r = _run([sys.executable, str(TLS_INIT)], env=env)
    assert r.returncode == 0, r.stderr
    return d


@pytest.fixture(scope="module")
def compose_secrets(tmp_path_factory) -> Path:
    """What scripts/compose/secrets.sh makes (the real script, its output directory overridden)."""
    d = tmp_path_factory.mktemp("compose-secrets") / "compose-secrets"
    r = _run(["sh", str(SECRETS_SH)], env={**os.environ, "COMPOSE_SECRETS_DIR": str(d),
                                           "PLATFORM_PYTHON": sys.executable})
    assert r.returncode == 0, r.stderr
    return d


@pytest.fixture(scope="module")
def secrets_out(compose_secrets, tmp_path_factory) -> Path:
    """What the one-shot secrets-init writes from those secrets (the real script)."""
    out = tmp_path_factory.mktemp("secrets-init")
    env = {**os.environ, "PLATFORM_SECRETS_DIR": str(compose_secrets), "SECRETS_INIT_OUT": str(out),
           "AIRFLOW_UID": str(AIRFLOW_UID)}
    r = _run([sys.executable, str(SECRETS_INIT)], env=env, cwd="/")
    assert r.returncode == 0, r.stderr
    return out


def _secret(compose_secrets: Path, name: str) -> str:
    return (compose_secrets / name).read_text().strip()


def _conn_env(secrets_out: Path) -> dict[str, str]:
    return {f.name: f.read_text() for f in (secrets_out / "airflow" / "env").iterdir()}


# ---------------------------------------------------------------- certificates (tls-init, executed)
def test_tls_init_issues_a_verified_certificate_per_service(tls_out):
    out, ca = tls_out / "out", tls_out / "pki" / "ca.crt"
    assert (out / "ca" / "ca.crt").read_bytes() == ca.read_bytes()
    assert not list(out.rglob("ca.key")), "the CA's key never leaves volume tls-pki"
    assert [n for n, sv in SERVICES.items() if any(src == "tls-pki" for src, _ in _mounts(sv).values())] == ["tls-init"]
    assert _run(["openssl", "x509", "-noout", "-ext", "basicConstraints", "-in", str(ca)], check=True).stdout.count(
        "CA:TRUE") == 1
    served = set()
    for vol, dirname in TLS_VOLUMES.items():
        consumers = sorted(n for n, sv in SERVICES.items()
                           if n != "tls-init" and any(src == vol for src, _ in _mounts(sv).values()))
        if vol == "tls-ca":  # the CA certificate for the clients
            assert set(consumers) >= {"airflow-apiserver", "airflow-worker", "airflow-init", "minio", "minio-init"}
            continue
        assert consumers == [dirname], f"{vol} must be mounted by service {dirname} only, not {consumers}"
        served.add(dirname)
        d = out / dirname
        names = ("public.crt", "private.key") if dirname == "minio" else ("server.crt", "server.key")
        cert, key = d / names[0], d / names[1]
        r = _run(["openssl", "verify", "-CAfile", str(ca), "-purpose", "sslserver", str(cert)])
        assert r.returncode == 0 and r.stdout.strip().endswith(": OK"), f"{cert}: {r.stdout}{r.stderr}"
        assert _dns_sans(cert) == {dirname, "localhost"}, f"{cert}: names {_dns_sans(cert)}"
        pub_cert = _run(["openssl", "x509", "-noout", "-pubkey", "-in", str(cert)], check=True).stdout
        pub_key = _run(["openssl", "pkey", "-pubout", "-in", str(key)], check=True).stdout
        assert pub_cert == pub_key, f"{key} is not the key of {cert}"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, f"{key}: the key must be readable by its owner only"
        if os.geteuid() == 0:  # tls-init runs as root in compose: it hands each key to its server's user
            assert (key.stat().st_uid, key.stat().st_gid) == IMAGE_USERS[dirname], f"{key}: owner"
    assert served == set(IMAGE_USERS), f"servers with a certificate: {served}"
    # Kafka's keystore: PKCS#12 that Java (keytool, as the broker's JVM) opens with the password file
    k = out / "kafka"
    listing = _run(["keytool", "-list", "-v", "-storetype", "PKCS12", "-keystore", str(k / "server.p12"),
                    "-storepass", (k / "keystore.pass").read_text().strip()])
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert "Alias name: broker" in listing.stdout and "Entry type: PrivateKeyEntry" in listing.stdout
    assert "Certificate chain length: 2" in listing.stdout
    fp = _run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(k / "server.crt")],
              check=True).stdout.split("=", 1)[1].strip()
    assert fp in listing.stdout, "the keystore holds another certificate than server.crt"
    for f in ("server.p12", "keystore.pass"):
        assert stat.S_IMODE((k / f).stat().st_mode) == 0o600


def test_tls_init_is_idempotent(tls_out, tmp_path):
    """A second `up` keeps the CA, the certificates and the keystore (clients keep trusting the servers)."""
    before = {p: p.read_bytes() for p in tls_out.rglob("*") if p.is_file()}
    env = {**os.environ, "TLS_INIT_OUT": str(tls_out / "out"), "TLS_INIT_PKI": str(tls_out / "pki"),
           "AIRFLOW_UID": str(AIRFLOW_UID)}
    r = _run([sys.executable, str(TLS_INIT)], env=env)
    assert r.returncode == 0, r.stderr
    assert "issued" not in r.stderr and "created" not in r.stderr, r.stderr
    assert before == {p: p.read_bytes() for p in tls_out.rglob("*") if p.is_file()}
    # a certificate naming other hosts (or damaged) is issued again, still under the same CA
    (tls_out / "out" / "redis" / "server.crt").write_text("garbage")
    r = _run([sys.executable, str(TLS_INIT)], env=env)
    assert r.returncode == 0 and "issued" in r.stderr and "redis" in r.stderr
    assert _run(["openssl", "verify", "-CAfile", str(tls_out / "pki" / "ca.crt"),
                 str(tls_out / "out" / "redis" / "server.crt")]).returncode == 0
    assert (tls_out / "pki" / "ca.crt").read_bytes() == before[tls_out / "pki" / "ca.crt"]


# ---------------------------------------------------------------- servers: TLS only, TLS 1.3 (static)
def _listening(service: dict) -> bool:
    return bool(service.get("ports") or service.get("expose"))


def test_every_listening_service_is_tls_13_or_a_documented_limit():
    listening = {n for n, s in SERVICES.items() if _listening(s)}
    assert listening == TLS13_SERVERS | set(KNOWN_LIMITS), (
        f"classify every server: {listening ^ (TLS13_SERVERS | set(KNOWN_LIMITS))} (TLS13_SERVERS or KNOWN_LIMITS)")
    for name in KNOWN_LIMITS:
        if name.startswith("spark"):
            assert not SERVICES[name].get("ports"), f"{name} is not TLS: it must not be published on the host"
    # nothing in the stack speaks plain http or plain redis, and no PLAINTEXT Kafka listener exists
    text = (ROOT / "docker-compose.yml").read_text()
    code = "\n".join(ln.split("#", 1)[0] for ln in text.splitlines())
    assert "http://" not in code and "redis://" not in code and "PLAINTEXT" not in code
    assert "--insecure" not in code and " -k " not in code and "sslmode=disable" not in code


def test_postgres_accepts_tls_13_only_over_tcp(tls_out):
    pg = _pg_settings(SERVICES["postgres"])
    assert pg["ssl"] == "on" and pg["ssl_min_protocol_version"] == "TLSv1.3"
    ep = PG_ENTRYPOINT.read_text()
    tls_src = re.search(r"^TLS_SRC=(\S+)", ep, flags=re.M).group(1)
    tls_dir = re.search(r"^TLS_DIR=(\S+)", ep, flags=re.M).group(1)
    assert pg["ssl_cert_file"] == f"{tls_dir}/server.crt" and pg["ssl_key_file"] == f"{tls_dir}/server.key"
    for f in ("server.crt", "server.key", "ca.crt"):  # what the entrypoint installs is what tls-init wrote
        _tls_file("postgres", f"{tls_src}/{f}", tls_out)
    # PostgreSQL refuses a key others can read: the entrypoint installs it owned by postgres, mode 600
    assert re.search(r'install -o postgres -g postgres -m 0600 "\$TLS_SRC/server\.key" "\$TLS_DIR/server\.key"', ep)
    # the hba file: baked into the image from docker/postgres/pg_hba.conf; TCP only as hostssl
    assert f"COPY --chmod=0644 pg_hba.conf {pg['hba_file']}" in PG_DOCKERFILE.read_text()
    lines = [ln.split() for ln in PG_HBA.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    kinds = {ln[0] for ln in lines}
    assert kinds == {"local", "hostssl"}, f"pg_hba.conf: {kinds} (host/hostnossl would accept plaintext)"
    assert all(ln[-1] in ("scram-sha-256", "cert") for ln in lines if ln[0] == "hostssl"), "hostssl without a password"


def _redis_args() -> dict[str, str]:
    cmd = SERVICES["redis"]["command"]
    assert cmd[0] == "redis-server" and len(cmd) % 2 == 1, cmd
    return dict(zip(cmd[1::2], cmd[2::2]))


def test_redis_has_no_plaintext_port(tls_out):
    a = _redis_args()
    assert a["--port"] == "0", "the plaintext port must be off"
    assert a["--tls-protocols"] == "TLSv1.3" and a["--tls-auth-clients"] == "no"
    assert _container_ports(SERVICES["redis"]) == {int(a["--tls-port"])}
    for opt in ("--tls-cert-file", "--tls-key-file", "--tls-ca-cert-file"):
        _tls_file("redis", a[opt], tls_out)


def test_kafka_has_ssl_listeners_only(tls_out):
    env = _env_of("kafka")
    listeners = dict(item.split("://", 1) for item in env["KAFKA_LISTENERS"].split(","))
    protocols = dict(item.split(":", 1) for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) == set(protocols) and set(protocols.values()) == {"SSL"}, protocols
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners, "the KRaft controller's listener is SSL too"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "SSL://kafka:9092"
    # the image's default would be PLAINTEXT (configureDefaults): it must be set, to the broker's SSL listener
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].split("://")[0]
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == advertised != env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert protocols[advertised] == "SSL"
    assert env["KAFKA_SSL_PROTOCOL"] == "TLSv1.3" and env["KAFKA_SSL_ENABLED_PROTOCOLS"] == "TLSv1.3"
    assert env["KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM"] == "https"
    assert env["KAFKA_SSL_CLIENT_AUTH"] == "none"
    # the apache/kafka image reads these files from /etc/kafka/secrets (docker/resources/common-scripts/configure)
    secrets_dir = "/etc/kafka/secrets"
    assert env["KAFKA_SSL_KEYSTORE_TYPE"] == "PKCS12" and env["KAFKA_SSL_TRUSTSTORE_TYPE"] == "PEM"
    for var in ("KAFKA_SSL_KEYSTORE_FILENAME", "KAFKA_SSL_KEYSTORE_CREDENTIALS", "KAFKA_SSL_KEY_CREDENTIALS"):
        _tls_file("kafka", f"{secrets_dir}/{env[var]}", tls_out)
    ca = _tls_file("kafka", env["KAFKA_SSL_TRUSTSTORE_LOCATION"], tls_out)
    assert ca.read_bytes() == (tls_out / "pki" / "ca.crt").read_bytes()
    assert "kafka" in _dns_sans(_tls_file("kafka", f"{secrets_dir}/server.crt", tls_out))  # controller: kafka:9093
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    # the healthcheck's client: SSL, TLS 1.3, the CA as PEM truststore, host name checked
    hc = SERVICES["kafka"]["healthcheck"]["test"][-1]
    conf_path = re.search(r"--command-config (\S+)", hc).group(1)
    props = dict(ln.split("=", 1) for ln in _tls_file("kafka", conf_path, tls_out).read_text().splitlines()
                 if ln and not ln.startswith("#"))
    assert props["security.protocol"] == "SSL" and props["ssl.enabled.protocols"] == "TLSv1.3"
    assert props["ssl.endpoint.identification.algorithm"] == "https" and props["ssl.truststore.type"] == "PEM"
    _tls_file("kafka", props["ssl.truststore.location"], tls_out)
    assert "--bootstrap-server kafka:9092" in hc


def test_elasticsearch_serves_https_tls13_with_a_file_realm_user(tls_out, secrets_out):
    env = _env_of("elasticsearch")
    assert env["xpack.security.enabled"] == "true" and env["xpack.security.http.ssl.enabled"] == "true"
    assert env["xpack.security.http.ssl.supported_protocols"] == "TLSv1.3"
    assert env["xpack.security.autoconfiguration.enabled"] == "false"
    assert env["transport.host"] == "127.0.0.1", "the (plaintext) transport port of the single node: loopback only"
    config = "/usr/share/elasticsearch/config"
    for key in ("certificate", "key", "certificate_authorities"):
        rel = env[f"xpack.security.http.ssl.{key}"]
        assert rel.startswith("certs/"), "Elasticsearch reads certificates from its config dir only"
        _tls_file("elasticsearch", f"{config}/{rel}", tls_out)
    # the file-realm user: the local stack's name, the password secrets-init wrote for uid 1000
    script = SERVICES["elasticsearch"]["command"][-1]
    user = settings_loader.ES_TLS_USER
    # ($$ is compose's escape of $: the shell gets "$(cat ...)")
    m = re.search(rf'elasticsearch-users useradd {user} -r superuser -p "\$\$\(cat (\S+)\)"', script)
    assert m, script
    pw_file = m.group(1)
    src, ro = _mounts(SERVICES["elasticsearch"])[str(Path(pw_file).parent)]
    assert src == "elasticsearch-secrets" and ro
    assert _mounts(SERVICES["secrets-init"])["/out/elasticsearch"][0] == src
    assert Path(pw_file).name == secrets_init.ES_PASSWORD_FILE
    assert (secrets_out / "elasticsearch" / secrets_init.ES_PASSWORD_FILE).exists()
    assert script.rstrip().endswith("exec /usr/local/bin/docker-entrypoint.sh eswrapper")
    hc = SERVICES["elasticsearch"]["healthcheck"]["test"][-1]
    assert "https://localhost:9200/" in hc and "-K -" in hc and pw_file in hc  # the password on stdin, not argv
    _tls_file("elasticsearch", re.search(r"--cacert (\S+)", hc).group(1), tls_out)


def test_minio_serves_https(tls_out):
    for name in ("minio",):
        cmd = SERVICES[name]["command"]
        certs = cmd[cmd.index("--certs-dir") + 1]
        for f in ("public.crt", "private.key", "CAs/ca.crt"):
            _tls_file(name, f"{certs}/{f}", tls_out)
        env = _env_of(name)
        assert env["MC_HOST_local"] == "https://localhost:9000"
        _tls_file(name, f"{env['MC_CONFIG_DIR']}/certs/CAs/ca.crt", tls_out)
    init = SERVICES["minio-init"]
    assert "mc alias set local https://minio:9000 " in init["entrypoint"]
    _tls_file("minio-init", f"{_env_of('minio-init')['MC_CONFIG_DIR']}/certs/CAs/ca.crt", tls_out)


def test_api_server_serves_https_and_only_it_gets_the_openssl_conf(tls_out):
    env = _env_of("airflow-apiserver")
    cert = _tls_file("airflow-apiserver", env["AIRFLOW__API__SSL_CERT"], tls_out)
    _tls_file("airflow-apiserver", env["AIRFLOW__API__SSL_KEY"], tls_out)
    execution = urlsplit(COMMON_ENV["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    base = urlsplit(COMMON_ENV["AIRFLOW__API__BASE_URL"])
    assert execution.scheme == base.scheme == "https"
    assert execution.hostname == "airflow-apiserver" and {execution.hostname, base.hostname} <= _dns_sans(cert)
    assert execution.port in _container_ports(SERVICES["airflow-apiserver"])
    # the certificate only where it is served (the Task SDK would load AIRFLOW__API__SSL_CERT as a CA)
    for name, s in SERVICES.items():
        e = s.get("environment") or {}
        if name != "airflow-apiserver":
            assert "OPENSSL_CONF" not in e and "AIRFLOW__API__SSL_CERT" not in e, name
    conf = _repo_file("airflow-apiserver", env["OPENSSL_CONF"])
    lines = [ln.strip() for ln in conf.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert "system_default = system_default_sect" in lines and "Protocol = -ALL, TLSv1.3" in lines


def test_healthchecks_use_tls():
    tests = {n: " ".join(s["healthcheck"]["test"]) if isinstance(s["healthcheck"]["test"], list)
             else s["healthcheck"]["test"] for n, s in SERVICES.items() if "healthcheck" in s}
    tls_checks = {
        "postgres": lambda t: "sslmode=verify-full" in t and "sslrootcert=" in t,
        "redis": lambda t: "--tls --cacert " in t,
        "elasticsearch": lambda t: "https://" in t and "--cacert " in t,
        "kafka": lambda t: "--command-config " in t,  # its SSL client: test_kafka_has_ssl_listeners_only
        "minio": lambda t: t == "CMD mc ready local" and _env_of("minio")["MC_HOST_local"].startswith("https://"),
        "backup-s3": lambda t: t == "CMD mc ready local" and _env_of("backup-s3")["MC_HOST_local"].startswith(
            "https://"),
        "airflow-apiserver": lambda t: "https://localhost:8080/" in t and f"--cacert {CA_FILE}" in t,
        "pgbackrest-server": lambda t: "platform-entrypoint.sh ping" in t,  # pgBackRest's TLS server-ping
    }
    no_server = {  # they reach no server but through the TLS settings checked elsewhere
        "airflow-scheduler": "airflow jobs check", "airflow-dag-processor": "airflow jobs check",
        "airflow-triggerer": "airflow jobs check", "airflow-worker": "inspect ping",  # metadata DB / broker (TLS)
        "spark-master": "/dev/tcp/localhost/7077", "spark-worker": "/dev/tcp/localhost/8082",  # KNOWN_LIMITS
    }
    assert set(tests) == set(tls_checks) | set(no_server), set(tests) ^ (set(tls_checks) | set(no_server))
    for name, check in tls_checks.items():
        assert check(tests[name]), f"{name}: healthcheck without TLS: {tests[name]}"
    for name, what in no_server.items():
        assert what in tests[name], f"{name}: {tests[name]}"


def test_airflow_components_open_no_plaintext_log_server():
    """Airflow's log server (serve_logs) is plain http on every interface: the components skip it, task logs are
    read from Elasticsearch; the scheduler's plain-http health server stays off."""
    for name in ("airflow-scheduler", "airflow-triggerer", "airflow-worker"):
        assert SERVICES[name]["command"][-1] == "--skip-serve-logs", name
    assert "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK" not in COMMON_ENV
    assert COMMON_ENV["AIRFLOW__LOGGING__REMOTE_LOGGING"] == "True"
    assert COMMON_ENV["AIRFLOW__ELASTICSEARCH__WRITE_TO_ES"] == "True"


# ---------------------------------------------------------------- clients verify the CA
def test_airflow_settings_verify_the_project_ca(compose_secrets, secrets_out):
    assert _mounts({"volumes": COMPOSE["x-airflow-common"]["volumes"]})[str(Path(CA_FILE).parent)] == ("tls-ca", True)
    for var in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
        u = urlsplit(COMMON_ENV[var])
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        assert u.hostname == "postgres" and q == {"sslmode": "verify-full", "sslrootcert": CA_FILE}, var
    b = urlsplit(COMMON_ENV["AIRFLOW__CELERY__BROKER_URL"])
    q = {k: v[0] for k, v in parse_qs(b.query).items()}
    assert b.scheme == "rediss" and b.hostname == "redis"
    assert q == {"ssl_cert_reqs": "CERT_REQUIRED", "ssl_ca_certs": CA_FILE, "ssl_check_hostname": "true"}
    es = urlsplit(COMMON_ENV["AIRFLOW__ELASTICSEARCH__HOST"])
    assert es.scheme == "https" and es.hostname == "elasticsearch" and not es.username  # no credentials in the URL
    assert COMMON_ENV["AIRFLOW__ELASTICSEARCH_CONFIGS__CA_CERTS"] == CA_FILE
    assert COMMON_ENV["AIRFLOW__ELASTICSEARCH_CONFIGS__VERIFY_CERTS"] == "True"
    auth = base64.b64decode(_conn_env(secrets_out)["AIRFLOW__ELASTICSEARCH_CONFIGS__BASIC_AUTH"]).decode()
    assert auth == f"{settings_loader.ES_TLS_USER}:{_secret(compose_secrets, 'elasticsearch_platform_password')}"
    # the Task SDK's client: the project CA and nothing else
    assert COMMON_ENV["AIRFLOW__API__SSL_CA_FILE"] == CA_FILE
    assert COMMON_ENV["AIRFLOW__API__CLIENT_USE_PUBLIC_CERTS"] == "False"
    assert COMMON_ENV["AIRFLOW__CORE__AUTH_MANAGER"] == \
        "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"


def test_every_airflow_connection_verifies_the_project_ca(compose_secrets, secrets_out, tls_out, monkeypatch):
    env = {k: v for k, v in _conn_env(secrets_out).items() if k.startswith("AIRFLOW_CONN_")}
    conns = {k[len("AIRFLOW_CONN_"):].lower(): json.loads(v) for k, v in env.items()}
    assert set(conns) == {c["conn_id"] for c in SETTINGS["connections"]} | {
        "platform_encryption", "platform_privacy_hmac", "platform_api_postgres"}
    pw = _secret(compose_secrets, "elasticsearch_platform_password")
    for conn_id, c in conns.items():
        x = c.get("extra") or {}
        kind = c["conn_type"]
        host = c.get("host")
        if kind == "postgres":
            assert x["sslmode"] == "verify-full" and x["sslrootcert"] == CA_FILE, conn_id
        elif kind == "redis":
            assert (x["ssl"], x["ssl_ca_certs"], x["ssl_cert_reqs"], x["ssl_check_hostname"]) == (
                True, CA_FILE, "required", True), conn_id
        elif kind == "kafka":
            assert x["security.protocol"] == "SSL" and x["ssl.ca.location"] == CA_FILE, conn_id
            assert x["ssl.endpoint.identification.algorithm"] == "https", conn_id
            host = x["bootstrap.servers"].split(":")[0]
        elif kind == "elasticsearch":
            assert c["schema"] == "https" and (c["login"], c["password"]) == (settings_loader.ES_TLS_USER, pw)
            assert x["ca_certs"] == CA_FILE and x["verify_certs"] is True, conn_id
        elif kind == "aws" and conn_id == "platform_backup":  # its own CA (backup-init), checked with the backups
            assert x["endpoint_url"].startswith("https://") and x["ca_file"]
            continue
        elif kind == "aws":
            assert x["endpoint_url"].startswith("https://") and x["verify"] == CA_FILE, conn_id
            host = urlsplit(x["endpoint_url"]).hostname
        elif kind == "generic":
            assert not host and not x.get("endpoint_url"), conn_id  # keys only
            continue
        else:
            raise AssertionError(f"{conn_id}: connection type {kind} has no TLS rule here")
        # the name the client verifies is a name of that server's certificate
        sans = _dns_sans(tls_out / "out" / host / ("public.crt" if host == "minio" else "server.crt"))
        assert host in SERVICES and host in sans, f"{conn_id}: {host} is not a name of its certificate"
    # the keys are the secrets'
    api = conns["platform_api_postgres"]
    assert (api["login"], api["password"]) == (secrets_init.API_LOGIN,
                                               _secret(compose_secrets, "platform_api_postgres_password"))
    assert (api["host"], api["port"], api["schema"]) == ("postgres", 5432, "platform")
    assert conns["platform_privacy_hmac"]["password"] == _secret(compose_secrets, "platform_privacy_hmac_key")
    assert conns["platform_encryption"] == json.loads(_secret(compose_secrets, "platform_encryption_keyring"))
    # the project's own clients read them as written (include/connections.py, include/security)
    from include import connections as ic
    from include.security.crypto import Keyring

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    dsn = ic.postgres_dsn(ic.API_POSTGRES)
    assert dsn.startswith("postgresql://platform_api:")
    assert "sslmode=verify-full" in dsn and f"sslrootcert={CA_FILE}" in dsn
    assert ic.redis_ssl_kwargs(ic.get_connection(ic.REDIS).extra)["ssl_ca_certs"] == CA_FILE
    assert ic.es_tls_kwargs(ic.get_connection(ic.ELASTICSEARCH).extra) == {"ca_certs": CA_FILE, "verify_certs": True}
    assert ic.s3_verify(ic.get_connection(ic.S3).extra) == CA_FILE
    assert Keyring.from_connection().active_key_id
    # every container that gets these connections has the CA where they say
    for name, s in SERVICES.items():
        if (s.get("environment") or {}).get("PLATFORM_ENV_DIR"):
            assert _mounts(s).get(str(Path(CA_FILE).parent)) == ("tls-ca", True), f"{name}: no CA at {CA_FILE}"


# ---------------------------------------------------------------- secrets (executed)
def test_secrets_sh_makes_every_compose_secret_once(compose_secrets):
    from cryptography.fernet import Fernet
    from include.security.crypto import Keyring

    assert stat.S_IMODE(compose_secrets.stat().st_mode) == 0o700
    made = {f.name for f in compose_secrets.iterdir()}
    assert made == set(COMPOSE["secrets"]), f"secrets.sh vs docker-compose.yml: {made ^ set(COMPOSE['secrets'])}"
    for f in compose_secrets.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f"{f.name}: readable by others"
    fernet = _secret(compose_secrets, "airflow_fernet_key")
    assert len(base64.urlsafe_b64decode(fernet)) == 32
    assert Fernet(fernet.encode()).decrypt(Fernet(fernet.encode()).encrypt(b"x")) == b"x"
    ring = json.loads(_secret(compose_secrets, "platform_encryption_keyring"))
    assert ring["conn_type"] == "generic" and Keyring.from_dict(ring["extra"]).active_key_id == "k1"
    assert re.fullmatch(r"[0-9a-f]{64}", _secret(compose_secrets, "platform_privacy_hmac_key"))
    for name in ("airflow_jwt_secret", "airflow_secret_key", "elasticsearch_platform_password",
                 "platform_api_postgres_password", "pgbackrest_repo1_cipher_pass", "backup_s3_secret_key"):
        assert re.fullmatch(r"[A-Za-z0-9_-]{32,}", _secret(compose_secrets, name)), name
    values = {_secret(compose_secrets, n) for n in made}
    assert len(values) == len(made), "two secrets are equal"
    # a second run keeps every file; a deleted one is made again, alone
    before = {f.name: f.read_bytes() for f in compose_secrets.iterdir()}
    r = _run(["sh", str(SECRETS_SH)], env={**os.environ, "COMPOSE_SECRETS_DIR": str(compose_secrets),
                                           "PLATFORM_PYTHON": sys.executable})
    assert r.returncode == 0 and "generated" not in r.stdout and r.stdout.count("kept") == len(made), r.stdout
    assert before == {f.name: f.read_bytes() for f in compose_secrets.iterdir()}
    _run(["sh", "-n", str(SECRETS_SH)], check=True)


def test_secrets_sh_regenerates_only_a_missing_secret(compose_secrets, tmp_path):
    d = tmp_path / "s"
    shutil.copytree(compose_secrets, d)
    (d / "airflow_jwt_secret").unlink()
    r = _run(["sh", str(SECRETS_SH)], env={**os.environ, "COMPOSE_SECRETS_DIR": str(d),
                                           "PLATFORM_PYTHON": sys.executable})
    assert r.returncode == 0 and r.stdout.count("generated") == 1 and "airflow_jwt_secret" in r.stdout
    for f in compose_secrets.iterdir():
        if f.name != "airflow_jwt_secret":
            assert (d / f.name).read_bytes() == f.read_bytes()
    assert (d / "airflow_jwt_secret").read_text().strip() != _secret(compose_secrets, "airflow_jwt_secret")


def test_secrets_init_hands_each_secret_to_its_user(compose_secrets, secrets_out):
    a, es = secrets_out / "airflow", secrets_out / "elasticsearch"
    for f in [*a.iterdir(), *(a / "env").iterdir(), *es.iterdir()]:
        if f.is_file():
            assert stat.S_IMODE(f.stat().st_mode) == 0o400, f
    for d in (a, a / "env", es):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    if os.geteuid() == 0:
        assert {(p.stat().st_uid, p.stat().st_gid) for p in [a, *a.rglob("*")]} == {(AIRFLOW_UID, 0)}
        assert {(p.stat().st_uid, p.stat().st_gid) for p in [es, *es.rglob("*")]} == {IMAGE_USERS["elasticsearch"]}
    for key_file in secrets_init.AIRFLOW_KEYS.values():  # exactly the value: Airflow takes a _CMD's output as is
        assert (a / key_file).read_text() == _secret(compose_secrets, key_file)
    es_password = _secret(compose_secrets, "elasticsearch_platform_password")
    assert (es / secrets_init.ES_PASSWORD_FILE).read_text() == es_password
    # the volumes: written by secrets-init only, read-only for their consumers
    outs = {dst: src for dst, (src, _) in _mounts(SERVICES["secrets-init"]).items() if dst.startswith("/out/")}
    assert outs == {"/out/airflow": "airflow-secrets", "/out/elasticsearch": "elasticsearch-secrets"}
    for name, s in SERVICES.items():
        for dst, (src, ro) in _mounts(s).items():
            if src in outs.values() and name != "secrets-init":
                assert ro, f"{name} mounts {src} writable"
    # a second run gives the same files; a connection file nobody writes any more is removed
    (a / "env" / "AIRFLOW_CONN_STALE").write_text("{}")
    before = {p: p.read_bytes() for p in secrets_out.rglob("*") if p.is_file() and p.name != "AIRFLOW_CONN_STALE"}
    r = _run([sys.executable, str(SECRETS_INIT)], cwd="/", env={
        **os.environ, "PLATFORM_SECRETS_DIR": str(compose_secrets), "SECRETS_INIT_OUT": str(secrets_out),
        "AIRFLOW_UID": str(AIRFLOW_UID)})
    assert r.returncode == 0, r.stderr
    assert before == {p: p.read_bytes() for p in secrets_out.rglob("*") if p.is_file()}


@pytest.mark.parametrize(("name", "value", "message"), [
    ("airflow_fernet_key", None, "missing or empty"),
    ("airflow_fernet_key", "not-a-fernet-key", "not a Fernet key"),
    ("platform_encryption_keyring", '{"conn_type": "generic", "extra": {"keys": {}}}', "not a keyring"),
    ("platform_privacy_hmac_key", "abc", "not a hex key"),
    ("elasticsearch_platform_password", "12345", "Elasticsearch wants at least 6"),
])
def test_secrets_init_refuses_missing_or_malformed_secrets(compose_secrets, tmp_path, name, value, message):
    d = tmp_path / "secrets"
    shutil.copytree(compose_secrets, d)
    if value is None:
        (d / name).unlink()
    else:
        (d / name).write_text(value + "\n")
    with pytest.raises(SystemExit, match=rf"{name} \({message}.*scripts/compose/secrets\.sh"):
        secrets_init.run(tmp_path / "out", secrets_dir=d, airflow_uid=os.getuid())
    assert not (tmp_path / "out").exists(), "nothing is written from bad secrets"


def test_airflow_reads_its_keys_through_cmd_options(compose_secrets, secrets_out, tmp_path):
    """The _CMD options of docker-compose.yml, resolved by the real Airflow configuration, give the secrets."""
    mount = secrets_init.AIRFLOW_SECRETS_MOUNT
    assert _mounts({"volumes": COMPOSE["x-airflow-common"]["volumes"]})[mount] == ("airflow-secrets", True)
    # the same options, under the same file names, as the local stack's (scripts/settings.py, .local/secrets)
    assert {o: f"airflow_{key}" for o, (_, key, _) in settings_loader.AIRFLOW_KEYS.items()} == secrets_init.AIRFLOW_KEYS
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env["AIRFLOW_HOME"] = str(tmp_path / "airflow-home")
    options = {}
    for option, key_file in secrets_init.AIRFLOW_KEYS.items():
        cmd = COMMON_ENV[f"AIRFLOW__{option}_CMD"]
        assert cmd == f"cat {mount}/{key_file}", cmd
        env[f"AIRFLOW__{option}_CMD"] = f"cat {secrets_out / 'airflow' / key_file}"  # the same file, on the host
        section, key = option.lower().split("__")
        options[f"{section}.{key}"] = _secret(compose_secrets, key_file)
    code = ("import json, sys; from airflow.configuration import conf; "
            f"print(json.dumps({{k: conf.get(*k.split('.')) for k in {sorted(options)!r}}}))")
    r = _run([sys.executable, "-c", code], env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == options


def test_airflow_entrypoint_exports_the_connections(secrets_out, tmp_path):
    files = _conn_env(secrets_out)
    dump = [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]
    base = {"PATH": os.environ["PATH"]}
    r = _run(["bash", str(AIRFLOW_ENTRYPOINT), *dump[1:]], env={
        **base, "PLATFORM_ENV_DIR": str(secrets_out / "airflow" / "env"), "PLATFORM_NEXT_ENTRYPOINT": dump[0]})
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert {k: got.get(k) for k in files} == files
    # the one-shots before secrets-init: nothing exported, the command runs
    r = _run(["bash", str(AIRFLOW_ENTRYPOINT), *dump[1:]], env={**base, "PLATFORM_ENV_DIR": "",
                                                                "PLATFORM_NEXT_ENTRYPOINT": dump[0]})
    assert r.returncode == 0 and not [k for k in json.loads(r.stdout) if k.startswith("AIRFLOW_CONN_")]
    # secrets-init has not run: the container stops and says why
    (tmp_path / "empty").mkdir()
    r = _run(["bash", str(AIRFLOW_ENTRYPOINT), "true"], env={**base, "PLATFORM_ENV_DIR": str(tmp_path / "empty"),
                                                             "PLATFORM_NEXT_ENTRYPOINT": "env"})
    assert r.returncode == 1 and "secrets-init must run first" in r.stderr
    # the image runs it, under dumb-init, before the official entrypoint
    text = AIRFLOW_DOCKERFILE.read_text()
    target = re.search(r"^COPY --chmod=0755 docker/airflow/entrypoint\.sh (\S+)$", text, flags=re.M).group(1)
    assert f'ENTRYPOINT ["/usr/bin/dumb-init", "--", "{target}"]' in text
    assert "exec \"${PLATFORM_NEXT_ENTRYPOINT:-/entrypoint}\" \"$@\"" in AIRFLOW_ENTRYPOINT.read_text()
    # who gets the connections: every Airflow-image service but the one-shots that run before or without them
    env_dir = COMMON_ENV["PLATFORM_ENV_DIR"]
    assert env_dir == f"{secrets_init.AIRFLOW_SECRETS_MOUNT}/env"
    image = COMPOSE["x-airflow-common"]["image"]
    without = {n for n, s in SERVICES.items() if s.get("image") == image and not s["environment"]["PLATFORM_ENV_DIR"]}
    assert without == {"tls-init", "secrets-init", "backup-init", "pgbackrest-stanza"}
    for name, s in SERVICES.items():
        if s.get("image") != image:
            continue
        mounted = _mounts(s).get(secrets_init.AIRFLOW_SECRETS_MOUNT) == ("airflow-secrets", True)
        assert mounted == (name not in without), f"{name}: airflow-secrets mounted at its place: {mounted}"
        if name not in without:
            assert _depends(s).get("secrets-init") == "service_completed_successfully", name
            assert _depends(s).get("tls-init") == "service_completed_successfully", name


def test_airflow_init_runs_the_local_setup_sequence():
    """airflow-init does what `./dev` setup does for the local stack, in the same order, and stops at the first
    failure: the platform API's database login and the FAB roles included."""
    script = SERVICES["airflow-init"]["command"][-1]
    steps = [s.strip() for s in script.split("&&")]
    assert steps == ["airflow db migrate", "python scripts/settings.py airflow", "python -m include.db.migrate",
                     "python -m include.access api-login", "python -m include.access sync-roles",
                     "airflow dags reserialize", "python -m include.search apply-templates"]
    dev = (ROOT / "dev").read_text()
    setup = dev[dev.index("setup() {"):dev.index("\n}\n", dev.index("setup() {"))]
    marks = ["airflow db migrate", 'scripts/settings.py" airflow', "include.db.migrate", "include.access api-login",
             "include.access sync-roles", "airflow dags reserialize", "include.search apply-templates"]
    positions = [setup.index(m) for m in marks]
    assert positions == sorted(positions), "the order of ./dev setup changed: follow it here"
    assert "--connections" not in script, "connections come from the environment (secrets-init), not the DB"
    assert SERVICES["airflow-init"]["restart"] == "no"
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-worker", "airflow-triggerer",
                 "airflow-dag-processor"):
        assert _depends(SERVICES[name])["airflow-init"] == "service_completed_successfully", name


# ---------------------------------------------------------------- the servers, run with the compose settings
def test_redis_with_the_compose_arguments_serves_tls13_only(tls_out, tmp_path):
    """redis-server of this machine started with the compose service's arguments (tls-init's files, a free port)."""
    ca = tls_out / "out" / "ca" / "ca.crt"
    port = _free_port()
    args = []
    for opt, value in _redis_args().items():
        if opt in ("--tls-cert-file", "--tls-key-file", "--tls-ca-cert-file"):
            value = str(_tls_file("redis", value, tls_out))
        elif opt == "--tls-port":
            value = str(port)
        args += [opt, value]
    proc = subprocess.Popen(["redis-server", *args, "--bind", "127.0.0.1", "--dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_port(port, proc)
        with _tls(port, "redis", ca) as t:
            assert t.version() == "TLSv1.3"
            t.sendall(b"PING\r\nCONFIG GET port\r\n")
            reply = b""
            while reply.count(b"\r\n") < 6:
                reply += t.recv(256)
            assert reply.startswith(b"+PONG\r\n") and reply.endswith(b"$4\r\nport\r\n$1\r\n0\r\n"), reply
        with pytest.raises(ssl.SSLError):  # a TLS 1.2 client
            _tls(port, "redis", ca, max_version=ssl.TLSVersion.TLSv1_2)
        with pytest.raises(ssl.SSLCertVerificationError):  # a client without the project CA
            _tls(port, "redis", None)
        with pytest.raises(ssl.SSLCertVerificationError):  # the certificate names redis, not postgres
            _tls(port, "postgres", ca)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:  # plaintext
            s.sendall(b"PING\r\n")
            try:
                data = s.recv(64)
            except OSError:  # reset by the server, or no answer at all
                data = b""
            assert b"PONG" not in data
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def pg_dir():
    """A scratch directory the postgres user can reach (pytest's own tree is root's only)."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="compose-pg-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_postgres_with_the_compose_settings_serves_tls13_only(tls_out, pg_dir):
    """PostgreSQL of this machine with the compose service's ssl/hba settings, docker/postgres/pg_hba.conf and
    tls-init's pair installed as the image's entrypoint does; then the compose healthcheck itself."""
    import psycopg

    pgbin = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))[-1]
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    ca = tls_out / "out" / "ca" / "ca.crt"
    ep = PG_ENTRYPOINT.read_text()
    tls_src = re.search(r"^TLS_SRC=(\S+)", ep, flags=re.M).group(1)
    tls_dir = re.search(r"^TLS_DIR=(\S+)", ep, flags=re.M).group(1)
    base = pg_dir
    (base / "tls").mkdir(parents=True)
    remap = {}
    for name, mode in (("server.crt", 0o644), ("server.key", 0o600), ("ca.crt", 0o644)):
        shutil.copy(_tls_file("postgres", f"{tls_src}/{name}", tls_out), base / "tls" / name)
        os.chmod(base / "tls" / name, mode)
        remap[f"{tls_dir}/{name}"] = str(base / "tls" / name)
    pg = _pg_settings(SERVICES["postgres"])
    shutil.copy(PG_HBA, base / "pg_hba.conf")
    remap[pg["hba_file"]] = str(base / "pg_hba.conf")
    password = uuid.uuid4().hex
    (base / "pw").write_text(password + "\n")
    if as_pg:
        for p in [base, *base.rglob("*")]:
            shutil.chown(p, "postgres", "postgres")
    r = _run([*as_pg, f"{pgbin}/initdb", "-D", str(base / "data"), "-U", "postgres", "--pwfile", str(base / "pw"),
              "-A", "scram-sha-256", "-E", "UTF8"])
    assert r.returncode == 0, r.stdout + r.stderr
    port = _free_port()
    opts = []
    for k, v in pg.items():
        if k.startswith("ssl") or k == "hba_file":
            assert not v.startswith("/") or v in remap, f"{k}={v}: a path this test does not provide"
            opts += ["-c", f"{k}={remap.get(v, v)}"]
    assert {"ssl", "ssl_min_protocol_version", "ssl_cert_file", "ssl_key_file", "hba_file"} <= {
        o.split("=", 1)[0] for o in opts[1::2]}
    opts += ["-c", f"port={port}", "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={base}"]
    r = _run([*as_pg, f"{pgbin}/pg_ctl", "-D", str(base / "data"), "-l", str(base / "log"), "-w", "-t", "60",
              "-o", " ".join(shlex.quote(o) for o in opts), "start"])
    assert r.returncode == 0, r.stdout + r.stderr + ((base / "log").read_text() if (base / "log").exists() else "")
    try:
        kw = dict(host="postgres", hostaddr="127.0.0.1", port=port, user="postgres", password=password,
                  dbname="postgres", sslrootcert=str(ca), connect_timeout=10)
        with psycopg.connect(**kw, sslmode="verify-full") as c:
            assert c.execute("SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0] == "TLSv1.3"
            assert c.execute("SHOW ssl_min_protocol_version").fetchone()[0] == "TLSv1.3"
        with pytest.raises(psycopg.OperationalError, match="no encryption"):
            psycopg.connect(**kw, sslmode="disable")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(**kw, sslmode="require", ssl_max_protocol_version="TLSv1.2")
        with pytest.raises(psycopg.OperationalError, match="does not match host name"):
            psycopg.connect(**{**kw, "host": "redis"}, sslmode="verify-full")
        # the compose healthcheck: pg_isready over TCP and TLS, verifying the certificate as localhost
        test = SERVICES["postgres"]["healthcheck"]["test"]
        assert test[:2] == ["CMD", "pg_isready"]
        conninfo = test[test.index("-d") + 1]
        conninfo = re.sub(r"port=\d+", f"port={port}", re.sub(r"sslrootcert=\S+", f"sslrootcert={ca}", conninfo))
        hc = [f"{pgbin}/pg_isready", *test[2:]]
        hc[hc.index("-d") + 1] = conninfo
        assert _run(hc).returncode == 0, "the compose healthcheck fails against the TLS server"
        wrong = conninfo.replace(f"sslrootcert={ca}", f"sslrootcert={tls_out / 'out' / 'kafka' / 'server.crt'}")
        hc[hc.index("-d") + 1] = wrong
        assert _run(hc).returncode != 0, "the healthcheck must fail when the server's certificate does not verify"
    finally:
        _run([*as_pg, f"{pgbin}/pg_ctl", "-D", str(base / "data"), "-m", "fast", "-w", "stop"])


_UVICORN_TLS_SERVER = """
import socket, sys
from uvicorn.config import Config

async def app(scope, receive, send):
    pass

cert, key, ca = sys.argv[1:4]
config = Config(app=app, ssl_certfile=cert, ssl_keyfile=key, ssl_ca_certs=ca)  # what `airflow api-server` gives uvicorn
config.load()
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    try:
        t = config.ssl.wrap_socket(c, server_side=True)
        t.sendall(t.version().encode())
        t.close()
    except Exception:
        c.close()
"""


# TLS 1.2 cipher suites for the server's EC key: uvicorn's defaults (AES-GCM) and its former "TLSv1" list (CBC)
TLS12_CIPHERS = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES256-SHA"


def test_api_server_openssl_conf_makes_tls13_its_minimum(tls_out, tmp_path):
    """uvicorn's TLS context, built from the api-server's compose settings, in a process with and without the
    compose OPENSSL_CONF: with it a TLS 1.2 client is refused, without it the same client gets in."""
    env = _env_of("airflow-apiserver")
    cert = _tls_file("airflow-apiserver", env["AIRFLOW__API__SSL_CERT"], tls_out)
    key = _tls_file("airflow-apiserver", env["AIRFLOW__API__SSL_KEY"], tls_out)
    ca = _tls_file("airflow-apiserver", env["AIRFLOW__API__SSL_CA_FILE"], tls_out)
    conf = _repo_file("airflow-apiserver", env["OPENSSL_CONF"])
    (tmp_path / "server.py").write_text(_UVICORN_TLS_SERVER)
    clean = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
    for openssl_conf, tls12_accepted in ((str(conf), False), (None, True)):
        penv = {**clean, **({"OPENSSL_CONF": openssl_conf} if openssl_conf else {})}
        proc = subprocess.Popen([sys.executable, str(tmp_path / "server.py"), str(cert), str(key), str(ca)],
                                env=penv, stdout=subprocess.PIPE, text=True)
        try:
            port = int(proc.stdout.readline())
            with _tls(port, "airflow-apiserver", ca) as t:  # the Task SDK's view: the CA, the service name
                assert t.version() == "TLSv1.3"
            # a TLS 1.2-only client with cipher suites uvicorn's context accepts
            tls12 = (port, "airflow-apiserver", ca, ssl.TLSVersion.TLSv1_2, TLS12_CIPHERS)
            if tls12_accepted:
                with _tls(*tls12) as t:
                    assert t.version() == "TLSv1.2"
            else:
                with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION|protocol version"):
                    _tls(*tls12)
        finally:
            proc.terminate()
            proc.wait(timeout=20)


# ---------------------------------------------------------------- the file as Docker Compose reads it
COMPOSECHECK = ROOT / "scripts" / "compose" / "composecheck"


@pytest.fixture(scope="module")
def composecheck(tmp_path_factory) -> Path:
    """scripts/compose/composecheck built: compose-go, the loader of Docker Compose (pinned in its go.mod)."""
    exe = tmp_path_factory.mktemp("composecheck") / "composecheck"
    r = _run(["go", "build", "-buildvcs=false", "-o", str(exe), "."], cwd=COMPOSECHECK)
    assert r.returncode == 0, r.stderr
    return exe


def test_docker_compose_loads_the_file_as_written(composecheck, tmp_path):
    """The Compose Specification's schema, anchors and merges, interpolation, depends_on: what `docker compose
    config` checks before anything starts (AIRFLOW_UID unset: its default)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_UID", "COMPOSE_"))}
    r = _run([str(composecheck), str(ROOT / "docker-compose.yml")], env=env)
    assert r.returncode == 0, r.stderr
    project = json.loads(r.stdout)
    svc = project["services"]
    assert set(svc) == set(SERVICES)
    image = COMPOSE["x-airflow-common"]["image"]
    for name, s in svc.items():
        if s.get("image") == image:
            assert s["user"] == ("0:0" if name in ("tls-init", "secrets-init", "backup-init") else f"{AIRFLOW_UID}:0")
        for sec in s.get("secrets") or []:
            assert sec["source"] in project["secrets"], f"{name}: {sec['source']}"
    # $$ reaches the container as $ (the shell then reads the secret file)
    assert '-p "$(cat /run/elasticsearch-secrets/platform.pass)"' in svc["elasticsearch"]["command"][-1]
    assert '"$(cat /run/elasticsearch-secrets/platform.pass)"' in svc["elasticsearch"]["healthcheck"]["test"][-1]
    assert svc["airflow-apiserver"]["environment"]["OPENSSL_CONF"] == "/opt/airflow/scripts/openssl-tls13.cnf"
    assert set(svc["airflow-init"]["depends_on"]) >= {"tls-init", "secrets-init", "postgres"}
    # and it does refuse what Docker Compose refuses
    bad = tmp_path / "bad.yml"
    bad.write_text("services:\n  x:\n    image: busybox:1.36\n    depends_on: [nowhere]\n    bogus_key: 1\n")
    assert _run([str(composecheck), str(bad)], env=env).returncode != 0
