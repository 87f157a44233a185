#!/usr/bin/env python3
"""How often, and how fast, backups finish against an owner in locking_mode=EXCLUSIVE.

    /usr/bin/python3 bench/exclusive_owner.py --cli build/bench/cli/sqlite_backup \
        [--rates 120,300] [--backups 12]

Such an owner (rollback journal, journal_mode=DELETE, synchronous=FULL) holds SQLite's lock
from its first write on, so no reader's lock can hold its commits off: a copy validates only
when it fits between two of its commits (or sees one counted commit it can roll back). A
writer process builds a 20 MiB database (20000 rows of 900 bytes), then commits at a fixed
rate, each commit rewriting five random rows in place. For each rate the CLI (--no-sync)
backs the database up --backups times in a row; the report gives how many finished,
their median and longest time, and the median of five backups of the same database once the
owner is gone (idle). One markdown table on stdout.
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRITER = r"""
import random, sqlite3, sys, time
db, seconds, rate = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
conn = sqlite3.connect(db, isolation_level=None)
conn.execute("PRAGMA journal_mode=DELETE")
conn.execute("PRAGMA locking_mode=EXCLUSIVE")
conn.execute("PRAGMA synchronous=FULL")
conn.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)")
if conn.execute("SELECT count(*) FROM t").fetchone()[0] == 0:
    conn.execute("BEGIN")
    for i in range(20000):
        conn.execute("INSERT INTO t VALUES(?, randomblob(900))", (i,))
    conn.execute("COMMIT")
print("ready", flush=True)
rng = random.Random(1)
start = time.monotonic()
commits = 0
while time.monotonic() < start + seconds:
    conn.execute("BEGIN")
    for _ in range(5):
        conn.execute("UPDATE t SET v = randomblob(900) WHERE id = ?", (rng.randrange(20000),))
    conn.execute("COMMIT")
    commits += 1
    pause = start + commits / rate - time.monotonic()
    if pause > 0:
        time.sleep(pause)
print(f"{commits / (time.monotonic() - start):.0f}", flush=True)
"""


def measure(cli: str, rate: float, backups: int, folder: Path) -> dict:
    source = folder / f"owner-{rate:g}.sqlite"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(source), str(backups * 6 + 10), str(rate)],
        stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    if writer.stdout.readline().strip() != "ready":
        raise SystemExit("the writer did not start")
    time.sleep(1.0)  # into its steady pace
    times, finished = [], 0
    for _ in range(backups):
        destination = folder / "copy.sqlite"
        destination.unlink(missing_ok=True)
        began = time.monotonic()
        result = subprocess.run([cli, "--no-sync", str(source), str(destination)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.monotonic() - began)
        finished += result.returncode == 0
    writer.terminate()
    writer.wait()
    # The same database with no owner: the idle time the median under load is judged against.
    idle = []
    for _ in range(5):
        destination.unlink(missing_ok=True)
        began = time.monotonic()
        subprocess.run([cli, "--no-sync", str(source), str(destination)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        idle.append(time.monotonic() - began)
    return {"rate": rate, "finished": finished, "backups": backups,
            "median": statistics.median(times), "longest": max(times),
            "idle": statistics.median(idle)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", required=True, help="the sqlite_backup executable")
    parser.add_argument("--rates", default="120,300", help="commits a second, comma-separated")
    parser.add_argument("--backups", type=int, default=12, help="backups per rate")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="exclusive_owner-", dir="/var/tmp"))
    try:
        rows = [measure(args.cli, float(rate), args.backups, folder)
                for rate in args.rates.split(",")]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("| commits a second | finished | median | longest | idle | median / idle |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['rate']:g} | {row['finished']} of {row['backups']} | "
              f"{row['median']:.3f} s | {row['longest']:.3f} s | {row['idle']:.3f} s | "
              f"{row['median'] / row['idle']:.1f}x |")


if __name__ == "__main__":
    main()
