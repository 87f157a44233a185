#!/usr/bin/env python3
"""Whole-program benchmark: sqlite_backup against cp and sqlite3 .backup on live databases.

bench/run builds the project and then runs this; see bench/README.md. For each size it makes a
database whose owner keeps a live WAL (bench_live_db: autocheckpoint off, connection open for
the whole measurement), then times, interleaved round by round (ABCD ABCD ...) after one
warm-up round:

  sqlite_backup SRC DST                 our CLI, default safe mode
  cp SRC SRC-wal DIR/                   the floor on a plain filesystem (no fsync)
  cp + sync                             the same, made durable like ours (fsync of both copies)
  cp + cmp                              cp, then compare both files with their sources
  sqlite3 -readonly SRC ".backup DST"   SQLite's own online backup

Wall time is measured around posix_spawn + wait4 of each command. Peak RSS comes from the
warm-up round, run under GNU time (/usr/bin/time -f %M): wait4's ru_maxrss of a process that
Python spawned would include Python's own (exec records the spawning address space's peak), so
it is measured through the small `time` process instead, outside the timed rounds. Every
destination is a fresh, empty folder and is removed, with a sync, outside the timed part.
Before every command, outside the timed part, the source's files are copied and the copies
deleted, so that every command starts with the same memory just freed
(free_memory_as_a_copy_would explains why that matters on a virtual machine).
On a loop-mounted XFS (reflink=1), when it can make one, the largest size is measured again
against cp --reflink=never and cp --reflink=always. The report (markdown) goes to stdout and
to --output; progress goes to stderr.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

MiB = 1024 * 1024

# The project's performance targets, as bench/README.md states them (informational: the
# benchmark reports them, it never fails on them). Each mode is judged against its own floor:
# the durable default (fsync, rename, fsync of the folder) against cp + sync of the same
# files, --no-sync against plain cp.
# (main file in MiB, at most this many times its floor)
TARGETS_DURABLE = [(1, 1.0), (200, 0.9), (1024, 0.9)]       # ours vs cp + sync
TARGETS_NO_SYNC = [(1, 1.5), (200, 1.1), (1024, 1.1)]       # ours --no-sync vs cp
TARGET_LINEAR_SLACK = 1.25  # time per byte at the largest size vs the next one
TARGET_RSS_GROWTH_MIB = 2.0
TARGET_REFLINK_RATIO = 0.3  # XFS: ours (durable) vs cp --reflink=never


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Running and timing one command


@dataclass
class Run:
    seconds: float
    cpu_seconds: float  # user + system, the command and the children it waited for
    exit_code: int
    stderr: str


GNU_TIME = "/usr/bin/time"

# Processes to end if the run is interrupted: the command being timed, the sources' owners.
in_flight: set[int] = set()
owners: list[subprocess.Popen] = []


def end_leftover_processes() -> None:
    for pid in list(in_flight):
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        in_flight.discard(pid)
    for owner in owners:
        if owner.poll() is None:
            owner.kill()
            owner.wait()


def run_timed(argv: list[str], stderr_path: Path) -> Run:
    """Spawns argv (stdout to /dev/null), waits for it, and returns its wall time."""
    file_actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, str(stderr_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
    ]
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=file_actions)
    in_flight.add(pid)
    _, status, usage = os.wait4(pid, 0)
    in_flight.discard(pid)
    seconds = time.perf_counter() - started
    exit_code = os.waitstatus_to_exitcode(status)
    stderr = stderr_path.read_text(errors="replace").strip() if exit_code != 0 else ""
    return Run(seconds, usage.ru_utime + usage.ru_stime, exit_code, stderr)


def run_with_peak_rss(argv: list[str], stderr_path: Path) -> tuple[Run, int | None]:
    """Runs argv under GNU time; returns the run (its time includes time's) and peak RSS in KiB."""
    if not os.access(GNU_TIME, os.X_OK):
        return run_timed(argv, stderr_path), None
    rss_path = stderr_path.with_suffix(".rss")
    run = run_timed([GNU_TIME, "-f", "%M", "-o", str(rss_path), *argv], stderr_path)
    try:
        return run, int(rss_path.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return run, None


@dataclass
class Tool:
    """One command of the comparison. make_argv(source, out_folder) -> argv."""

    key: str
    label: str
    make_argv: Callable[["LiveSource", Path], list[str]]
    # Where the result is, for the correctness check of our output (None: not checked).
    result_of: Optional[Callable[["LiveSource", Path], Path]] = None
    # Whether the result must be in journal_mode=DELETE (ours; sqlite3 .backup keeps WAL mode).
    result_in_delete_mode: bool = True
    runs: list[Run] = field(default_factory=list)
    peak_rss_kib: int | None = None
    failure: str = ""


def which(program: str) -> str:
    found = shutil.which(program)
    if not found:
        raise SystemExit(f"bench: {program} is not installed (scripts/install-deps.sh installs it)")
    return found


# ---------------------------------------------------------------------------------------------
# Sources with a live WAL


class LiveSource:
    """A database made by bench_live_db, which stays its owner (WAL live) until close()."""

    def __init__(self, maker: Path, folder: Path, db_mib: float, wal_mib: float):
        folder.mkdir(parents=True, exist_ok=True)
        self.database = folder / "source.db"
        self.wal = Path(f"{self.database}-wal")
        started = time.monotonic()
        self.owner = subprocess.Popen(
            [str(maker), "--db", str(self.database), "--db-bytes", str(int(db_mib * MiB)),
             "--wal-bytes", str(int(wal_mib * MiB))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        owners.append(self.owner)
        # The owner prints one line once the WAL is in place; it then holds it until stdin closes.
        line = self.owner.stdout.readline().split()
        if not line or line[0] != "ready":
            self.close()
            raise RuntimeError(f"bench_live_db failed to make {self.database} "
                               f"(exit {self.owner.returncode})")
        fields = dict(item.split("=") for item in line[1:])
        self.db_bytes = int(fields["db_bytes"])
        self.wal_bytes = int(fields["wal_bytes"])
        log(f"made {self.database}: {self.db_bytes / MiB:.1f} MiB + WAL {self.wal_bytes / MiB:.1f} "
            f"MiB in {time.monotonic() - started:.1f} s; owner pid {self.owner.pid} holds the WAL")

    @property
    def set_bytes(self) -> int:
        return self.db_bytes + self.wal_bytes

    def describe(self) -> str:
        return f"{format_mib(self.db_bytes)} + {format_mib(self.wal_bytes)} WAL"

    def close(self) -> None:
        if self.owner.poll() is None:
            self.owner.stdin.close()  # end of file: the owner exits without checkpointing
            try:
                self.owner.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.owner.pid, signal.SIGKILL)
                self.owner.wait()


def query(database: Path, sql: str) -> str:
    result = subprocess.run(["sqlite3", "-readonly", str(database), sql], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        return f"error: {result.stderr.strip()}"
    return result.stdout.strip()


def check_backup(source: LiveSource, backup: Path, delete_mode: bool) -> str:
    """Empty when `backup` is a single-file DELETE-mode database with the source's rows."""
    if not backup.is_file():
        return f"no file at {backup}"
    leftovers = [p.name for p in backup.parent.iterdir() if p != backup]
    if leftovers:
        return f"files left beside the backup: {leftovers}"
    wanted = query(source.database, "SELECT count(*), max(id), sum(length(v)) FROM t")
    got = query(backup, "SELECT count(*), max(id), sum(length(v)) FROM t")
    if got != wanted:
        return f"rows differ from the source: {got} vs {wanted}"
    mode = query(backup, "PRAGMA journal_mode")
    if delete_mode and mode != "delete":
        return f"journal_mode is {mode}, not delete"
    return ""


# ---------------------------------------------------------------------------------------------
# One size: interleaved rounds


def free_memory_as_a_copy_would(source: LiveSource, out_root: Path) -> None:
    """Copies the source's files and deletes the copies, so that each command starts with the
    same memory just freed, whichever command ran before it.

    This virtual machine hands free memory back to its host a moment after it is freed (free
    page reporting); a command that writes through the page cache then waits for the host
    each time it takes such memory. Without this step, each command inherited what the one
    before it freed: cp found the 1 GiB that `ours --no-sync` had just freed (0.3 s), while
    `ours --no-sync`, after the durable run whose direct writes free nothing, took returned
    memory (1.3-1.9 s). Measured back to back, both take about 0.3-0.5 s after such a copy and
    1.7-1.9 s after a pause of a few seconds.
    """
    scratch = out_root / "freed"
    scratch.mkdir()
    for file in (source.database, source.wal):
        shutil.copyfile(file, scratch / file.name)
    os.sync()
    shutil.rmtree(scratch)
    os.sync()


def measure(tools: list[Tool], source: LiveSource, out_root: Path, rounds: int,
            settle=lambda: None) -> None:
    stderr_path = out_root / "stderr.txt"
    for round_index in range(rounds + 1):  # round 0 warms the page cache and is not counted
        for tool in tools:
            if tool.failure:
                continue
            free_memory_as_a_copy_would(source, out_root)
            out = out_root / tool.key
            out.mkdir()
            argv = tool.make_argv(source, out)
            if round_index == 0:
                run, tool.peak_rss_kib = run_with_peak_rss(argv, stderr_path)
            else:
                run = run_timed(argv, stderr_path)
            if run.exit_code != 0:
                last_line = (run.stderr.splitlines() or ["(nothing on stderr)"])[-1]
                tool.failure = f"exit {run.exit_code}: {last_line}"
                log(f"{tool.label} failed on {source.database}: {tool.failure}")
            elif round_index == 0 and tool.result_of is not None:
                problem = check_backup(source, tool.result_of(source, out),
                                       tool.result_in_delete_mode)
                if problem:
                    tool.failure = f"wrong result: {problem}"
                    log(f"{tool.label}: {tool.failure}")
            elif round_index > 0:
                tool.runs.append(run)
            shutil.rmtree(out)
            # Nobody's writeback spills into the next command's time. Twice: on a loop mount the
            # first sync only moves the data into the backing file's page cache.
            os.sync()
            os.sync()
            settle()
        if round_index == 0:
            log(f"warm-up done; {rounds} rounds of {len(tools)} commands")


def median_ratio(tool: Tool, baseline: Tool) -> float | None:
    """Median over rounds of tool/baseline in the same round (paired, so drift cancels)."""
    if tool.failure or baseline.failure or not tool.runs or len(tool.runs) != len(baseline.runs):
        return None
    return statistics.median(a.seconds / b.seconds for a, b in zip(tool.runs, baseline.runs))


def median_seconds(tool: Tool) -> float | None:
    return statistics.median(r.seconds for r in tool.runs) if tool.runs and not tool.failure else None


def median_cpu_seconds(tool: Tool) -> float | None:
    return statistics.median(r.cpu_seconds for r in tool.runs) if tool.runs and not tool.failure else None


def peak_rss_mib(tool: Tool) -> float | None:
    return None if tool.failure or tool.peak_rss_kib is None else tool.peak_rss_kib / 1024


# ---------------------------------------------------------------------------------------------
# Formatting


def format_mib(size_bytes: float) -> str:
    mib = size_bytes / MiB
    if mib >= 1024:
        return f"{mib / 1024:.2f} GiB"
    return f"{mib:.0f} MiB" if mib >= 10 else f"{mib:.1f} MiB"


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    ms = seconds * 1000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def format_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "n/a"
    return f"{ratio:.3f}×" if ratio < 0.1 else f"{ratio:.2f}×"


def format_rss(mib: float | None) -> str:
    return "n/a" if mib is None else f"{mib:.1f} MiB"


@dataclass
class SizeResult:
    title: str
    source_bytes: int
    rounds: int
    tools: list[Tool]
    baseline_key: str = "cp"  # the "× cp" column: cp, or cp --reflink=never on XFS

    def tool(self, key: str) -> Tool | None:
        return next((t for t in self.tools if t.key == key), None)


def results_table(results: list[SizeResult]) -> list[str]:
    lines = ["| Source (db + WAL) | Command | Median | Min | × cp | × sqlite3 .backup | CPU | Peak RSS |",
             "|---|---|--:|--:|--:|--:|--:|--:|"]
    for result in results:
        cp = result.tool(result.baseline_key)
        backup = result.tool("sqlite3")
        first = True
        for tool in result.tools:
            name = f"**{tool.label}**" if tool.key == "ours" else tool.label
            title = f"{result.title} ({result.rounds} rounds)" if first else ""
            first = False
            if tool.failure:
                failure = tool.failure.replace("|", "/")  # a | would split the table's cell
                lines.append(f"| {title} | {name} | FAILED: {failure} | | | | | |")
                continue
            lines.append("| " + " | ".join([
                title, name, format_seconds(median_seconds(tool)),
                format_seconds(min(r.seconds for r in tool.runs)),
                format_ratio(median_ratio(tool, cp)) if cp else "n/a",
                format_ratio(median_ratio(tool, backup)) if backup else "n/a",
                format_seconds(median_cpu_seconds(tool)), format_rss(peak_rss_mib(tool))]) + " |")
    return lines


def verdict(ok: bool | None) -> str:
    return "not run" if ok is None else ("PASS" if ok else "FAIL")


def targets_table(plain: list[SizeResult], xfs: SizeResult | None, xfs_note: str) -> list[str]:
    rows: list[tuple[str, str, bool | None]] = []

    # Each mode against its own floor: the durable default against cp + sync, --no-sync
    # against cp.
    for key, who, floor, floor_label, targets in [
            ("ours", "ours", "cp-sync", "cp + sync", TARGETS_DURABLE),
            ("ours-nosync", "ours --no-sync", "cp", "cp", TARGETS_NO_SYNC)]:
        for mib, limit in targets:
            label = f"{mib} MiB" if mib < 1024 else f"{mib // 1024} GiB"
            # The run whose main file is the target's size (its source is that plus the WAL).
            matches = [r for r in plain
                       if abs(r.source_bytes - mib * MiB) <= 0.15 * mib * MiB + 2 * MiB]
            name = f"{who} ≤ {limit}× {floor_label} at {label}"
            tool = matches[0].tool(key) if matches else None
            if tool is None or matches[0].tool(floor) is None:
                rows.append((name, "n/a (size not run)", None))
            elif tool.failure:
                rows.append((name, f"{who} failed", False))
            else:
                ratio = median_ratio(tool, matches[0].tool(floor))
                rows.append((name, format_ratio(ratio), None if ratio is None else ratio <= limit))

    large = [r for r in plain if r.source_bytes >= 64 * MiB]
    if len(large) >= 2:
        middle, largest = sorted(large, key=lambda r: r.source_bytes)[-2:]

        def per_byte_growth(key: str) -> float | None:
            a, b = median_seconds(middle.tool(key)), median_seconds(largest.tool(key))
            if a is None or b is None:
                return None
            return (b / largest.source_bytes) / (a / middle.source_bytes)

        growth = per_byte_growth("ours")
        cp_growth = per_byte_growth("cp")
        rows.append((f"linear growth: time per byte at {format_mib(largest.source_bytes)} ≤ "
                     f"{TARGET_LINEAR_SLACK}× that at {format_mib(middle.source_bytes)}",
                     f"{format_ratio(growth)} (cp: {format_ratio(cp_growth)})",
                     None if growth is None else growth <= TARGET_LINEAR_SLACK))
    else:
        rows.append(("linear growth (needs two sizes ≥ 64 MiB)", "n/a", None))

    if len(plain) >= 2:
        smallest, largest = plain[0], plain[-1]
        low, high = peak_rss_mib(smallest.tool("ours")), peak_rss_mib(largest.tool("ours"))
        growth = None if low is None or high is None else high - low
        rows.append((f"ours' peak RSS flat from {smallest.title} to {largest.title} "
                     f"(≤ {TARGET_RSS_GROWTH_MIB:g} MiB growth)",
                     "n/a" if growth is None else f"{low:.1f} → {high:.1f} MiB ({growth:+.1f} MiB)",
                     None if growth is None else growth <= TARGET_RSS_GROWTH_MIB))

    if xfs is not None and xfs.tool("ours") is not None:
        ratio = median_ratio(xfs.tool("ours"), xfs.tool("cp-never"))
        rows.append((f"XFS: ours ≤ {TARGET_REFLINK_RATIO}× cp --reflink=never at "
                     f"{format_mib(xfs.source_bytes)}", format_ratio(ratio),
                     None if ratio is None else ratio <= TARGET_REFLINK_RATIO))
    else:
        rows.append((f"XFS: ours ≤ {TARGET_REFLINK_RATIO}× cp --reflink=never", xfs_note, None))

    lines = ["| Performance target | Measured | Result |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {verdict(ok)} |" for name, value, ok in rows]
    return lines


def memory_against_file_rows(micro_json: dict) -> list[str]:
    """The target row for memory destinations: at most the file destination's time, at every
    size of bench/micro.cpp (in process, so that start-up costs are not compared)."""
    times: dict[tuple[str, str], float] = {}
    for bench in micro_json.get("benchmarks", []):
        name = bench.get("run_name") or bench.get("name", "")
        parts = name.split("/")
        if len(parts) >= 2 and parts[0] in ("BM_BackupToMemory", "BM_BackupToFile"):
            times[(parts[0], parts[1])] = float(bench["real_time"])
    sizes = sorted({size for _, size in times}, key=int)
    rows = []
    for size in sizes:
        memory, file = times.get(("BM_BackupToMemory", size)), times.get(("BM_BackupToFile", size))
        if memory is None or file is None:
            continue
        rows.append(f"| memory destination ≤ file destination at {size} MiB | "
                    f"{memory:.2f} ms vs {file:.2f} ms ({memory / file:.2f}×) | "
                    f"{verdict(memory <= file)} |")
    return rows


# ---------------------------------------------------------------------------------------------
# The machine


def read_first(path: str, prefix: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
        return out.strip().splitlines()[0] if out.strip() else "unknown"
    except OSError:
        return "unknown"


def filesystem_of(path: Path) -> str:
    found = first_line(["findmnt", "-n", "-o", "FSTYPE,SOURCE,TARGET", "-T", str(path)])
    if found == "unknown":
        found = first_line(["stat", "-f", "-c", "%T", str(path)])
    return " ".join(found.split())


def machine_lines(scratch: Path, cli: Path) -> list[str]:
    mem_kib = read_first("/proc/meminfo", "MemTotal").split()[0]
    ram = f"{int(mem_kib) / 1024 / 1024:.1f} GiB" if mem_kib.isdigit() else "unknown"
    return [
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- CPU: {read_first('/proc/cpuinfo', 'model name')}, {os.cpu_count()} cores; RAM {ram}",
        f"- Kernel: {platform.system()} {platform.release()}; load average at the start "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the machine adds noise)",
        f"- Bench folder: {scratch} on {filesystem_of(scratch)}",
        f"- Versions: {first_line([str(cli), '--version'])}; sqlite3 "
        f"{first_line(['sqlite3', '--version']).split(' ')[0]}; {first_line(['cp', '--version'])}",
    ]


# ---------------------------------------------------------------------------------------------
# XFS loop mount (reflink)


class XfsMount:
    """A sparse image formatted XFS with reflink=1, loop-mounted; unmounted and removed by close()."""

    def __init__(self, scratch: Path, size_bytes: int):
        self.image = scratch / "xfs.img"
        self.mountpoint = scratch / "xfs"
        self.mounted = False
        if os.geteuid() != 0:
            raise RuntimeError("needs root to loop-mount an image")
        for program in ("mkfs.xfs", "mount", "umount", "losetup"):
            if shutil.which(program) is None:
                raise RuntimeError(f"{program} is not installed (package xfsprogs/util-linux)")
        # Allocated up front (and not discarded by mkfs: -K), so that the backing filesystem
        # does not allocate blocks under the loop device in the middle of a timed command.
        with open(self.image, "wb") as image:
            os.posix_fallocate(image.fileno(), 0, size_bytes)
        self._run(["mkfs.xfs", "-q", "-K", "-m", "reflink=1", str(self.image)])
        self.mountpoint.mkdir()
        self._run(["mount", "-o", "loop", str(self.image), str(self.mountpoint)])
        self.mounted = True

    def settle(self) -> None:
        """Waits for XFS's background work (freeing the last destination's blocks, CoW remaps):
        freezing a filesystem flushes all of it, so the next command starts on a quiet one."""
        subprocess.run(["fsfreeze", "--freeze", str(self.mountpoint)], check=False)
        subprocess.run(["fsfreeze", "--unfreeze", str(self.mountpoint)], check=False)

    @staticmethod
    def _run(argv: list[str]) -> None:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip() or result.returncode}")

    def close(self) -> None:
        if self.mounted:
            # A process that was killed a moment ago may still hold a file open: retry briefly,
            # then detach lazily so the mount never outlives the run.
            for _ in range(20):
                if subprocess.run(["umount", str(self.mountpoint)], capture_output=True,
                                  check=False).returncode == 0:
                    break
                time.sleep(0.25)
            else:
                log(f"{self.mountpoint} stayed busy; detaching it lazily (umount -l)")
                subprocess.run(["umount", "-l", str(self.mountpoint)], check=False)
            self.mounted = False
        self.image.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: sizes 1 and 16 MiB, 5 rounds, XFS at 16 MiB, micro at 1 MiB")
    parser.add_argument("--sizes", help="main file sizes in MiB, comma separated (default 1,200,1024)")
    parser.add_argument("--rounds", type=int,
                        help="rounds per size (default: 21 up to 16 MiB, 7 above; --quick: 5)")
    parser.add_argument("--wal-percent", type=float, default=10.0,
                        help="WAL size as a percentage of the main file (at least 1 MiB; default 10)")
    parser.add_argument("--no-xfs", action="store_true", help="skip the XFS reflink case")
    parser.add_argument("--xfs-size", type=float,
                        help="main file size in MiB for the XFS case (default: the largest size)")
    parser.add_argument("--no-micro", action="store_true", help="skip the Google Benchmark part")
    parser.add_argument("--no-extras", action="store_true",
                        help="only ours, cp and sqlite3 .backup (no cp + sync, cp + cmp)")
    parser.add_argument("--build-dir", type=Path,
                        default=Path(os.environ.get("BENCH_BUILD_DIR") or
                                     Path(__file__).resolve().parent.parent / "build" / "bench"),
                        help="the CMake build folder (bench/run passes it; default "
                             "$BENCH_BUILD_DIR or build/bench)")
    parser.add_argument("--cli", type=Path,
                        help="the sqlite_backup binary to measure (default: BUILD_DIR/cli/sqlite_backup)")
    parser.add_argument("--output", type=Path,
                        help="also write the report here (default: BUILD_DIR/bench-latest.md)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (debugging)")
    parser.add_argument("--raw", action="store_true",
                        help="also list every round's wall time (ms) per command")
    parser.add_argument("--no-build", action="store_true", help=argparse.SUPPRESS)  # bench/run's
    parser.add_argument("--no-deps", action="store_true", help=argparse.SUPPRESS)   # bench/run's
    args = parser.parse_args()
    if args.sizes:
        try:
            args.size_list = sorted(float(s) for s in args.sizes.split(",") if s.strip())
        except ValueError:
            parser.error(f"--sizes: not a list of numbers: {args.sizes}")
        if not args.size_list or min(args.size_list) <= 0:
            parser.error("--sizes: sizes must be positive")
    else:
        args.size_list = [1.0, 16.0] if args.quick else [1.0, 200.0, 1024.0]
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def rounds_for(args: argparse.Namespace, mib: float) -> int:
    if args.rounds:
        return args.rounds
    if args.quick:
        return 5
    return 21 if mib <= 16 else 7


def wal_mib(args: argparse.Namespace, mib: float) -> float:
    return max(mib * args.wal_percent / 100, 1.0)


def our_tools(cli: Path) -> list[Tool]:
    """Our CLI, durable (the default) and with --no-sync, each writing DIR/backup.db."""
    return [
        Tool(key, label, lambda s, out, flags=flags: [str(cli), *flags, str(s.database),
                                                       str(out / "backup.db")],
             result_of=lambda s, out: out / "backup.db")
        for key, label, flags in [("ours", "sqlite_backup (ours)", []),
                                  ("ours-nosync", "sqlite_backup --no-sync (not durable)",
                                   ["--no-sync"])]]


def make_tools(cli: Path, extras: bool) -> list[Tool]:
    cp, sqlite3, sh = which("cp"), which("sqlite3"), which("sh")
    tools = [
        *our_tools(cli),
        Tool("cp", "cp (db + wal)", lambda s, out: [cp, str(s.database), str(s.wal), f"{out}/"]),
    ]
    if extras:
        tools.append(Tool(
            "cp-sync", "cp + sync (durable)",
            lambda s, out: [sh, "-c", 'cp "$1" "$2" "$3/" && sync "$3/${1##*/}" "$3/${2##*/}"',
                            "sh", str(s.database), str(s.wal), str(out)]))
        tools.append(Tool(
            "cp-cmp", "cp + cmp",
            lambda s, out: [sh, "-c", 'cp "$1" "$2" "$3/" && cmp -s "$1" "$3/${1##*/}" && '
                                      'cmp -s "$2" "$3/${2##*/}"',
                            "sh", str(s.database), str(s.wal), str(out)]))
    tools.append(Tool(
        "sqlite3", "sqlite3 -readonly .backup",
        lambda s, out: [sqlite3, "-readonly", str(s.database), f".backup '{out / 'backup.db'}'"],
        result_of=lambda s, out: out / "backup.db", result_in_delete_mode=False))
    return tools


def make_xfs_tools(cli: Path, extras: bool) -> list[Tool]:
    cp, sh = which("cp"), which("sh")
    durable = [Tool(
        "cp-never-sync", "cp --reflink=never + sync",
        lambda s, out: [sh, "-c", 'cp --reflink=never "$1" "$2" "$3/" && '
                                  'sync "$3/${1##*/}" "$3/${2##*/}"',
                        "sh", str(s.database), str(s.wal), str(out)])] if extras else []
    return [
        *our_tools(cli),
        Tool("cp-never", "cp --reflink=never",
             lambda s, out: [cp, "--reflink=never", str(s.database), str(s.wal), f"{out}/"]),
        *durable,
        Tool("cp-always", "cp --reflink=always",
             lambda s, out: [cp, "--reflink=always", str(s.database), str(s.wal), f"{out}/"]),
    ]


def choose_scratch_base() -> Path:
    base = Path(os.environ.get("BENCH_DIR") or "/var/tmp")
    if "BENCH_DIR" not in os.environ and filesystem_of(base).startswith("tmpfs"):
        log(f"{base} is tmpfs (memory, not disk): set BENCH_DIR to a folder on disk for real numbers")
    return base


def run_micro(args: argparse.Namespace, scratch: Path) -> list[str]:
    micro = args.build_dir / "bench" / "sqlite_backup_micro"
    if args.no_micro:
        return []
    if not micro.exists():
        return ["", "Google Benchmark (bench/micro.cpp): not built (libbenchmark-dev missing)."]
    argv = [str(micro), "--benchmark_min_time=0.05" if args.quick else "--benchmark_min_time=0.3"]
    if args.quick:
        argv.append("--benchmark_filter=/1/")
    json_out = scratch / "micro.json"
    argv += [f"--benchmark_out={json_out}", "--benchmark_out_format=json"]
    log(f"running {' '.join(argv)}")
    result = subprocess.run(argv, capture_output=True, text=True, check=False,
                            env={**os.environ, "BENCH_DIR": str(scratch)})
    lines = [line for line in result.stdout.splitlines()
             if line.startswith(("BM_", "Benchmark", "----"))]
    out = ["", "In-process (bench/micro.cpp, Google Benchmark; the argument is the main file in MiB, "
               "plus a WAL of a tenth, at least 1 MiB):", "", "```", *lines, "```"]
    try:
        rows = memory_against_file_rows(json.loads(json_out.read_text()))
    except (OSError, ValueError):
        rows = []
    if rows:
        out += ["", "| Performance target | Measured | Result |", "|---|---|---|", *rows]
    if result.returncode != 0:
        out.append(f"sqlite_backup_micro failed (exit {result.returncode}): "
                   f"{result.stderr.strip().splitlines()[-1:] }")
    return out


def run_checks(args: argparse.Namespace, scratch: Path) -> list[str]:
    """What each of the snapshot's checks costs (bench/checks.cpp), when it was built."""
    checks = args.build_dir / "bench" / "sqlite_backup_checks"
    if args.no_micro or not checks.exists():
        return []
    argv = [str(checks), "--benchmark_min_time=0.05" if args.quick else "--benchmark_min_time=0.3"]
    log(f"running {' '.join(argv)}")
    result = subprocess.run(argv, capture_output=True, text=True, check=False,
                            env={**os.environ, "BENCH_DIR": str(scratch)})
    lines = [line for line in result.stdout.splitlines()
             if line.startswith(("BM_", "Benchmark", "----"))]
    out = ["", "The checks' own costs (bench/checks.cpp, Google Benchmark; N in MiB):", "", "```",
           *lines, "```"]
    if result.returncode != 0:
        out.append(f"sqlite_backup_checks failed (exit {result.returncode}): "
                   f"{result.stderr.strip().splitlines()[-1:]}")
    return out


def main() -> int:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so the owners, the mount and the scratch folder are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    cli = (args.cli or args.build_dir / "cli" / "sqlite_backup").resolve()
    maker = (args.build_dir / "bench" / "bench_live_db").resolve()
    for binary in (cli, maker):
        if not os.access(binary, os.X_OK):
            raise SystemExit(f"bench: {binary} is missing: run bench/run (it builds it) or pass --cli")

    base = choose_scratch_base()
    base.mkdir(parents=True, exist_ok=True)
    largest_set = max(m + wal_mib(args, m) for m in args.size_list) * MiB
    xfs_mib = args.xfs_size or max(args.size_list)
    xfs_set = (xfs_mib + wal_mib(args, xfs_mib)) * MiB
    # Source + one destination (+ our staging, renamed into it) + slack; the XFS image fills as much.
    needed = 2.3 * largest_set + (0 if args.no_xfs else 2.3 * xfs_set) + 256 * MiB
    free = shutil.disk_usage(base).free
    if free < needed:
        raise SystemExit(f"bench: {base} has {format_mib(free)} free, the run needs about "
                         f"{format_mib(needed)}: set BENCH_DIR to a bigger folder or use --sizes")

    scratch = Path(tempfile.mkdtemp(prefix="sqlite_backup_bench.", dir=base))
    log(f"scratch folder {scratch} ({format_mib(free)} free, about {format_mib(needed)} needed)")
    sources: list[LiveSource] = []
    xfs_mount: XfsMount | None = None
    report: list[str] = []
    try:
        report += ["## sqlite_backup benchmark", "", *machine_lines(scratch, cli), ""]
        plain: list[SizeResult] = []
        for mib in args.size_list:
            source = LiveSource(maker, scratch / f"src-{mib:g}", mib, wal_mib(args, mib))
            sources.append(source)
            out_root = scratch / "out"
            out_root.mkdir(exist_ok=True)
            tools = make_tools(cli, extras=not args.no_extras)
            rounds = rounds_for(args, mib)
            measure(tools, source, out_root, rounds)
            plain.append(SizeResult(source.describe(), source.set_bytes, rounds, tools))
            source.close()
            shutil.rmtree(source.database.parent)  # frees the disk for the next size

        xfs_result: SizeResult | None = None
        xfs_extra: list[SizeResult] = []
        xfs_note = "skipped: --no-xfs"
        if not args.no_xfs:
            try:
                xfs_mount = XfsMount(scratch, int(2.3 * xfs_set + 512 * MiB))
                log(f"XFS (reflink=1) loop-mounted at {xfs_mount.mountpoint}")
            except (RuntimeError, OSError) as error:
                xfs_note = f"skipped: {error}"
                log(f"XFS case {xfs_note}")
            # The standard WAL (the target is judged on it), then a 1 MiB one: after the clone,
            # what ours costs on XFS is replaying the WAL into the clone and syncing those pages.
            wal_cases = [wal_mib(args, xfs_mib)]
            if not args.no_extras and wal_cases[0] > 1.0:
                wal_cases.append(1.0)
            for index, xfs_wal_mib in enumerate(wal_cases if xfs_mount is not None else []):
                source = LiveSource(maker, xfs_mount.mountpoint / f"src-{index}", xfs_mib,
                                    xfs_wal_mib)
                sources.append(source)
                out_root = xfs_mount.mountpoint / "out"
                out_root.mkdir(exist_ok=True)
                tools = make_xfs_tools(cli, extras=not args.no_extras)
                rounds = rounds_for(args, xfs_mib)
                measure(tools, source, out_root, rounds, settle=xfs_mount.settle)
                result = SizeResult(f"XFS loop: {source.describe()}", source.set_bytes, rounds,
                                    tools, baseline_key="cp-never")
                if xfs_result is None:
                    xfs_result = result
                else:
                    xfs_extra.append(result)
                source.close()
                shutil.rmtree(source.database.parent)

        report += [
            "Median and minimum wall time over interleaved rounds (one warm-up round first, page "
            "cache warm); ratios are medians of per-round ratios; CPU is the median user + system time; peak RSS is GNU "
            "time's %M in the warm-up round. The source's owner holds its WAL open "
            "throughout. Only ours and the + sync rows fsync their output. On XFS, × cp is against "
            "cp --reflink=never.", "",
            *results_table(plain + ([xfs_result] if xfs_result else []) + xfs_extra), "",
        ]
        if xfs_result is None:
            report += [f"XFS reflink case: {xfs_note}.", ""]
        report += targets_table(plain, xfs_result, xfs_note)
        for result in xfs_extra:
            report += ["", f"Context, {result.title}: ours "
                           f"{format_ratio(median_ratio(result.tool('ours'), result.tool('cp-never')))}"
                           " of cp --reflink=never."]
        if args.raw:
            report += ["", "Every round's wall time (ms), in order:", ""]
            for result in plain + ([xfs_result] if xfs_result else []) + xfs_extra:
                for tool in result.tools:
                    times = " ".join(f"{r.seconds * 1000:.1f}" for r in tool.runs)
                    report.append(f"- {result.title}, {tool.label}: {times or tool.failure}")
        report += run_micro(args, scratch)
        report += run_checks(args, scratch)
    finally:
        end_leftover_processes()
        for source in sources:
            source.close()
        if xfs_mount is not None:
            xfs_mount.close()
        if args.keep:
            log(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    text = "\n".join(report) + "\n"
    print(text, end="")
    output = args.output or args.build_dir / "bench-latest.md"
    output.write_text(text)
    log(f"report written to {output}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; cleaned up")
        sys.exit(130)
