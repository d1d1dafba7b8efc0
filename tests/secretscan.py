"""Every key of the stack, in the forms a leak would take, and a scan of texts for them (issue 12 item 4:
no key in a log). Used by the secret scans of tests/access (API traffic) and tests/ui (a full pipeline run).

Keys: Airflow's JWT signing, Fernet and session keys (their ``_CMD`` files), the column-encryption keyring
and blind-index key, the privacy HMAC key, the API's database password, pgBackRest's cipher passphrases,
plus what a test adds (its users' password, its own login role's password). Each is also looked for as
hex (when it is base64 of at least 16 bytes) and as base64."""
from __future__ import annotations

import base64
import json
import os
import shlex
from pathlib import Path


def _cmd_value(option: str) -> str:
    return Path(shlex.split(os.environ[f"AIRFLOW__{option}_CMD"])[1]).read_text()


def stack_secrets(**extra: str) -> dict[str, str]:
    """name -> value of every key of the running stack (and ``extra``), with their hex/base64 forms."""
    enc = json.loads(os.environ["AIRFLOW_CONN_PLATFORM_ENCRYPTION"])["extra"]
    backup = json.loads(os.environ["AIRFLOW_CONN_PLATFORM_BACKUP"]).get("extra", {})
    out = {"airflow jwt signing key": _cmd_value("API_AUTH__JWT_SECRET"),
           "airflow fernet key": _cmd_value("CORE__FERNET_KEY"),
           "airflow session key": _cmd_value("API__SECRET_KEY"),
           "index key": enc["index_key"],
           "privacy hmac key": json.loads(os.environ["AIRFLOW_CONN_PLATFORM_PRIVACY_HMAC"])["password"],
           "api database password": json.loads(os.environ["AIRFLOW_CONN_PLATFORM_API_POSTGRES"])["password"],
           **{f"encryption key {kid}": key for kid, key in enc["keys"].items()},
           **{f"pgbackrest {k}": v for k, v in backup.items() if k.endswith("_cipher_pass")},
           **extra}
    assert any(k.startswith("pgbackrest repo") for k in out), "platform_backup has no cipher passphrases"
    for name, value in list(out.items()):
        try:
            raw = base64.b64decode(value, validate=True)
            if len(raw) >= 16:
                out[f"{name} (hex)"] = raw.hex()
        except ValueError:
            pass
        out[f"{name} (base64)"] = base64.b64encode(value.encode()).decode().rstrip("=")
    return out


def leaks(secrets: dict[str, str], haystacks: dict[str, str]) -> list[tuple[str, str]]:
    """(secret name, where) for every secret found in a haystack."""
    return [(name, where) for name, secret in secrets.items() for where, text in haystacks.items()
            if secret and secret in text]
