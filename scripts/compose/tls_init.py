"""One-shot `tls-init` of docker-compose (issue 12, docs/compose.md): the project CA of the compose stack and
one server certificate per TLS service, each written where, and owned as, its server needs it.

    python scripts/compose/tls_init.py        (the compose service runs it as root, in the platform image)

The same PKI code as `backup-init` (scripts/compose/backup_init.py: EC P-256 keys, a 10-year CA, 825-day server
certificates with serverAuth and DNS SANs, re-issued 30 days before they expire or when their names change),
but a CA of its own, as in the local stack (docs/tls.md: the project CA for the services, the backup CA for
`backup-s3`). The CA is made once and kept in volume `tls-pki`, which no other service mounts; its
certificate goes to every client. Idempotent: a second run changes nothing but the owners.

Names: every certificate carries the compose service name and ``localhost`` (the container's own healthcheck
and the ports published on the Docker host).

Output (``/out/<dir>``, one named volume each, mounted read-only by its consumer):

    ca/                   ca.crt                                     every client (Airflow: /opt/airflow/tls)
    postgres/             server.crt, server.key (600), ca.crt       root-owned: the postgres image's entrypoint
                                                                     installs them as postgres, mode 600
    redis/                server.crt, server.key (600), ca.crt       uid 999 (the redis image's `redis` user)
    kafka/                server.p12 + keystore.pass (600), ca.crt,  uid 1000 (`appuser`): the apache/kafka image
                          client.properties                          reads /etc/kafka/secrets/<files>
    elasticsearch/        server.crt, server.key (600), ca.crt       uid 1000 gid 0; Elasticsearch reads
                                                                     certificates only from its config dir
    minio/                public.crt, private.key (600), CAs/ca.crt  root (MinIO's --certs-dir layout)
    airflow-apiserver/    server.crt, server.key (600), ca.crt       AIRFLOW_UID:0 (the Airflow image's user)

Environment: TLS_INIT_OUT (default /out), TLS_INIT_PKI (default /pki), AIRFLOW_UID (50000), REDIS_UID/REDIS_GID
(999/1000), KAFKA_UID/KAFKA_GID (1000/1000), ES_UID/ES_GID (1000/0): the users of the pinned images.
"""
from __future__ import annotations

import importlib.util
import os
import secrets
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CA_CN = "retail-platform compose CA"
WHO = "tls-init"

_spec = importlib.util.spec_from_file_location("compose_backup_init", HERE / "backup_init.py")
pki = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pki)


def _uid(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def services() -> dict[str, dict]:
    """directory -> DNS names of its certificate, owner of its files, file layout (``pem`` or ``minio``/``kafka``)."""
    airflow = (_uid("AIRFLOW_UID", 50000), 0)
    return {
        "postgres": {"dns": ("postgres", "localhost"), "owner": None, "layout": "pem"},
        "redis": {"dns": ("redis", "localhost"), "owner": (_uid("REDIS_UID", 999), _uid("REDIS_GID", 1000)),
                  "layout": "pem"},
        "kafka": {"dns": ("kafka", "localhost"), "owner": (_uid("KAFKA_UID", 1000), _uid("KAFKA_GID", 1000)),
                  "layout": "kafka"},
        "elasticsearch": {"dns": ("elasticsearch", "localhost"), "owner": (_uid("ES_UID", 1000), _uid("ES_GID", 0)),
                          "layout": "pem"},
        "minio": {"dns": ("minio", "localhost"), "owner": None, "layout": "minio"},
        "airflow-apiserver": {"dns": ("airflow-apiserver", "localhost"), "owner": airflow, "layout": "pem"},
    }


# the Kafka client settings of the broker's own healthcheck (kafka-broker-api-versions.sh --command-config)
KAFKA_CLIENT_PROPERTIES = """# written by scripts/compose/tls_init.py: the healthcheck client (TLS 1.3, project CA)
security.protocol=SSL
ssl.protocol=TLSv1.3
ssl.enabled.protocols=TLSv1.3
ssl.truststore.type=PEM
ssl.truststore.location=/etc/kafka/secrets/ca.crt
ssl.endpoint.identification.algorithm=https
"""


def _kafka_keystore(d: Path, owner, reissued: bool) -> None:
    """server.p12 (key + certificate + CA, PKCS#12 as Kafka's keystore) and keystore.pass, both mode 600. The
    password only guards the key next to it (the image wants one): random, made with the keystore."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    p12, pw = d / "server.p12", d / "keystore.pass"
    if p12.exists() and pw.exists() and not reissued:
        if owner is not None and os.geteuid() == 0:
            os.chown(p12, *owner)
            os.chown(pw, *owner)
        return
    password = secrets.token_hex(24)
    key = serialization.load_pem_private_key((d / "server.key").read_bytes(), None)
    cert = x509.load_pem_x509_certificate((d / "server.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((d / "ca.crt").read_bytes())
    data = pkcs12.serialize_key_and_certificates(b"broker", key, cert, [ca],
                                                 serialization.BestAvailableEncryption(password.encode()))
    pki._write(pw, password + "\n", 0o600, owner)
    pki._write(p12, data, 0o600, owner)
    print(f"{WHO}: wrote the Kafka keystore {p12}", file=sys.stderr)


def run(out: Path, pki_dir: Path) -> None:
    ca = pki.ensure_ca(pki_dir, CA_CN, WHO)
    ca_pem = pki._pem_cert(ca[1])
    pki._write(out / "ca" / "ca.crt", ca_pem, 0o644)
    for name, s in services().items():
        d, owner = out / name, s["owner"]
        d.mkdir(parents=True, exist_ok=True)
        if s["layout"] == "minio":
            cert, key, ca_file = d / "public.crt", d / "private.key", d / "CAs" / "ca.crt"
        else:
            cert, key, ca_file = d / "server.crt", d / "server.key", d / "ca.crt"
        reissued = pki.ensure_leaf(ca, cert, key, s["dns"][0], s["dns"], server=True, owner=owner, who=WHO)
        pki._write(ca_file, ca_pem, 0o644, owner)
        if s["layout"] == "kafka":
            _kafka_keystore(d, owner, reissued)
            pki._write(d / "client.properties", KAFKA_CLIENT_PROPERTIES, 0o644, owner)
        if owner is not None and os.geteuid() == 0:
            os.chown(d, *owner)
        os.chmod(d, 0o700 if owner is not None else 0o755)
    print(f"{WHO}: CA and server certificates ready in {out} ({', '.join(services())})", file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1:]:
        sys.exit(__doc__)
    run(Path(os.environ.get("TLS_INIT_OUT", "/out")), Path(os.environ.get("TLS_INIT_PKI", "/pki")))
