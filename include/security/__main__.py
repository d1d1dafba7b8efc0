"""Key management commands (they print secrets to stdout: redirect into your secret store).

    python -m include.security new-keyring            # a fresh keyring (connection JSON)
    python -m include.security add-key KEY_ID         # current keyring + a new active key
    python -m include.security rotate [--dsn DSN]     # re-encrypt every row under the active key

``add-key`` and ``rotate`` read the current keyring from ``AIRFLOW_CONN_PLATFORM_ENCRYPTION``.
Rotation: add-key -> update the secret -> rotate -> (later) drop the old key from the secret.
"""
from __future__ import annotations

import argparse
import json
import sys

from include.security.crypto import Keyring


def _conn_json(kr: Keyring) -> str:
    return json.dumps({"conn_type": "generic", "extra": kr.to_dict()})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m include.security")
    sub = p.add_subparsers(dest="cmd", required=True)
    n = sub.add_parser("new-keyring")
    n.add_argument("--key-id", default="k1")
    a = sub.add_parser("add-key")
    a.add_argument("key_id")
    r = sub.add_parser("rotate")
    r.add_argument("--dsn")
    args = p.parse_args(argv)
    if args.cmd == "new-keyring":
        print(_conn_json(Keyring.generate(args.key_id)))
    elif args.cmd == "add-key":
        print(_conn_json(Keyring.from_connection().with_new_active_key(args.key_id)))
    else:
        from include.db.rotation import rotate_encryption_keys
        from include.db.session import connect

        kr = Keyring.from_connection()
        with connect(args.dsn) as conn:
            counts = rotate_encryption_keys(conn, kr)
        print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
