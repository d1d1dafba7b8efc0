"""Backup and restore throughput of pgBackRest (this project's backups) next to a plain pg_basebackup of
the same cluster, in the same run.

    source .local/env.sh && python bench/backup.py [--scale 70] [--keep]

A scratch cluster (initdb, spare port, WAL archiving on) is filled with pgbench data to at least 1 GB
(scale 70 is about 1.05 GB), then:
  1. pgBackRest full backup into the TLS S3 API server of service backup-s3 (zstd + AES-256, process-max 2,
     its own repository path in bucket platform-backups),
  2. pg_basebackup (plain format, WAL streamed) of the same cluster to local disk,
  3. pgBackRest restore into a fresh directory, and the "restore" of the pg_basebackup copy (cp -a),
and prints MB/s (database size / wall time) of each and the ratio pgBackRest / pg_basebackup. Everything
is removed afterwards (cluster, directories, repository objects). Results also go to
bench/results/backup.json (git-ignored).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from include.connections import get_connection  # noqa: E402
from include.retain.drill import _pg_bin, spare_port  # noqa: E402
from include.retain.pgbackrest import BACKUP_CONN, _as_user, chown_to  # noqa: E402

USER = "postgres"


def sh(argv: list[str], **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([*_as_user(USER), *argv], capture_output=True, text=True, cwd="/", **kw)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed ({p.returncode}): {(p.stdout + p.stderr)[-3000:]}")
    return p


def timed(argv: list[str]) -> float:
    t0 = time.monotonic()
    sh(argv)
    return time.monotonic() - t0


def du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout.split()[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=int, default=70, help="pgbench scale (70 = about 1.05 GB)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directories")
    args = ap.parse_args()

    conn = get_connection(BACKUP_CONN)
    x = conn.extra
    base_conf = Path(x["config"]).read_text()
    run_id = uuid.uuid4().hex[:8]
    work = Path(x["config"]).parent.parent / "bench-backup" / run_id
    work.mkdir(parents=True)
    for d in (work.parent, work):
        chown_to(d, USER)
    pgdata, sock, restored, basecopy, baserest = (work / n for n in ("data", "sock", "restored", "basebackup",
                                                                    "basebackup-restored"))
    sock.mkdir()
    chown_to(sock, USER)
    port = spare_port(55600, 55700)
    bin_ = _pg_bin()
    stanza, repo_path = "bench", f"/bench-{run_id}"
    conf = work / "pgbackrest.conf"
    lines = []
    for ln in base_conf.splitlines():
        if ln.startswith("repo2-") or ln.startswith("["):
            if ln.startswith("[global]"):
                lines.append(ln)
            continue
        if ln.startswith("repo1-path="):
            ln = f"repo1-path={repo_path}"
        if ln.startswith(("lock-path=", "spool-path=", "log-path=")):
            key = ln.split("=", 1)[0]
            (work / key).mkdir(exist_ok=True)
            chown_to(work / key, USER)
            ln = f"{key}={work / key}"
        if ln.startswith("archive-"):
            continue
        lines.append(ln)
    lines += [f"[{stanza}]", f"pg1-path={pgdata}", f"pg1-port={port}", f"pg1-socket-path={sock}", "pg1-user=postgres"]
    conf.write_text("\n".join(lines) + "\n")
    os.chmod(conf, 0o600)
    chown_to(conf, USER)
    pgbr = ["pgbackrest", f"--config={conf}", f"--stanza={stanza}"]
    result: dict = {"scale": args.scale, "process_max": 2, "compress": "zst", "cipher": "aes-256-cbc"}
    started = False
    try:
        print(f"[bench] initdb {pgdata} (port {port})", file=sys.stderr)
        sh([str(bin_ / "initdb"), "-D", str(pgdata), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--locale=C.UTF-8"])
        with open(pgdata / "postgresql.conf", "a") as f:
            f.write(f"\nport = {port}\nlisten_addresses = ''\nunix_socket_directories = '{sock}'\n"
                    f"wal_level = replica\narchive_mode = on\n"
                    f"archive_command = 'pgbackrest --config={conf} --stanza={stanza} archive-push %p'\n"
                    "shared_buffers = 256MB\nmax_wal_size = 4GB\ncheckpoint_timeout = 30min\n")
        sh([str(bin_ / "pg_ctl"), "-D", str(pgdata), "-l", str(work / "postgres.log"), "-w", "start"])
        started = True
        print(f"[bench] pgbench -i -s {args.scale}", file=sys.stderr)
        result["load_seconds"] = round(timed([str(bin_ / "pgbench"), "-h", str(sock), "-p", str(port), "-U",
                                              "postgres", "-i", "-q", "-s", str(args.scale), "postgres"]), 1)
        size = int(sh([str(bin_ / "psql"), "-h", str(sock), "-p", str(port), "-U", "postgres", "-Atc",
                       "CHECKPOINT; SELECT sum(pg_database_size(datname)) FROM pg_database"]).stdout.split()[-1])
        result["database_bytes"] = size
        mb = size / 1e6
        print(f"[bench] cluster holds {mb:.0f} MB", file=sys.stderr)
        if size < 1_000_000_000:
            print(f"[bench] WARNING: below 1 GB, raise --scale", file=sys.stderr)
        sh([*pgbr, "stanza-create"])

        print("[bench] pgBackRest full backup -> S3 (TLS, zstd, AES-256)", file=sys.stderr)
        result["pgbackrest_backup_seconds"] = round(timed([*pgbr, "--repo=1", "--type=full", "backup"]), 2)
        info = json.loads(sh([*pgbr, "--output=json", "info"]).stdout)[0]["backup"][-1]
        result["pgbackrest_repo_bytes"] = info["info"]["repository"]["size"]

        print("[bench] pg_basebackup (plain, WAL streamed) -> local disk", file=sys.stderr)
        result["basebackup_seconds"] = round(timed([str(bin_ / "pg_basebackup"), "-h", str(sock), "-p", str(port),
                                                    "-U", "postgres", "-D", str(basecopy), "-Fp", "-X", "stream",
                                                    "-c", "fast"]), 2)
        result["basebackup_bytes"] = du(basecopy)

        print("[bench] pgBackRest restore <- S3", file=sys.stderr)
        result["pgbackrest_restore_seconds"] = round(timed([*pgbr, "--repo=1", f"--pg1-path={restored}",
                                                            "--archive-mode=off", "restore"]), 2)
        print("[bench] pg_basebackup 'restore' (cp -a of the copy)", file=sys.stderr)
        result["basebackup_restore_seconds"] = round(timed(["cp", "-a", str(basecopy), str(baserest)]), 2)
    finally:
        if started:
            subprocess.run([*_as_user(USER), str(bin_ / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "stop"],
                           capture_output=True, cwd="/")
        try:
            import boto3

            s3 = boto3.client("s3", endpoint_url=x["endpoint_url"], region_name=x["repo1_region"],
                              verify=x.get("ca_file") or True, aws_access_key_id=conn.login,
                              aws_secret_access_key=conn.password)
            bucket = x["repo1_bucket"]
            keys, token = [], None
            while True:
                kw = {"Bucket": bucket, "Prefix": repo_path.lstrip("/") + "/"}
                if token:
                    kw["ContinuationToken"] = token
                r = s3.list_objects_v2(**kw)
                keys += [o["Key"] for o in r.get("Contents", [])]
                if not r.get("IsTruncated"):
                    break
                token = r["NextContinuationToken"]
            for i in range(0, len(keys), 1000):
                s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]]})
        except Exception as e:  # noqa: BLE001 - cleanup must not hide the result
            print(f"[bench] cleanup of the repository failed: {e}", file=sys.stderr)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    mb = result["database_bytes"] / 1e6
    rows = [("pgBackRest backup (S3, zstd+AES)", result["pgbackrest_backup_seconds"]),
            ("pg_basebackup (local, plain)", result["basebackup_seconds"]),
            ("pgBackRest restore (from S3)", result["pgbackrest_restore_seconds"]),
            ("pg_basebackup restore (cp -a)", result["basebackup_restore_seconds"])]
    print(f"\ndatabase: {mb:.0f} MB (pgbench scale {args.scale}); repository holds "
          f"{result['pgbackrest_repo_bytes'] / 1e6:.1f} MB after compression+encryption; "
          f"pg_basebackup copy {result['basebackup_bytes'] / 1e6:.0f} MB")
    for name, secs in rows:
        print(f"  {name:<36} {secs:8.2f} s  {mb / secs:8.1f} MB/s")
        result[name] = round(mb / secs, 1)
    rb = result["basebackup_seconds"] / result["pgbackrest_backup_seconds"]
    rr = result["basebackup_restore_seconds"] / result["pgbackrest_restore_seconds"]
    result["ratio_backup"], result["ratio_restore"] = round(rb, 3), round(rr, 3)
    print(f"ratio pgBackRest / pg_basebackup throughput: backup {rb:.2f}x, restore {rr:.2f}x")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "backup.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
