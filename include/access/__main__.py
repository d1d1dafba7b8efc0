"""Users, stores and the Airflow side of access (issue 12).

    python -m include.access users add EMAIL --role store_manager --store STORE_ID [--password-stdin]
    python -m include.access users add EMAIL --role regional_coordinator --region REGION_ID
    python -m include.access users add EMAIL --role admin
    python -m include.access users disable USER          # USER: id or email; revokes its tokens
    python -m include.access users enable USER
    python -m include.access users set-role USER ROLE [--store STORE_ID | --region REGION_ID]
    python -m include.access users set-password USER [--password-stdin]   # ends its sessions
    python -m include.access stores add NAME [--location L] [--region REGION_ID] [--manager USER]
    python -m include.access stores assign-manager STORE_ID USER|--none
    python -m include.access stores set-region STORE_ID REGION_ID|--none
    python -m include.access stores deactivate STORE_ID
    python -m include.access sync-roles [--no-users]     # FAB roles, permissions and users (idempotent)
    python -m include.access api-login                   # the API's database login role (idempotent)

Passwords are read from stdin (``--password-stdin``) or prompted, never taken from the command line.
Users commands update Airflow's FAB user at once (``--no-airflow`` skips it; ``sync-roles`` catches
up). Output: one JSON object on stdout. Exit codes: 0 ok, 2 bad input, 3 Airflow not updated.
"""
from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import sys

from include.access import accounts
from include.access.permissions import ROLES


def _password(args) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise accounts.AccountError("no terminal to prompt for the password: use --password-stdin")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise accounts.AccountError("the two passwords differ")
    return first


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m include.access", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="area", required=True)
    u = sub.add_parser("users").add_subparsers(dest="cmd", required=True)
    a = u.add_parser("add")
    a.add_argument("email")
    a.add_argument("--role", required=True, choices=ROLES)
    for c in (a, s := u.add_parser("set-role")):
        c.add_argument("--store")
        c.add_argument("--region")
    s.add_argument("user")
    s.add_argument("role", choices=ROLES)
    for name in ("disable", "enable", "set-password"):
        u.add_parser(name).add_argument("user")
    for c in (a, u.choices["set-password"]):
        c.add_argument("--password-stdin", action="store_true")
    for c in u.choices.values():
        c.add_argument("--no-airflow", action="store_true", help="do not update Airflow's FAB user")
    st = sub.add_parser("stores").add_subparsers(dest="cmd", required=True)
    sa = st.add_parser("add")
    sa.add_argument("name")
    sa.add_argument("--location")
    sa.add_argument("--region")
    sa.add_argument("--manager")
    am = st.add_parser("assign-manager")
    am.add_argument("store")
    am.add_argument("user", nargs="?")
    am.add_argument("--none", action="store_true", help="the store has no manager any more")
    sr = st.add_parser("set-region")
    sr.add_argument("store")
    sr.add_argument("region", nargs="?")
    sr.add_argument("--none", action="store_true")
    st.add_parser("deactivate").add_argument("store")
    sync = sub.add_parser("sync-roles")
    sync.add_argument("--no-users", action="store_true")
    sub.add_parser("api-login")
    return p


def _users(conn, keyring, r, args) -> tuple[dict, list[tuple[str, int]]]:
    """The command's output, and the (jti, exp) of the tokens it revoked (for Airflow's list)."""
    from include.access import tokens

    if args.cmd == "add":
        password = _password(args)
        uid = accounts.add_user(conn, keyring, args.email, password, args.role,
                                store_id=args.store, region_id=args.region)
        return {"user_id": str(uid), "role": args.role}, []
    uid = accounts.resolve_user(conn, keyring, args.user)
    out = {"user_id": str(uid)}
    if args.cmd == "set-role":
        accounts.set_role(conn, uid, args.role, store_id=args.store, region_id=args.region)
        out["role"] = args.role
    elif args.cmd in ("disable", "enable"):
        accounts.set_active(conn, uid, args.cmd == "enable")
        out["is_active"] = args.cmd == "enable"
    else:
        accounts.set_password(conn, uid, _password(args))
    revoked = []
    if args.cmd in ("disable", "set-password", "set-role"):
        revoked = tokens.revoke_user_tokens(conn, r, uid, reason=f"users {args.cmd}")
        out["tokens_revoked"] = len(revoked)
    return out, revoked


def _stores(conn, keyring, args) -> dict:
    if args.cmd == "add":
        manager = accounts.resolve_user(conn, keyring, args.manager) if args.manager else None
        sid = accounts.add_store(conn, args.name, location=args.location, region_id=args.region,
                                 manager_id=manager)
        return {"store_id": str(sid)}
    if args.cmd == "assign-manager":
        if bool(args.user) == bool(args.none):
            raise accounts.AccountError("give either USER or --none")
        manager = accounts.resolve_user(conn, keyring, args.user) if args.user else None
        accounts.assign_manager(conn, args.store, manager)
        return {"store_id": args.store, "manager_id": str(manager) if manager else None}
    if args.cmd == "set-region":
        if bool(args.region) == bool(args.none):
            raise accounts.AccountError("give either REGION_ID or --none")
        accounts.set_region(conn, args.store, args.region)
        return {"store_id": args.store, "region_id": args.region}
    accounts.deactivate_store(conn, args.store)
    return {"store_id": args.store, "is_active": False}


@contextlib.contextmanager
def _airflow_logs_to_stderr():
    """Airflow logs to stdout (bound when it is first imported); stdout is kept for the JSON result."""
    out, sys.stdout = sys.stdout, sys.stderr
    try:
        yield
    finally:
        sys.stdout = out


def _sync_airflow(conn, user_ids=None) -> int:
    from include.access import airflow_sync

    users = airflow_sync.platform_users(conn)
    if user_ids is not None:
        users = [u for u in users if str(u.user_id) in user_ids]
    return airflow_sync.sync_users(users)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from include.db.session import connect

    if args.area == "api-login":
        from include.access.dbroles import ensure_api_login

        with connect() as conn:
            out = {"login_role": ensure_api_login(conn)}
            conn.commit()
        print(json.dumps(out))
        return 0
    if args.area == "sync-roles":
        with _airflow_logs_to_stderr():
            from include.access import airflow_sync

        with _airflow_logs_to_stderr():
            out = {"roles": airflow_sync.sync_roles()}
            if not args.no_users:
                with connect() as conn:
                    out["users_changed"] = _sync_airflow(conn)
        print(json.dumps(out))
        return 0

    from include.search.clients import redis_client
    from include.security.crypto import Keyring

    keyring = Keyring.from_connection()
    revoked: list[tuple[str, int]] = []
    try:
        with connect() as conn:
            if args.area == "users":
                out, revoked = _users(conn, keyring, redis_client(), args)
            else:
                out = _stores(conn, keyring, args)
            conn.commit()
    except accounts.AccountError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - database refusals (triggers, constraints) name the problem
        import psycopg

        if isinstance(e, psycopg.Error) and e.diag.message_primary:
            print(f"error: {e.diag.message_primary}", file=sys.stderr)
            return 2
        raise
    if args.area == "users" and not args.no_airflow:
        try:
            with _airflow_logs_to_stderr(), connect() as conn:
                out["airflow_users_changed"] = _sync_airflow(conn, {out["user_id"]})
        except Exception as e:  # noqa: BLE001
            print(json.dumps(out))
            print(f"error: the platform user is saved, Airflow's user is not ({e}); "
                  "run `python -m include.access sync-roles`", file=sys.stderr)
            return 3
        if revoked:
            try:
                with _airflow_logs_to_stderr():
                    from include.access.airflow_sync import revoke_in_airflow

                    out["airflow_tokens_revoked"] = revoke_in_airflow(revoked)
            except Exception as e:  # noqa: BLE001
                print(json.dumps(out))
                print(f"error: {len(revoked)} token(s) are revoked on the platform's list (its API and dashboards "
                      f"refuse them) but not on Airflow's ({e}): Airflow's own REST API accepts them until "
                      "they expire", file=sys.stderr)
                return 3
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
