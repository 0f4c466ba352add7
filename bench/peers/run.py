"""`python -m bench peers`: taskrpc against RQ, arq and Celery, row by row, in one run.

Every system gets the same job (`reverse` of a 10-character text; the peers' jobs do
`text[::-1]`), the same number of client processes, one sequential worker, and fresh processes
for every round; rounds interleave the systems (each round in a rotated order) and the table shows
medians, the spread over rounds and taskrpc's ratio to the best peer. Progress goes to stderr,
the table to stdout, every figure to .venv-peers/last-run.json. BENCHMARKS.md says what each
row measures and what makes it unfair.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.common import HOST, Server, log, rpc_body, run_load
from bench.peers import envs
from bench.peers.envs import SetupError
from bench.peers.procs import HERE, BenchError, Drivers, Process, RedisServer, running

TEXT = "abcdefghij"  # every job's text: 10 characters, as in issue 13
DONE = ["done", "finished", "complete", "success"]  # each system's word for a finished job
PEER_WORKERS = {"rq": "jobs_rq.py", "arq": "jobs_arq.py", "celery": "jobs_celery.py"}
RESULTS = envs.CACHE / "last-run.json"
AB = ("taskrpc", "uvloop")  # the systems that also get the A/B rows of other clients
KEYS = ["taskrpc", "journal", "uvloop", "rq", "arq", "celery"]  # as --systems names them
CPU_NOTES = ["enqueue", "batched", "aio_enqueue", "status", "aio_status"]  # see `notes`


@dataclass(frozen=True, slots=True)
class Scale:
    """How much work each measurement does; `--quick` shrinks it for a smoke run."""

    rounds: int = 3
    clients: int = 10  # client processes, each with one call in flight
    window: float = 1.5  # seconds of each enqueue and status window
    warm_enqueue: float = 0.2  # seconds of each kind of enqueue before the memory baseline
    batch: int = 100  # jobs per batched enqueue
    latency_jobs: int = 150  # one at a time, after `warmup` more
    warmup: int = 20
    drain_jobs: int = 1000
    latency_poll: float = 0.001  # arq's client polls for a result; how often, when timed
    drain_poll: float = 0.01  # and while a drain runs (fast polls would slow its worker)


QUICK = Scale(rounds=1, clients=4, window=0.5, latency_jobs=20, warmup=5, drain_jobs=100)


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    title: str
    higher_is_better: bool
    peers_key: str = ""  # the peers' row to compare with, if not this one


ROWS = [
    Row("enqueue", "enqueue, single calls (jobs/s)", True),
    Row("batched", "enqueue, batched x100 (jobs/s)", True),
    Row("drain", "drain: submit → all done (jobs/s)", True),
    Row("latency", "end-to-end latency, idle, p50 (ms)", False),
    Row("status", "status calls/s, same Python client", True),
    Row("memory", "bytes per queued job, all processes", False),
    Row("aio_enqueue", "enqueue, single calls, taskrpc's async client", True, "enqueue"),
    Row("aio_status", "status calls/s, taskrpc's async client", True, "status"),
    Row("raw_status", "status calls/s, taskrpc via bench.load (raw HTTP)", True, "status"),
    Row("drain_info", "drain, taskrpc logging at info (jobs/s)", True, "drain"),
]


@dataclass(frozen=True, slots=True)
class System:
    """One column: a peer, or taskrpc-server with some flags (and maybe uvloop)."""

    key: str
    label: str
    client: str  # the driver's adapter
    python: Path
    peer: bool
    batches: bool = True
    flags: tuple[str, ...] = ()
    uvloop: Path | None = None


Figures = dict[str, float | None]


@dataclass
class Results:
    """Every figure of every round, per system and row, plus notes on how they were made."""

    rounds: dict[str, list[Figures]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # one line per system and round that failed

    def add(self, system: System, figures: Figures) -> None:
        self.rounds.setdefault(system.key, []).append(figures)

    def values(self, system: System, row: Row) -> list[float]:
        return [
            value
            for figures in self.rounds.get(system.key, [])
            if (value := figures.get(row.key)) is not None
        ]


@dataclass(frozen=True, slots=True)
class Window:
    """What one shared window measured: the rate, and the CPU each side spent per operation."""

    rate: float  # operations per second, all clients together
    count: int
    server_us: float  # CPU of the server processes (taskrpc-server, or redis-server) per op
    client_us: float  # CPU of the client processes per op


def window(
    drivers: Drivers, command: dict[str, Any], count: str, scale: Scale, servers: Sequence[Process]
) -> Window:
    """Run `command` on every client over one shared window (`count` names what it counts)."""
    start_at = time.time() + 0.3
    server_cpu = sum(server.cpu_seconds() for server in servers)
    client_cpu = drivers.cpu_seconds()
    answers = drivers.ask(
        lambda _: {**command, "start_at": start_at, "duration": scale.window},
        scale.window + 120,
        servers,
    )
    done = sum(int(answer[count]) for answer in answers)
    elapsed = max(float(answer["ended"]) for answer in answers) - start_at
    server_cpu = sum(server.cpu_seconds() for server in servers) - server_cpu
    client_cpu = drivers.cpu_seconds() - client_cpu
    per_op = 1e6 / max(done, 1)
    return Window(done / elapsed, done, server_cpu * per_op, client_cpu * per_op)


def enqueue_rows(
    drivers: Drivers,
    system: System,
    scale: Scale,
    memory: Callable[[], int],
    servers: Sequence[Process],
) -> Figures:
    """Enqueue rows with nothing consuming; then the memory those queued jobs hold.

    Every kind of enqueue runs once briefly before the memory is first read, so that the
    growth counts what the queued jobs hold, not what the first calls of each kind set up
    once (connections, buffers, caches), as `bench memory` warms up before its baseline.
    """
    command: dict[str, Any] = {"op": "enqueue", "batch": 1, "text": TEXT}
    kinds = {"enqueue": command}
    if system.batches:
        kinds["batched"] = command | {"batch": scale.batch}
    if system.key in AB:  # the same server, through the async client (aiohttp)
        kinds["aio_enqueue"] = command | {"aio": True}
    warm = replace(scale, window=scale.warm_enqueue)
    for kind in kinds.values():
        window(drivers, kind, "jobs", warm, servers)
    before = memory()
    figures: Figures = {"batched": None}
    jobs = 0
    for row, kind in kinds.items():
        measured = window(drivers, kind, "jobs", scale, servers)
        figures |= {row: measured.rate} | cpu_notes(row, measured)
        jobs += measured.count
    figures["memory"] = (memory() - before) / jobs
    figures["queued"] = jobs
    return figures


def cpu_notes(row: str, measured: Window) -> Figures:
    return {f"{row}_server_us": measured.server_us, f"{row}_client_us": measured.client_us}


def worker_rows(
    drivers: Drivers, system: System, scale: Scale, servers: Sequence[Process]
) -> tuple[Figures, str]:
    """Latency (one client, idle worker), status of a done job (all clients), drain (one).

    Also returns the id of that done job.
    """
    command: dict[str, Any] = {"op": "latency", "text": TEXT, "poll": scale.latency_poll}
    command |= {"count": scale.latency_jobs, "warmup": scale.warmup}
    (latency,) = drivers.ask(lambda _: command, 300, servers, only=1)
    command = {"op": "status", "id": latency["last_id"], "expect": DONE}
    status = window(drivers, command, "calls", scale, servers[:1])
    figures: Figures = {"aio_status": None}
    if system.key in AB:  # the same server, through the async client (aiohttp)
        aio = window(drivers, command | {"aio": True}, "calls", scale, servers[:1])
        figures = cpu_notes("aio_status", aio) | {"aio_status": aio.rate}
    figures |= (
        {
            "latency": statistics.median(latency["ms"]),
            "latency_p90": sorted(latency["ms"])[int(len(latency["ms"]) * 0.9)],
            "status": status.rate,
        }
        | cpu_notes("status", status)
        | drain(drivers, system, scale, servers)
    )
    return figures, str(latency["last_id"])


def drain(drivers: Drivers, system: System, scale: Scale, servers: Sequence[Process]) -> Figures:
    """Jobs per second from the first submit to the last job done, a worker running; and the
    CPU the server processes spent per job meanwhile (steadier than the rate on a busy host)."""
    batch = scale.batch if system.batches else 1
    command = {"op": "drain", "text": TEXT, "count": scale.drain_jobs, "batch": batch}
    cpu = sum(server.cpu_seconds() for server in servers)
    (answer,) = drivers.ask(lambda _: command | {"poll": scale.drain_poll}, 600, servers, only=1)
    cpu = sum(server.cpu_seconds() for server in servers) - cpu
    rate = scale.drain_jobs / float(answer["elapsed"])
    return {"drain": rate, "drain_server_us": cpu / scale.drain_jobs * 1e6}


class Watched(Process):
    """A `bench.common.Server` seen as a `Process`, so that its death stops a wait at once."""

    def __init__(self, server: Server) -> None:  # no Process.__init__: it is running already
        self.name = server.name
        self.process = server.process
        self.server = server

    def stderr(self) -> str:
        return f"\n--- its stderr ends:\n{self.server.stderr()}"

    def stop(self) -> None:
        self.server.stop()


def start_server(system: System, folder: str, *flags: str) -> Watched:
    """taskrpc-server on a free port at log level warning, with the system's flags and loop."""
    Path(folder).mkdir(parents=True, exist_ok=True)  # for a journal file, say
    own = [flag.replace("{folder}", folder) for flag in system.flags]
    argv = [sys.executable, "-m", "bench.peers.server"]
    if system.uvloop is not None:
        argv += ["--uvloop", str(system.uvloop)]
    argv += ["--host", HOST, "--port", "0", "--log-level", "warning", *flags, *own]
    try:
        server = Server(argv, f"{system.label} server")
    except RuntimeError as exc:  # bench.common says why it did not start
        raise BenchError(str(exc)) from exc
    maps = Path(f"/proc/{server.process.pid}/maps")
    if system.uvloop is not None and "uvloop" not in maps.read_text():
        server.stop()
        raise BenchError("the uvloop server does not run uvloop (no uvloop in its maps)")
    return Watched(server)


def measure_taskrpc(system: System, scale: Scale) -> Figures:
    """Enqueue rows on a server whose worker sleeps in its first job; the rest at scale 0."""
    with ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-peers-"))
        drivers = Drivers(Path(sys.executable), "taskrpc", scale.clients)
        stack.callback(drivers.stop)
        # Time scale 1000: the first job sleeps 2000 s, so every later one stays queued.
        flags = ("--time-scale", "1000", "--max-queued", "10000000")
        with running(start_server(system, f"{folder}/a", *flags)) as server:
            drivers.ask(lambda _: {"op": "open", "port": server.server.port}, 60, [server])
            figures = enqueue_rows(drivers, system, scale, server.server.rss, [server])
        with running(start_server(system, f"{folder}/b", "--time-scale", "0")) as server:
            drivers.ask(lambda _: {"op": "open", "port": server.server.port}, 60, [server])
            more, job_id = worker_rows(drivers, system, scale, [server])
            figures |= more
            if system.key in AB:
                figures |= raw_status(server.server, job_id, scale)
        if system.key == "taskrpc":  # A/B: the drain at the default log level, info
            flags = ("--time-scale", "0", "--log-level", "info")
            with running(start_server(system, f"{folder}/c", *flags)) as server:
                drivers.ask(lambda _: {"op": "open", "port": server.server.port}, 60, [server])
                # The same rows before it as at warning: a drain on a fresh server ran 0.3 to
                # 0.4 of one on a server that had answered the latency and status rows.
                at_info, _ = worker_rows(drivers, system, scale, [server])
                figures["drain_info"] = at_info["drain"]
                figures["drain_info_server_us"] = at_info["drain_server_us"]
        return figures


def raw_status(server: Server, job_id: str, scale: Scale) -> Figures:
    """`status` from `bench.load`, a raw HTTP client far cheaper than the server: its capacity."""
    body = rpc_body("status", {"id": job_id})
    try:
        load = run_load(server, body, connections=scale.clients, duration=scale.window)
    except RuntimeError as exc:
        raise BenchError(str(exc)) from exc
    if load.errors:
        raise BenchError(f"{load.errors} of the raw status calls failed")
    return {"raw_status": load.rate, "raw_status_server_us": load.server_cpu_us}


def start_redis(binary: str, tries: int = 3) -> RedisServer:
    """A fresh redis-server; tried again if another process took its free port first."""
    for attempt in range(1, tries + 1):
        try:
            return RedisServer(binary)
        except BenchError as exc:
            if attempt == tries or "in use" not in str(exc):
                raise
    raise AssertionError("unreachable")


def measure_peer(system: System, scale: Scale, redis_binary: str) -> Figures:
    """Enqueue rows with no worker (redis holds the queue); then a worker for the rest."""
    with ExitStack() as stack:
        redis = stack.enter_context(running(start_redis(redis_binary)))
        drivers = Drivers(system.python, system.client, scale.clients)
        stack.callback(drivers.stop)
        drivers.ask(lambda _: {"op": "open", "port": redis.port}, 60, [redis])
        used = redis.used_memory()
        figures = enqueue_rows(drivers, system, scale, redis.rss, [redis])
        queued = figures["queued"] or 1
        figures["redis_used_memory"] = (redis.used_memory() - used) / queued
        redis.command("FLUSHALL")
        env = {"PEERS_REDIS_PORT": str(redis.port), "PYTHONPATH": str(HERE)}
        argv = [str(system.python), str(HERE / PEER_WORKERS[system.client])]
        worker = stack.enter_context(running(Process(argv, f"{system.label} worker", env)))
        more, _ = worker_rows(drivers, system, scale, [redis, worker])
        return figures | more


def has_journal() -> bool:
    """Whether this checkout's taskrpc-server takes `--db` (the SQLite journal)."""
    argv = [sys.executable, "-m", "backend.main", "--help"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return "--db" in done.stdout


def systems(args: argparse.Namespace) -> list[System]:
    """The columns to measure, making the venvs they need on first use."""
    wanted = set(args.systems or KEYS)
    here = Path(sys.executable)
    journal = has_journal()
    if not journal:
        log("peers: this taskrpc-server has no --db yet: no journaled column")
    # With a journal, the server keeps one by default (in the user's home): say memory only.
    memory = ("--db", ":memory:") if journal else ()
    chosen = []
    if "taskrpc" in wanted:
        chosen.append(System("taskrpc", "taskrpc", "taskrpc", here, peer=False, flags=memory))
    if "journal" in wanted and journal and not args.no_journal:
        flags = ("--db", "{folder}/journal.sqlite3")
        chosen.append(System("journal", "taskrpc journaled", "taskrpc", here, False, flags=flags))
    if "uvloop" in wanted and not args.no_uvloop:
        uvloop = envs.ensure_uvloop()
        label = "taskrpc on uvloop"
        chosen.append(System("uvloop", label, "taskrpc", here, False, flags=memory, uvloop=uvloop))
    if "rq" in wanted:
        chosen.append(System("rq", "RQ", "rq", envs.ensure_venv(envs.RQ_CELERY), peer=True))
    if "arq" in wanted:
        chosen.append(System("arq", "arq", "arq", envs.ensure_venv(envs.ARQ), True, False))
    if "celery" in wanted:
        python = envs.ensure_venv(envs.RQ_CELERY)
        chosen.append(System("celery", "Celery", "celery", python, peer=True))
    return chosen


def rotated(items: list[System], by: int) -> Iterator[System]:
    for index in range(len(items)):
        yield items[(index + by) % len(items)]


def measure(chosen: list[System], scale: Scale, redis_binary: str) -> Results:
    results = Results()
    for number in range(scale.rounds):
        for system in rotated(chosen, number):
            log(f"peers: round {number + 1}/{scale.rounds}: {system.label}")
            start = time.monotonic()
            try:
                if system.peer:
                    figures = measure_peer(system, scale, redis_binary)
                else:
                    figures = measure_taskrpc(system, scale)
            except BenchError as exc:  # the other systems still get measured
                log(f"peers:   FAILED: {exc}")
                results.failures.append(f"{system.label}, round {number + 1}: {exc}")
                continue
            results.add(system, figures)
            shown = ", ".join(f"{k} {v:,.2f}" for k, v in figures.items() if v is not None)
            log(f"peers:   {time.monotonic() - start:.1f} s: {shown}")
    return results


def cell(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    middle = f"{statistics.median(values):,.{digits}f}".replace(",", " ")
    if len(values) == 1:
        return middle
    return f"{middle} ({min(values):,.{digits}f}..{max(values):,.{digits}f})".replace(",", " ")


def ratio(ours: list[float], peers: dict[str, list[float]], row: Row) -> str:
    """Our median ÷ the best peer's median, naming that peer; `-` if either is missing."""
    medians = {name: statistics.median(values) for name, values in peers.items() if values}
    if not ours or not medians:
        return "-"
    pick = max if row.higher_is_better else min
    best = pick(medians, key=lambda name: medians[name])
    return f"{statistics.median(ours) / medians[best]:.2f} ({best})"


def table(chosen: list[System], results: Results) -> str:
    """The Markdown table: one column per system (median and min..max), then our ratios."""
    ours = [s for s in chosen if not s.peer]
    peers = [s for s in chosen if s.peer]
    header = ["row", *(s.label for s in chosen), *(f"{s.label} ÷ best peer" for s in ours)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in ROWS:
        digits = 2 if row.key == "latency" else 0
        cells = [cell(results.values(s, row), digits) for s in chosen]
        against = replace(row, key=row.peers_key) if row.peers_key else row
        by_peer = {s.label: results.values(s, against) for s in peers}
        cells += [ratio(results.values(s, row), by_peer, row) for s in ours]
        lines.append("| " + " | ".join([row.title, *cells]) + " |")
    return "\n".join(lines)


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs ({model}), load average {load}"


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench peers", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small smoke run (1 round)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3)")
    parser.add_argument("--drain-jobs", type=int, help="jobs per drain (default 1000)")
    parser.add_argument("--no-uvloop", action="store_true", help="skip the uvloop A/B column")
    parser.add_argument("--no-journal", action="store_true", help="skip the journaled column")
    parser.add_argument("--systems", nargs="+", choices=KEYS, help="measure only these")
    return parser.parse_args(argv)


def _stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl+C, so every process started here is stopped on the way out."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    scale = QUICK if args.quick else Scale()
    if args.rounds:
        scale = replace(scale, rounds=args.rounds)
    if args.drain_jobs:
        scale = replace(scale, drain_jobs=args.drain_jobs)
    _stop_on_sigterm()
    started = time.monotonic()
    before = machine()
    try:
        redis_binary = envs.redis_server()
        chosen = systems(args)
        results = measure(chosen, scale, redis_binary)
    except (SetupError, BenchError) as exc:
        print(f"bench peers: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench peers: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    print(table(chosen, results))
    print()
    print(report(chosen, results, scale, before, time.monotonic() - started))
    RESULTS.write_text(json.dumps(asdict(results) | {"scale": asdict(scale)}, indent=1))
    for failure in results.failures:
        print(f"bench peers: FAILED: {failure}", file=sys.stderr)
    return 1 if results.failures else 0


def report(
    chosen: list[System], results: Results, scale: Scale, before: str, elapsed: float
) -> str:
    """The lines under the table: what ran, on what, and the figures that are not rows."""
    rq_celery = envs.versions(envs.RQ_CELERY.python, ["rq", "celery", "kombu", "redis"])
    arq = envs.versions(envs.ARQ.python, ["arq", "redis"])
    redis = subprocess.run(
        [envs.redis_server(), "--version"], capture_output=True, text=True, check=False
    ).stdout.split()[2:3]
    lines = [
        f"{scale.rounds} rounds, {scale.clients} client processes, windows of {scale.window:g} s, "
        f"latency over {scale.latency_jobs} jobs, drains of {scale.drain_jobs} jobs; "
        f"{elapsed:.0f} s in all.",
        f"Machine: before {before}; after {machine()}. "
        f"{platform.python_implementation()} {platform.python_version()}, redis-server "
        f"{' '.join(redis)}; {'; '.join(v for v in (rq_celery, arq) if v)}.",
    ]
    bullets = "\n".join(notes(system, results) for system in chosen)
    return "\n\n".join([*lines, bullets])


def notes(system: System, results: Results) -> str:
    """One line of a system's medians that are not rows: CPU per call on each side, and more."""

    def median_of(key: str) -> float | None:
        values = [v for f in results.rounds.get(system.key, []) if (v := f.get(key)) is not None]
        return statistics.median(values) if values else None

    cpu = []
    for row in CPU_NOTES:
        server, client = median_of(f"{row}_server_us"), median_of(f"{row}_client_us")
        if server is not None and client is not None:
            cpu.append(f"{row.replace('_', ' ')} {server:.0f} + {client:.0f}")
    parts = [f"CPU µs per call (per job when batched), server + clients: {', '.join(cpu)}"]
    if (raw := median_of("raw_status_server_us")) is not None:
        parts.append(f"server CPU per status call from bench.load {raw:.0f} µs")
    if (drain_us := median_of("drain_server_us")) is not None:
        parts.append(f"server CPU per job in the drain {drain_us:.0f} µs")
    if (info_us := median_of("drain_info_server_us")) is not None:
        parts.append(f"{info_us:.0f} µs at log level info")
    if (p90 := median_of("latency_p90")) is not None:
        parts.append(f"latency p90 {p90:.2f} ms")
    if (used := median_of("redis_used_memory")) is not None:
        parts.append(f"redis used_memory {used:.0f} B per job")
    if (queued := median_of("queued")) is not None:
        parts.append(f"{queued:,.0f} jobs queued for the memory row".replace(",", " "))
    return f"- {system.label}: " + "; ".join(parts)
