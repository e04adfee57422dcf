"""A fleet against the backend: N virtual cabinets speaking the real protocol, side by side with
the backend this one replaced (tools/bench/backends.py), on one PostgreSQL, in one run.

Each virtual cabinet has the cabinet's two keep-alive connections: one long-polls for commands
(`wait=20`, `max_bytes` as the cabinet sends it), the other uploads its outbox in batches as records
appear: telemetry every minute and sales at `--sales-per-hour`, both `--speedup` times faster, and
a `command_result` for every command it receives. Records have the cabinet's own formats. An
operator issues `--commands-per-second` set_setpoint commands to random cabinets through the
operator API. Counted after a ramp-up: uploads/s, records/s, upload acknowledgement p50/p99,
command issued -> delivered p50/p99 (from the operator's request to the cabinet reading it), the
backend's and PostgreSQL's CPU and resident memory, errors; then every cabinet's queue is drained
and the database is checked: every record generated is stored exactly once.

    .venv/bin/python tools/bench/fleet.py [--cabinets 1000] [--speedup 10] [--seconds 60]
        [--only new|old] [--workers N]
    .venv/bin/python tools/bench/fleet.py --idle-polls 10000     # long-polls held by one worker
    .venv/bin/python tools/bench/fleet.py --sequential 2000      # CPU per request, one at a time

Benchmarks measure; they never assert. The machine's load is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tools.bench.backends import (NewBackend, OldBackend, pg_database, postgres_pids,  # noqa: E402
                                  usage)
from tools.bench.common import percentile  # noqa: E402

PAGE_BYTES = 7 * 1024 * 1024
WAIT = 20


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Http:
    """One keep-alive HTTP/1.1 connection (the load generator's own: a library client would cost
    more CPU than the backend it measures, on the same two cores)."""

    def __init__(self, url: str):
        self.host, port = url.split("//", 1)[1].rsplit(":", 1)
        self.port = int(port)
        self.reader = self.writer = None

    async def request(self, method: str, path: str, token: str, body: bytes | None = None,
                      timeout: float = 60) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Authorization: Bearer {token}\r\n")
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        try:
            self.writer.write(head.encode() + b"\r\n" + (body or b""))
            status_line = await asyncio.wait_for(self.reader.readline(), timeout)
            if not status_line:
                raise ConnectionError("closed by the backend")
            status, length, close = int(status_line.split()[1]), 0, False
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and "close" in value.lower():
                    close = True
            data = await self.reader.readexactly(length)
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Stats:
    def __init__(self):
        self.measuring = False
        self.uploads = self.records = 0
        self.ack_ms: list[float] = []
        self.delivered_ms: list[float] = []
        self.errors: Counter = Counter()
        self.issued: dict[str, float] = {}      # command id -> when the operator asked
        self.seen: set[str] = set()

    def delivered(self, command_id: str) -> None:
        if command_id in self.seen:
            return
        self.seen.add(command_id)
        asked = self.issued.pop(command_id, None)
        if asked is not None and self.measuring:
            self.delivered_ms.append((time.monotonic() - asked) * 1000)


class VirtualCabinet:
    def __init__(self, cabinet_id: str, token: str, url: str, stats: Stats, args):
        self.id, self.token, self.stats, self.args = cabinet_id, token, stats, args
        self.upload_http, self.poll_http = Http(url), Http(url)
        self.seq = 0
        self.pending: list[dict] = []
        self.generated = 0
        self.queued = asyncio.Event()
        self.producing = True

    def add(self, kind: str, body: dict) -> None:
        self.seq += 1
        self.generated += 1
        self.pending.append({"record_id": str(uuid.uuid4()), "seq": self.seq, "kind": kind,
                             "cabinet_id": self.id, "software_version": "fleet-bench",
                             "created_at": utc_now(), "body": body})
        self.queued.set()

    async def produce(self) -> None:
        minute = 60 / self.args.speedup
        sale_every = 3600 / (self.args.sales_per_hour * self.args.speedup)
        next_telemetry = time.monotonic() + random.uniform(0, minute)
        next_sale = time.monotonic() + random.expovariate(1 / sale_every)
        while self.producing:
            now = time.monotonic()
            if now >= next_telemetry:
                self.add("telemetry", {"celsius": round(random.gauss(4, 0.5), 2),
                                       "setpoint_celsius": 4.0, "compressor": random.random() < .4,
                                       "heater": False, "compressor_duty": 0.41,
                                       "compressor_on_seconds_total": 1234.5,
                                       "compressor_starts": 17, "door_open": False,
                                       "sampled_at": utc_now()})
                next_telemetry += minute
            if now >= next_sale:
                self.add("sale", _sale())
                next_sale += random.expovariate(1 / sale_every)
            await asyncio.sleep(max(0.05, min(next_telemetry, next_sale) - time.monotonic()))

    async def upload(self) -> None:
        while self.producing or self.pending:
            if not self.pending:
                self.queued.clear()
                try:
                    await asyncio.wait_for(self.queued.wait(), 1)
                except TimeoutError:
                    pass
                continue
            batch = self.pending[:500]
            body = json.dumps({"cabinet_id": self.id, "records": batch,
                               "max_command_bytes": PAGE_BYTES}).encode()
            started = time.monotonic()
            try:
                status, reply = await self.upload_http.request(
                    "POST", f"/v1/cabinets/{self.id}/records", self.token, body)
            except (OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError) as exc:
                self.stats.errors[f"upload {type(exc).__name__}"] += 1
                await asyncio.sleep(1)
                continue
            if status != 200:
                self.stats.errors[f"upload HTTP {status}"] += 1
                await asyncio.sleep(1)
                continue
            ack = json.loads(reply)
            if ack.get("rejected"):
                self.stats.errors["records rejected"] += len(ack["rejected"])
            del self.pending[:len(batch)]
            if self.stats.measuring:
                self.stats.uploads += 1
                self.stats.records += len(batch)
                self.stats.ack_ms.append((time.monotonic() - started) * 1000)
            self._commands(ack.get("commands") or [])

    async def poll(self) -> None:
        after = 0
        while self.producing:
            try:
                status, reply = await self.poll_http.request(
                    "GET", f"/v1/cabinets/{self.id}/commands?after={after}&wait={WAIT}"
                    f"&max_bytes={PAGE_BYTES}", self.token, timeout=WAIT + 30)
            except (OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError) as exc:
                self.stats.errors[f"long-poll {type(exc).__name__}"] += 1
                await asyncio.sleep(1)
                continue
            if status != 200:
                self.stats.errors[f"long-poll HTTP {status}"] += 1
                await asyncio.sleep(1)
                continue
            commands = json.loads(reply)["commands"]
            after = max([after, *(c["seq"] for c in commands)])
            self._commands(commands)

    def _commands(self, commands: list[dict]) -> None:
        for command in commands:
            if command["command_id"] in self.stats.seen:
                continue
            self.stats.delivered(command["command_id"])
            self.add("command_result", {"command_id": command["command_id"],
                                        "type": command["type"], "status": "done",
                                        "detail": "", "result": {}})

    def close(self) -> None:
        self.upload_http.close()
        self.poll_http.close()


def _sale() -> dict:
    count = random.choice((1, 1, 1, 2))
    return {"session_id": str(uuid.uuid4()), "authorised_at": utc_now(),
            "authorisation": {"method": "qr", "subject": f"acct-{random.randrange(5000)}",
                              "role": "shopper"},
            "door_opened_at": utc_now(), "door_closed_at": utc_now(), "settled_at": utc_now(),
            "shelves": {}, "flags": [], "planogram_version": 3,
            "lines": [{"sku": "water-550ml", "shelf": 1, "count": count, "name_zh": "矿泉水",
                       "name_bo": "ཆུ།", "name_en": "Water", "unit_price_fen": 200,
                       "amount_fen": 200 * count}],
            "total_fen": 200 * count}


async def operator(url: str, token: str, cabinets: list[VirtualCabinet], stats: Stats,
                   per_second: float, running) -> None:
    http = Http(url)
    while running():
        target = random.choice(cabinets)
        asked = time.monotonic()
        body = json.dumps({"type": "set_setpoint", "args": {"celsius": 4.0},
                           "lifetime_seconds": 600}).encode()
        try:
            status, reply = await http.request(
                "POST", f"/v1/operator/cabinets/{target.id}/commands", token, body)
            if status == 201:
                command_id = json.loads(reply)["command_id"]
                if command_id not in stats.seen:
                    stats.issued[command_id] = asked
            else:
                stats.errors[f"issue HTTP {status}"] += 1
        except (OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError) as exc:
            stats.errors[f"issue {type(exc).__name__}"] += 1
        await asyncio.sleep(max(0.0, 1 / per_second - (time.monotonic() - asked)))
    http.close()


async def run_fleet(backend, args, pg_data: Path) -> dict:
    ids = [f"cab-{i:05d}" for i in range(args.cabinets)]
    tokens = backend.register(ids)
    stats = Stats()
    cabinets = [VirtualCabinet(c, tokens[c], backend.url, stats, args) for c in ids]
    tasks, polls = [], []
    for i, cabinet in enumerate(cabinets):  # connect over the ramp, as a fleet does
        polls.append(asyncio.create_task(cabinet.poll()))
        tasks += [asyncio.create_task(cabinet.upload()), asyncio.create_task(cabinet.produce())]
        await asyncio.sleep(args.ramp / len(cabinets))
    issuing = True
    tasks.append(asyncio.create_task(operator(backend.url, backend.operator_token, cabinets,
                                              stats, args.commands_per_second,
                                              lambda: issuing)))
    await asyncio.sleep(5)
    before = usage(backend.pids()), usage(postgres_pids(pg_data)), time.monotonic()
    stats.measuring = True
    await asyncio.sleep(args.seconds)
    stats.measuring = False
    after = usage(backend.pids()), usage(postgres_pids(pg_data)), time.monotonic()
    elapsed = after[2] - before[2]
    issuing = False
    for cabinet in cabinets:
        cabinet.producing = False
    # Long-polls stop first: a command read after the last upload would add a command_result
    # that nobody sends (counted lost, though the backend never saw it).
    for task in polls:
        task.cancel()
    await asyncio.gather(*polls, return_exceptions=True)
    drain_end = time.monotonic() + 60
    while any(c.pending for c in cabinets) and time.monotonic() < drain_end:
        await asyncio.sleep(0.2)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for cabinet in cabinets:
        cabinet.close()
    generated = {c.id: c.generated for c in cabinets}
    backend.close()  # its connections free for the check (the old one holds one per thread)
    stored, sessions, distinct_sessions = _stored(backend.db_url)
    lost = sum(max(0, n - stored.get(c, 0)) for c, n in generated.items())
    extra = sum(max(0, stored.get(c, 0) - n) for c, n in generated.items())
    return {"backend": backend.label, "uploads_per_s": stats.uploads / elapsed,
            "records_per_s": stats.records / elapsed,
            "ack_p50": percentile(stats.ack_ms, 50) if stats.ack_ms else None,
            "ack_p99": percentile(stats.ack_ms, 99) if stats.ack_ms else None,
            "delivered_p50": percentile(stats.delivered_ms, 50) if stats.delivered_ms else None,
            "delivered_p99": percentile(stats.delivered_ms, 99) if stats.delivered_ms else None,
            "commands": len(stats.delivered_ms),
            "backend_cpu": (after[0][0] - before[0][0]) / elapsed * 100,
            "backend_rss": after[0][1], "postgres_cpu": (after[1][0] - before[1][0]) / elapsed * 100,
            "errors": dict(stats.errors), "errors_logged": backend.errors_logged(),
            "generated": sum(generated.values()),
            "stored": sum(stored.values()), "lost": lost, "duplicated": extra
            + (sessions - distinct_sessions)}


def _stored(db_url: str) -> tuple[dict[str, int], int, int]:
    """Records per cabinet, and sales rows against distinct sale sessions (a sale stored twice
    under two record ids would show here)."""
    import psycopg

    with psycopg.connect(db_url) as db:
        per = dict(db.execute("SELECT cabinet_id, count(*) FROM records "
                              "WHERE cabinet_id LIKE 'cab-%' GROUP BY cabinet_id").fetchall())
        column = "record" if db.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_name = 'records' "
            "AND column_name = 'record'").fetchone() else "body"
        cast = "" if column == "record" else "::jsonb"
        sessions, distinct = db.execute(
            f"SELECT count(*), count(DISTINCT ({column}{cast})->'body'->>'session_id') "
            f"FROM records WHERE kind = 'sale' AND cabinet_id LIKE 'cab-%'").fetchone()
    return per, sessions, distinct


def _ms(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def report(rows: list[dict], args) -> None:
    load = os.getloadavg()
    print(f"\n{args.cabinets} virtual cabinets at {args.speedup}x real rate (telemetry every "
          f"{60 / args.speedup:.0f} s, {args.sales_per_hour} sales/h x {args.speedup}), "
          f"{args.commands_per_second} commands/s, {args.seconds} s measured; PostgreSQL, "
          f"backend and generator on this machine ({os.cpu_count()} cores, load "
          f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f})")
    columns = [("uploads/s", "uploads_per_s", "{:,.0f}"), ("records/s", "records_per_s", "{:,.0f}"),
               ("ack p50 ms", "ack_p50", None), ("ack p99 ms", "ack_p99", None),
               ("cmd p50 ms", "delivered_p50", None), ("cmd p99 ms", "delivered_p99", None),
               ("commands", "commands", "{:,}"), ("backend CPU %", "backend_cpu", "{:.0f}"),
               ("backend MB", "backend_rss", "{:.0f}"), ("PG CPU %", "postgres_cpu", "{:.0f}"),
               ("5xx logged", "errors_logged", "{:,}"), ("generated", "generated", "{:,}"), ("stored", "stored", "{:,}"),
               ("lost", "lost", "{}"), ("duplicated", "duplicated", "{}")]
    width = max(len(r["backend"]) for r in rows) + 2
    print(f"{'':<16}" + "".join(f"{r['backend']:>{width}}" for r in rows))
    for title, key, fmt in columns:
        cells = [(_ms(r[key]) if fmt is None else fmt.format(r[key])) for r in rows]
        print(f"{title:<16}" + "".join(f"{c:>{width}}" for c in cells))
    for r in rows:
        print(f"errors ({r['backend']}): {r['errors'] or 'none'}")
    print(json.dumps(rows, default=str))


async def idle_polls(backend, n: int, ramp: float) -> dict:
    """n long-polls (wait=120) held open on one cabinet, then one command that must reach all."""
    token = backend.register(["cab-idle"])["cab-idle"]
    connections = [Http(backend.url) for _ in range(n)]
    replies: list[float] = []
    asked = [0.0]
    failures: Counter = Counter()

    async def hold(http: Http) -> None:
        try:
            status, reply = await http.request("GET", "/v1/cabinets/cab-idle/commands?wait=120",
                                               token, timeout=150)
            if status == 200 and json.loads(reply)["commands"]:
                replies.append(time.monotonic() - asked[0])
            else:
                failures[f"HTTP {status}"] += 1
        except Exception as exc:  # counted, not raised: the figure is how many held
            failures[type(exc).__name__] += 1
    started_rss = usage(backend.pids())[1]
    tasks = []
    for i, http in enumerate(connections):  # over the ramp, as a fleet reconnects
        tasks.append(asyncio.create_task(hold(http)))
        if i % 100 == 99:
            await asyncio.sleep(100 * ramp / n)
    # Settled: every request is in and waiting once the backend's CPU falls quiet.
    for _ in range(120):
        before = usage(backend.pids())[0]
        await asyncio.sleep(1)
        if usage(backend.pids())[0] - before < 0.05:
            break
    pid = backend.pids()[0]
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    cpu0, rss = usage(backend.pids())
    await asyncio.sleep(10)
    idle_cpu = (usage(backend.pids())[0] - cpu0) / 10 * 100
    waiting = sum(1 for t in tasks if not t.done())
    asked[0] = time.monotonic()
    http = Http(backend.url)
    status, _ = await http.request("POST", "/v1/operator/cabinets/cab-idle/commands",
                                   backend.operator_token, json.dumps(
                                       {"type": "restart"}).encode())
    http.close()
    await asyncio.wait(tasks, timeout=60)
    for t in tasks:
        t.cancel()
    for c in connections:
        c.close()
    return {"backend": backend.label, "held": waiting, "open_fds": fds,
            "rss_mb": rss, "rss_before_mb": started_rss, "idle_cpu": idle_cpu,
            "woken": len(replies), "wake_all_s": max(replies) if replies else None,
            "failures": dict(failures)}


async def sequential(backend, n: int) -> dict:
    """One cabinet, one connection, one request at a time: n uploads of one telemetry record,
    then n empty long-polls (wait=0); the backend's CPU and the wall time per request."""
    token = backend.register(["cab-seq"])["cab-seq"]
    http, seq, figures = Http(backend.url), 0, {"backend": backend.label}
    for name in ("upload", "poll"):
        cpu, started = usage(backend.pids())[0], time.perf_counter()
        for _ in range(n):
            if name == "upload":
                seq += 1
                body = json.dumps({"cabinet_id": "cab-seq", "max_command_bytes": PAGE_BYTES,
                                   "records": [{
                                       "record_id": str(uuid.uuid4()), "seq": seq,
                                       "kind": "telemetry", "cabinet_id": "cab-seq",
                                       "software_version": "fleet-bench", "created_at": utc_now(),
                                       "body": {"celsius": 4.1, "door_open": False}}]}).encode()
                status, _ = await http.request("POST", "/v1/cabinets/cab-seq/records", token, body)
            else:
                status, _ = await http.request("GET", "/v1/cabinets/cab-seq/commands?wait=0",
                                               token)
            if status != 200:
                raise RuntimeError(f"{name}: HTTP {status}")
        figures[f"{name}_wall_ms"] = (time.perf_counter() - started) / n * 1000
        figures[f"{name}_cpu_ms"] = (usage(backend.pids())[0] - cpu) / n * 1000
    http.close()
    return figures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cabinets", type=int, default=1000)
    p.add_argument("--speedup", type=float, default=10)
    p.add_argument("--sales-per-hour", type=float, default=4)
    p.add_argument("--commands-per-second", type=float, default=2)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--ramp", type=float, default=10)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--only", choices=("new", "old"))
    p.add_argument("--idle-polls", type=int)
    p.add_argument("--sequential", type=int, metavar="N",
                   help="instead: N requests one at a time, the backend's CPU per request")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the backends
    from tools.backend.postgres import PrivatePostgres

    pg = PrivatePostgres().start()
    rows = []
    try:
        for i, kind in enumerate(("old", "new")):
            if args.only and kind != args.only:
                continue
            url = pg_database(pg, f"fleet{i}")
            backend = (OldBackend(url) if kind == "old"
                       else NewBackend(url, workers=args.workers))
            try:
                if args.sequential:
                    rows.append(asyncio.run(sequential(backend, args.sequential)))
                elif args.idle_polls:
                    rows.append(asyncio.run(idle_polls(backend, args.idle_polls, args.ramp)))
                else:
                    rows.append(asyncio.run(run_fleet(backend, args, pg.data)))
            finally:
                backend.close()
    finally:
        pg.stop()
    if args.sequential:
        print(f"\none cabinet, {args.sequential} requests one at a time on one keep-alive "
              f"connection ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
        print(f"{'':46}{'upload: wall, backend CPU':>28}{'empty long-poll: wall, CPU':>30}")
        for r in rows:
            print(f"{r['backend']:46}{r['upload_wall_ms']:>17.2f} ms{r['upload_cpu_ms']:>8.2f} ms"
                  f"{r['poll_wall_ms']:>19.2f} ms{r['poll_cpu_ms']:>8.2f} ms")
        print(json.dumps(rows, default=str))
    elif args.idle_polls:
        print(f"\n{args.idle_polls} idle long-polls (wait=120) on one backend process, then one "
              f"command to their cabinet ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
        for r in rows:
            print(f"{r['backend']}: {r['held']:,} held, {r['open_fds']:,} open files, "
                  f"{r['rss_mb']:.0f} MB resident ({r['rss_before_mb']:.0f} before), "
                  f"{r['idle_cpu']:.1f}% CPU while idle, woken {r['woken']:,} in "
                  f"{_ms(r['wake_all_s'] and r['wake_all_s'] * 1000)} ms; failures "
                  f"{r['failures'] or 'none'}")
        print(json.dumps(rows, default=str))
    else:
        report(rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
