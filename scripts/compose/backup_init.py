"""One-shot `backup-init` of docker-compose (issue 10, docs/retain.md "docker-compose"): the stack's own CA,
TLS certificates, and the two pgbackrest.conf rendered from connection ``platform_backup``.

    python scripts/compose/backup_init.py            (the compose service runs it as root)

Runs in the platform image (Python ``cryptography`` and PyYAML are there) as root, since only root can read
the compose secrets whatever their owner on the host (/run/secrets/<name>, mode 600 files of the operator),
and only root can hand each file to the user that needs it. Idempotent: the CA is created once and kept;
a leaf certificate is issued again when it is missing, expires within 30 days or names other hosts; the
configurations are rendered on every run (so a changed connection takes effect with the next `up`).

Named volumes it writes (each mounted read-only by its consumers, docker-compose.yml):

    /pki                    backup-pki: ca.key, ca.crt                      (nobody else mounts it)
    /out/ca                 backup-ca: ca.crt                               (mc of backup-s3 / backup-s3-init)
    /out/backup-s3          backup-s3-certs: public.crt, private.key, CAs/ca.crt      (MinIO --certs-dir)
    /out/pgbackrest-server  pgbackrest-server-conf: pgbackrest.conf, tls/{ca.crt,server.crt,server.key}
                            (postgres image: its entrypoint installs them as postgres, mode 600)
    /out/pgbackrest-client  pgbackrest-client-conf: pgbackrest.conf, tls/{ca.crt,client.crt,client.key}
                            (Airflow workers, at /etc/pgbackrest; owned by AIRFLOW_UID:0, mode 600)

Secrets read (compose ``secrets:``, files under .local/compose-secrets/ made by scripts/compose/secrets.sh):
backup_s3_access_key, backup_s3_secret_key, pgbackrest_repo1_cipher_pass, pgbackrest_repo2_cipher_pass.
"""
from __future__ import annotations

import datetime as dt
import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECRETS_DIR = Path(os.environ.get("PLATFORM_SECRETS_DIR", "/run/secrets"))
SECRET_NAMES = ("backup_s3_access_key", "backup_s3_secret_key",
                "pgbackrest_repo1_cipher_pass", "pgbackrest_repo2_cipher_pass")

CA_CN = "retail-platform compose backup CA"
CA_DAYS = 3650
LEAF_DAYS = 825
RENEW_BEFORE = dt.timedelta(days=30)
# DNS names of the TLS servers (compose service names; pgBackRest matches DNS SANs only, never IP SANs).
# `localhost` lets the MinIO container's own healthcheck (`mc ready local`) verify the certificate too.
BACKUP_S3_NAMES = ("backup-s3", "localhost")


def _settings():
    spec = importlib.util.spec_from_file_location("platform_settings", ROOT / "scripts" / "settings.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def read_secrets(directory: Path = SECRETS_DIR) -> dict[str, str]:
    out, missing = {}, []
    for name in SECRET_NAMES:
        f = directory / name
        value = f.read_text().strip() if f.exists() else ""
        if not value:
            missing.append(str(f))
        out[name] = value
    if missing:
        sys.exit(f"backup-init: missing or empty secret(s) {', '.join(missing)}: run scripts/compose/secrets.sh "
                 "on the Docker host before `docker compose up` (docs/retain.md, docker-compose)")
    if len(out["backup_s3_secret_key"]) < 8:
        sys.exit("backup-init: backup_s3_secret_key must have at least 8 characters (MinIO refuses shorter)")
    return out


# ------------------------------------------------------------------------------------------- PKI
def _write(path: Path, data: bytes | str, mode: int, owner: tuple[int, int] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
    os.chmod(tmp, mode)
    if owner is not None and os.geteuid() == 0:
        os.chown(tmp, *owner)
    os.replace(tmp, path)


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def ensure_ca(pki: Path, cn: str = CA_CN, who: str = "backup-init"):
    """(ca_key, ca_cert): loaded from ``pki`` or created there (ca.key 600, ca.crt 644). ``cn`` names a new CA
    (scripts/compose/tls_init.py makes the project CA of the other services with the same code)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    kf, cf = pki / "ca.key", pki / "ca.crt"
    if kf.exists() and cf.exists():
        return (serialization.load_pem_private_key(kf.read_bytes(), None), x509.load_pem_x509_certificate(cf.read_bytes()))
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write(kf, _pem_key(key), 0o600)
    _write(cf, _pem_cert(cert), 0o644)
    print(f"{who}: created the CA ({cn}) in {pki}", file=sys.stderr)
    return key, cert


def issue(ca, cn: str, dns: tuple[str, ...], *, server: bool):
    """(key, cert) signed by ``ca``: a server certificate (serverAuth, DNS SANs) or a client one (clientAuth;
    the pgBackRest TLS server authorizes clients by their CN, tls-server-auth)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key, ca_cert = ca
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
         .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_agreement=True,
                                      content_commitment=False, data_encipherment=False, key_cert_sign=False,
                                      crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                               else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if dns:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
    return key, b.sign(ca_key, hashes.SHA256())


def _cert_ok(cert_file: Path, key_file: Path, ca_cert, cn: str, dns: tuple[str, ...]) -> bool:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    if not (cert_file.exists() and key_file.exists()):
        return False
    try:
        c = x509.load_pem_x509_certificate(cert_file.read_bytes())
        c.verify_directly_issued_by(ca_cert)
        names = set(c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                    .get_values_for_type(x509.DNSName)) if dns else set()
    except Exception:  # noqa: BLE001  (anything unreadable or foreign is issued again)
        return False
    return (c.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) > RENEW_BEFORE and names == set(dns)
            and c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn)


def ensure_leaf(ca, cert_file: Path, key_file: Path, cn: str, dns: tuple[str, ...], *, server: bool,
                owner: tuple[int, int] | None = None, who: str = "backup-init") -> bool:
    """Issue the pair unless a valid one is there; True when it was (re)issued."""
    if _cert_ok(cert_file, key_file, ca[1], cn, dns):
        if owner is not None and os.geteuid() == 0:  # the consumer's uid may have changed (AIRFLOW_UID)
            os.chown(key_file, *owner)
            os.chown(cert_file, *owner)
        return False
    key, cert = issue(ca, cn, dns, server=server)
    _write(key_file, _pem_key(key), 0o600, owner)
    _write(cert_file, _pem_cert(cert), 0o644, owner)
    print(f"{who}: issued {cert_file} (CN={cn}, DNS={','.join(dns) or '-'})", file=sys.stderr)
    return True


# ------------------------------------------------------------------------------------------- main
def run(out: Path, pki: Path, secrets_dir: Path = SECRETS_DIR, airflow_uid: int | None = None) -> None:
    st = _settings()
    conn = st.compose_connections()[st.BACKUP_CONN]
    x = conn["extra"]
    sec = read_secrets(secrets_dir)
    airflow_uid = int(os.environ.get("AIRFLOW_UID", "50000")) if airflow_uid is None else airflow_uid
    client_owner = (airflow_uid, 0)  # the official Airflow image runs as AIRFLOW_UID with group 0

    ca = ensure_ca(pki)
    ca_pem = _pem_cert(ca[1])
    endpoint_host = x["endpoint_url"].split("://", 1)[1].split(":", 1)[0].split("/", 1)[0]
    if endpoint_host not in BACKUP_S3_NAMES:
        sys.exit(f"backup-init: endpoint_url host {endpoint_host!r} of {st.BACKUP_CONN} is not in the backup-s3 "
                 f"certificate's names {BACKUP_S3_NAMES}")

    # MinIO: <certs-dir>/public.crt, private.key, CAs/
    s3 = out / "backup-s3"
    ensure_leaf(ca, s3 / "public.crt", s3 / "private.key", BACKUP_S3_NAMES[0], BACKUP_S3_NAMES, server=True)
    _write(s3 / "CAs" / "ca.crt", ca_pem, 0o644)
    _write(out / "ca" / "ca.crt", ca_pem, 0o644)

    passes = {1: sec["pgbackrest_repo1_cipher_pass"], 2: sec["pgbackrest_repo2_cipher_pass"]}
    keys = {"s3_key": sec["backup_s3_access_key"], "s3_key_secret": sec["backup_s3_secret_key"]}
    tls = st.compose_tls_paths(conn)
    config_dir = Path(x["config"]).parent

    def local(path: str, base: Path) -> Path:  # a path of the consumer's /etc/pgbackrest, inside ``base``
        return base / Path(path).relative_to(config_dir)

    srv = out / "pgbackrest-server"
    ensure_leaf(ca, local(tls["server_cert"], srv), local(tls["server_key"], srv), x["pg1_host"], (x["pg1_host"],),
                server=True)
    _write(local(tls["ca"], srv), ca_pem, 0o644)
    _write(srv / "pgbackrest.conf", st.render_compose_pgbackrest_conf(conn, "server", cipher_pass=passes, **keys),
           0o600)

    cli = out / "pgbackrest-client"
    ensure_leaf(ca, local(tls["client_cert"], cli), local(tls["client_key"], cli), st.COMPOSE_TLS_CLIENT_CN, (),
                server=False, owner=client_owner)
    _write(local(tls["ca"], cli), ca_pem, 0o644, client_owner)
    _write(cli / "pgbackrest.conf", st.render_compose_pgbackrest_conf(conn, "client", cipher_pass=passes, **keys),
           0o600, client_owner)
    if os.geteuid() == 0:
        for d in (cli, local(tls["client_key"], cli).parent):
            os.chown(d, *client_owner)
            os.chmod(d, 0o700)
    print(f"backup-init: pgbackrest.conf (server, client) rendered for stanza {x['stanza']}, endpoint "
          f"{x['endpoint_url']}, TLS server {x['pg1_host']}:{x['pg1_host_port']}", file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1:]:
        sys.exit(__doc__)
    run(Path(os.environ.get("BACKUP_INIT_OUT", "/out")), Path(os.environ.get("BACKUP_INIT_PKI", "/pki")))
