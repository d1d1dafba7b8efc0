"""docker-compose.yml checked statically (no Docker engine on these machines) against
airflow_settings.yaml, and the local settings loader checked against both."""
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
    assert airflow_url == "postgresql+psycopg://airflow:airflow@postgres:5432/airflow"
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
    assert COMPOSE["x-airflow-common"]["environment"]["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379")
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
    assert _depends(SERVICES["postgres"]) == {"backup-init": "service_completed_successfully",
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
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "/.local/" in ignored
    gen = (ROOT / "scripts" / "compose" / "secrets.sh").read_text()
    for sec, d in declared.items():
        assert set(d) == {"file"}, f"secret {sec}: only git-ignored files, never `environment:` values"
        assert d["file"] == f"./.local/compose-secrets/{sec}", d["file"]
        assert re.search(rf"^make_secret {sec} ", gen, flags=re.M), f"scripts/compose/secrets.sh does not make {sec}"
    tracked = subprocess.run(["git", "ls-files", ".local"], cwd=ROOT, capture_output=True, text=True).stdout
    assert tracked.strip() == "", f"files under .local/ are tracked by git: {tracked.split()}"
    assert ".local" in (ROOT / ".dockerignore").read_text().split(), ".local (secrets) would go to the build context"
    # MinIO of the backups takes its root credentials from the secrets, not from literals
    env = SERVICES["backup-s3"]["environment"]
    assert "MINIO_ROOT_USER" not in env and "MINIO_ROOT_PASSWORD" not in env
    targets = {s["target"]: s["source"] for s in SERVICES["backup-s3"]["secrets"]}
    assert targets[env["MINIO_ROOT_USER_FILE"]] == "backup_s3_access_key"
    assert targets[env["MINIO_ROOT_PASSWORD_FILE"]] == "backup_s3_secret_key"
    # no literal secret anywhere in the stack beyond the documented local-dev defaults
    allowed = {"minioadmin", "postgres", "airflow", "platform"}
    text = (ROOT / "docker-compose.yml").read_text() + AIRFLOW_DOCKERFILE.read_text() + PG_DOCKERFILE.read_text()
    for key, value in re.findall(r"(\w*(?:PASSWORD|SECRET|PASS|_KEY)\w*)\s*[:=]\s*['\"]?([^\s'\"]+)", text):
        if key.endswith("_FILE") or key in ("PGBACKREST_SHA256",):
            continue
        assert value in allowed, f"literal secret {key}={value} in the compose stack"
    assert not re.search(r"cipher-pass\s*=", text) and "cipher_pass:" not in (ROOT / "airflow_settings.yaml").read_text()


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
