"""A real process that owns a database while the tests back it up.

    owner.py hold-wal DB READY        creates DB (table t, 1000 rows, 500 of them only in the
                                      -wal), keeps the connection open, never checkpoints
    owner.py churn DB READY MODE [RATE]
                                      keeps committing transfers between accounts (the sum of
                                      balances stays 100000) and appends to a log, in journal
                                      mode MODE (wal or delete), at RATE commits a second at
                                      most (0, the default: as fast as it can)

Both write READY (the number of committed transactions so far, for churn) once the database
is in the announced state, and run until they are terminated (SIGTERM: they close cleanly).
"""

import os
import random
import signal
import sqlite3
import sys
import time

ACCOUNTS = 50
TOTAL = 100_000


def announce(ready: str, text: str) -> None:
    partial = ready + ".partial"
    with open(partial, "w") as f:
        f.write(text)
    os.rename(partial, ready)


def hold_wal(db: str, ready: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [(f"row {i}",) for i in range(500)])
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # these 500 are in the database file
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [(f"row {i}",) for i in range(500, 1000)])
    conn.execute("COMMIT")  # these 500 only in the -wal
    announce(ready, "1000")
    signal.sigwait({signal.SIGTERM})
    conn.close()


def churn(db: str, ready: str, mode: str, rate: float) -> None:
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    conn.execute(f"PRAGMA journal_mode={mode}")
    conn.execute("CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY, balance INTEGER)")
    conn.execute("CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, payload BLOB)")
    conn.execute("CREATE TABLE IF NOT EXISTS progress (id INTEGER PRIMARY KEY, commits INTEGER)")
    if conn.execute("SELECT count(*) FROM accounts").fetchone()[0] == 0:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO accounts (id, balance) VALUES (?, ?)",
            [(i, TOTAL // ACCOUNTS) for i in range(ACCOUNTS)],
        )
        conn.execute("INSERT INTO progress (id, commits) VALUES (1, 0)")
        conn.execute("COMMIT")
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    rng = random.Random(1)
    commits = 0
    started = time.monotonic()
    while not stop:
        if rate > 0:
            # Paced like an application, not a benchmark: commit n is due at n / rate.
            due = started + commits / rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
        a, b = rng.randrange(ACCOUNTS), rng.randrange(ACCOUNTS)
        amount = rng.randrange(1, 100)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, a))
        conn.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, b))
        conn.execute("INSERT INTO log (payload) VALUES (?)", (os.urandom(rng.randrange(100, 3000)),))
        conn.execute("UPDATE progress SET commits = commits + 1 WHERE id = 1")
        conn.execute("COMMIT")
        commits += 1
        if commits == 20:
            announce(ready, str(commits))
    conn.close()


if __name__ == "__main__":
    if sys.argv[1] == "hold-wal":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        hold_wal(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "churn":
        churn(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]) if len(sys.argv) > 5 else 0)
    else:
        sys.exit(f"unknown command {sys.argv[1]!r}")
