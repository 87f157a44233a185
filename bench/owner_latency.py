#!/usr/bin/env python3
"""What an owner sees while we back its database up: its commit latency and any SQLITE_BUSY.

    /usr/bin/python3 bench/owner_latency.py --cli build/bench/cli/sqlite_backup [--db-mib 64]

A writer process (rollback journal, journal_mode=DELETE, busy timeout 5 s as Python's default)
commits small transactions back to back and records each commit's duration. For each
--source-lock policy in turn, and once without any backup, the CLI backs the database up in a
loop for --seconds; the report gives the writer's commit latency (median, p99, max), its
SQLITE_BUSY count, and the backups' count, failures and median time. One table, markdown, on
stdout.
"""

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRITER = r"""
import json, os, random, signal, sqlite3, sys, time
db, out, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
conn = sqlite3.connect(db, isolation_level=None, timeout=5.0)
rng = random.Random(7)
latencies, busy = [], 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    start = time.perf_counter()
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE t SET v = ? WHERE id = ?", (os.urandom(200), rng.randrange(1, 20000)))
        conn.execute("INSERT INTO log (x) VALUES (?)", (os.urandom(100),))
        conn.execute("COMMIT")
    except sqlite3.OperationalError as error:
        if "locked" in str(error) or "busy" in str(error):
            busy += 1
            conn.execute("ROLLBACK") if conn.in_transaction else None
            continue
        raise
    latencies.append(time.perf_counter() - start)
json.dump({"latencies": latencies, "busy": busy}, open(out, "w"))
"""


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cli", required=True)
    parser.add_argument("--db-mib", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--scratch", type=Path, default=Path(os.environ.get("BENCH_DIR", "/var/tmp")))
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="sqlite_backup_latency-", dir=args.scratch))
    try:
        db = scratch / "db.sqlite"
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
        conn.execute("CREATE TABLE log (id INTEGER PRIMARY KEY, x BLOB)")
        rows = (args.db_mib << 20) // 3300
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t (v) VALUES (?)", ((os.urandom(3000),) for _ in range(rows)))
        conn.execute("COMMIT")
        conn.close()
        size = db.stat().st_size
        print(f"### What the owner sees: {size / 2**20:.0f} MiB rollback-journal database, "
              f"a writer committing back to back, {args.seconds:.0f} s per row\n")
        print("| Backups running | Owner commits | p50 | p99 | max | Owner SQLITE_BUSY "
              "| Backups (failed) | Backup median |")
        print("|---|--:|--:|--:|--:|--:|--:|--:|")
        for policy in (None, "never", "when-needed", "always"):
            out = scratch / "writer.json"
            writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(out),
                                       str(args.seconds)])
            times, failed = [], 0
            if policy is not None:
                end = time.monotonic() + args.seconds
                while time.monotonic() < end:
                    dst = scratch / "copy.sqlite"
                    if dst.exists():
                        dst.unlink()
                    started = time.perf_counter()
                    done = subprocess.run([args.cli, f"--source-lock={policy}", "--no-sync",
                                           str(db), str(dst)], capture_output=True)
                    times.append(time.perf_counter() - started)
                    failed += done.returncode != 0
            writer.wait()
            record = json.load(open(out))
            lat = record["latencies"]
            label = "none (idle baseline)" if policy is None else f"`--source-lock={policy}`"
            backups = f"{len(times)} ({failed})" if policy else "-"
            median = f"{statistics.median(times) * 1000:.0f} ms" if times else "-"
            print(f"| {label} | {len(lat)} | {percentile(lat, 0.5) * 1000:.1f} ms | "
                  f"{percentile(lat, 0.99) * 1000:.1f} ms | {max(lat) * 1000:.1f} ms | "
                  f"{record['busy']} | {backups} | {median} |")
        idle = scratch / "idle.sqlite"
        started = time.perf_counter()
        subprocess.run([args.cli, "--no-sync", str(db), str(idle)], check=True,
                       capture_output=True)
        print(f"\nIdle backup of the same database (no writer): "
              f"{(time.perf_counter() - started) * 1000:.0f} ms")
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
