#!/usr/bin/env python3
"""Database fault test of contacts-api (driven by scripts/fault-test; Python 3.11, stdlib only).

Against a throwaway PostgreSQL cluster that scripts/fault-test created (stopped) and drops:

1. start the server while the cluster is down: it must stay up, log "database not ready,
   retrying", and serve once the cluster starts;
2. slow clients (CLIENT_TIMEOUT_SECONDS=2): partial request line, partial headers, partial
   body: 408 or a closed connection within the timeout + 2 s;
3. traffic from several threads (session upserts, repeat upserts, list and get) while the cluster
   is restarted twice (`stop -m fast`, then `stop -m immediate`, a few seconds each): every answer
   is 2xx or 503 problem+json with Retry-After (never 500, another status, a timeout or a reset);
   every request started 5 s after the database is back succeeds; /healthz stays 200; /readyz is
   503 while the database is down and 200 after;
4. a restart with no traffic but /readyz polls: /readyz and the next requests succeed within 5 s;
5. every acknowledged upsert (200/201) is in the database (psql) and served by the API;
6. SIGTERM: exit status 0 with the drain line in the log.

Prints a summary and exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

HTTP_TIMEOUT = 10.0  # a request that takes longer is a hang, hence a failure
RECOVERY_SECONDS = 5.0  # every request started this long after the database is back succeeds
CLIENT_TIMEOUT = 2  # CLIENT_TIMEOUT_SECONDS of the server under test
POOL_SIZE = 16  # DATABASE_POOL_SIZE of the server under test
CHATBOT = "fault-bot"
ACCOUNT = 1
DRAIN_LINE = "stopped: server shut down, database pool closed"

failures: list[str] = []
failures_lock = threading.Lock()


def fail(message: str) -> None:
    with failures_lock:
        failures.append(message)
    print(f"FAIL: {message}", flush=True)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# The PostgreSQL cluster


class Cluster:
    def __init__(self, version: str, name: str, port: int):
        self.version, self.name, self.port = version, name, port

    def ctl(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run_ctl(self, *args: str) -> None:
        p = self.ctl(*args)
        out, _ = p.communicate(timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"pg_ctlcluster {' '.join(args)} failed: {out.strip()}")

    def is_ready(self) -> bool:
        r = subprocess.run(
            ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-t", "1"],
            check=False,
        )
        return r.returncode == 0

    def start_and_wait(self) -> float:
        """Starts the cluster; returns the monotonic time pg_isready first succeeded."""
        p = self.ctl("start")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if p.poll() not in (None, 0):
                raise RuntimeError(f"pg_ctlcluster start failed: {p.communicate()[0].strip()}")
            if self.is_ready():
                back = time.monotonic()
                out, _ = p.communicate(timeout=60)
                if p.returncode != 0:
                    raise RuntimeError(f"pg_ctlcluster start failed: {out.strip()}")
                return back
            time.sleep(0.05)
        raise RuntimeError("the cluster did not accept connections within 60 s")

    def psql(self, db: str, sql: str) -> str:
        r = subprocess.run(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
             "-p", str(self.port), "-U", "postgres", "-d", db, "-c", sql],
            check=True, capture_output=True, text=True,
        )
        return r.stdout


# --------------------------------------------------------------------------------------------
# HTTP


@dataclass
class Result:
    kind: str
    start: float
    end: float
    status: int | None  # None: no HTTP answer (timeout, reset, refused)
    error: str = ""
    problem_ok: bool = True  # for non-2xx answers: problem+json, and for 503 Retry-After too
    detail: str = ""


class Client:
    """One keep-alive connection per thread; reconnects after a transport error."""

    def __init__(self, port: int, token: str | None):
        self.port, self.token = port, token
        self.conn: http.client.HTTPConnection | None = None

    def request(self, kind: str, method: str, path: str, body: dict | None = None,
                content_type: str = "application/json") -> tuple[Result, dict | None]:
        headers = {"Host": "127.0.0.1"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        start = time.monotonic()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
            self.conn.request(method, path, body=data, headers=headers)
            resp = self.conn.getresponse()
            raw = resp.read()
            end = time.monotonic()
        except (OSError, http.client.HTTPException) as e:
            end = time.monotonic()
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return Result(kind, start, end, None, error=f"{type(e).__name__}: {e}"), None
        if resp.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = None
        parsed = None
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            pass
        result = Result(kind, start, end, resp.status)
        if resp.status >= 300:
            ctype = resp.getheader("Content-Type", "")
            ok = ctype.startswith("application/problem+json") and isinstance(parsed, dict) \
                and parsed.get("status") == resp.status
            if resp.status == 503 and kind != "readyz":
                ok = ok and resp.getheader("Retry-After") is not None \
                    and parsed.get("code") == "service_unavailable"
            if kind == "readyz":  # the probe answers its own JSON, with Retry-After
                ok = resp.status == 503 and resp.getheader("Retry-After") is not None
            result.problem_ok = ok
            result.detail = f"{ctype} {raw[:200]!r}"
        return result, parsed


# --------------------------------------------------------------------------------------------
# Traffic


@dataclass
class Acked:
    session: str
    contact_id: int
    at: float


@dataclass
class Shared:
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    results: list[Result] = field(default_factory=list)
    acked: dict[str, Acked] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    def record(self, r: Result) -> None:
        with self.lock:
            self.results.append(r)


def upserter(shared: Shared, port: int, token: str, worker: int, run_id: str) -> None:
    client = Client(port, token)
    rng = random.Random(worker)
    n = 0
    while not shared.stop.is_set():
        repeat = None
        with shared.lock:
            if shared.acked and rng.random() < 0.25:
                repeat = rng.choice(list(shared.acked.values())[-200:])
        if repeat is not None:
            session, kind = repeat.session, "upsert-repeat"
        else:
            n += 1
            session, kind = f"ft-{run_id}-w{worker}-{n}", "upsert-new"
        body = {"channel": "website", "name": f"Fault Test {worker}-{n}",
                "payload": {"worker": worker, "n": n}}
        r, doc = client.request(kind, "PUT", f"/api/v1/chatbots/{CHATBOT}/sessions/{session}/contact",
                                body)
        shared.record(r)
        if r.status in (200, 201) and isinstance(doc, dict):
            cid = doc.get("id")
            with shared.lock:
                if repeat is not None:
                    if r.status != 200 or cid != repeat.contact_id:
                        shared.mismatches.append(
                            f"repeat upsert of {session}: {r.status} contact {cid}, "
                            f"acknowledged before as {repeat.contact_id}")
                else:
                    if r.status != 201:
                        shared.mismatches.append(f"new session {session} answered {r.status}")
                    shared.acked[session] = Acked(session, cid, r.end)
                    shared.ids.append(cid)
        time.sleep(0.005)


def reader(shared: Shared, port: int, token: str, worker: int) -> None:
    client = Client(port, token)
    rng = random.Random(100 + worker)
    while not shared.stop.is_set():
        with shared.lock:
            cid = rng.choice(shared.ids[-500:]) if shared.ids else None
        if cid is None or rng.random() < 0.4:
            r, _ = client.request("list", "GET", "/api/v1/contacts?limit=5")
        else:
            r, _ = client.request("get", "GET", f"/api/v1/contacts/{cid}")
        shared.record(r)
        time.sleep(0.005)


def prober(shared: Shared, port: int, path: str, kind: str, interval: float) -> None:
    client = Client(port, None)
    while not shared.stop.is_set():
        r, _ = client.request(kind, "GET", path)
        shared.record(r)
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# Checks


@dataclass
class Outage:
    label: str
    stop_at: float  # just before the stop command
    down_at: float  # the stop command returned: the database is down
    start_at: float  # just before the start command
    back_at: float  # pg_isready answered

    @property
    def window_end(self) -> float:
        return self.back_at + RECOVERY_SECONDS


def read_response(s: socket.socket) -> bytes:
    """Reads one HTTP response (headers and Content-Length body), or up to EOF."""
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip() or 0)
            if len(body) >= length:
                return data
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def check_slow_clients(port: int, token: str) -> list[str]:
    """Slow clients in parallel; each must get 408 or a close within the timeout + 2 s."""
    limit = CLIENT_TIMEOUT + 2
    cases = {
        "nothing sent": b"",
        "partial request line": b"GET /heal",
        "partial headers": b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n",
        "partial body": (
            b"PUT /api/v1/chatbots/fault-bot/sessions/slow/contact HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\nAuthorization: Bearer " + token.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"channel\":"
        ),
    }
    lines: list[str] = []
    lock = threading.Lock()

    def one(name: str, payload: bytes) -> None:
        s = socket.create_connection(("127.0.0.1", port), timeout=limit + 3)
        t0 = time.monotonic()
        data = b""
        try:
            if payload:
                s.sendall(payload)
            try:
                data = read_response(s)
                outcome = "closed" if not data else data.split(b"\r\n", 1)[0].decode(errors="replace")
            except ConnectionResetError:
                outcome = "reset"
            except socket.timeout:
                outcome = "no answer"
        finally:
            s.close()
        elapsed = time.monotonic() - t0
        ok = elapsed <= limit and (outcome in ("closed", "reset") or " 408 " in outcome + " ")
        if name == "partial body":
            # The body timeout is the service's own 408 problem+json.
            ok = ok and " 408" in outcome and b"application/problem+json" in data.lower()
        with lock:
            lines.append(f"  slow client, {name}: {outcome!r} after {elapsed:.1f} s"
                         f" (limit {limit} s) {'ok' if ok else 'FAILED'}")
            if not ok:
                fail(f"slow client ({name}): {outcome!r} after {elapsed:.1f} s, "
                     f"expected 408 or a close within {limit} s; got {data[:300]!r}")

    threads = [threading.Thread(target=one, args=c) for c in cases.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(lines)


def phase_of(r: Result, outages: list[Outage]) -> str:
    for o in outages:
        if r.end >= o.stop_at and r.start <= o.window_end:
            return o.label
    return "steady"


def analyse(shared: Shared, outages: list[Outage]) -> list[str]:
    out: list[str] = []
    by_phase: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in shared.results:
        phase = phase_of(r, outages)
        label = str(r.status) if r.status is not None else r.error.split(":")[0]
        by_phase[(phase, r.kind)][label] += 1
        ok_status = r.status is not None and 200 <= r.status < 300
        if phase == "steady":
            if not ok_status:
                fail(f"{r.kind} outside any outage window answered {r.status or r.error} "
                     f"{r.detail}")
            continue
        outage = next(o for o in outages if o.label == phase)
        at = f"{r.start - outage.back_at:+.2f} s from db back"
        if r.status is None:
            fail(f"{phase}: {r.kind} got no answer ({r.error}) {at}")
        elif r.kind == "healthz":
            if r.status != 200:
                fail(f"{phase}: /healthz answered {r.status} {at}")
        elif not ok_status and r.status != 503:
            fail(f"{phase}: {r.kind} answered {r.status} {at}: {r.detail}")
        elif r.status == 503 and not r.problem_ok:
            fail(f"{phase}: {r.kind} 503 without problem+json/Retry-After {at}: {r.detail}")
        elif r.kind == "readyz" and r.status == 200 and r.start >= outage.down_at \
                and r.end <= outage.start_at:
            fail(f"{phase}: /readyz answered 200 while the database was down {at}")
    slow_health = [r for r in shared.results if r.kind == "healthz" and r.end - r.start > 2.0]
    if slow_health:
        worst = max(r.end - r.start for r in slow_health)
        fail(f"/healthz took more than 2 s {len(slow_health)} time(s) (worst {worst:.1f} s)")

    out.append("responses by phase and kind (status: count):")
    phases = ["steady"] + [o.label for o in outages]
    for phase in phases:
        for kind in ("upsert-new", "upsert-repeat", "list", "get", "healthz", "readyz"):
            c = by_phase.get((phase, kind))
            if c:
                counts = ", ".join(f"{k}: {v}" for k, v in sorted(c.items()))
                out.append(f"  {phase:<26} {kind:<14} {counts}")
    for o in outages:
        window = [r for r in shared.results if phase_of(r, [o]) == o.label and r.kind != "healthz"]
        bad = [r for r in window if not (r.status is not None and 200 <= r.status < 300)]
        first_ok = min((r.start for r in window
                        if r.start >= o.back_at and r.status is not None and r.status < 300),
                       default=None)
        last_bad = max((r.end for r in bad), default=None)
        ready = [r for r in window if r.kind == "readyz"]
        ready_503 = sum(1 for r in ready if r.status == 503)
        first_ready = min((r.end for r in ready if r.status == 200 and r.start >= o.back_at),
                          default=None)
        out.append(
            f"{o.label}: stop took {o.down_at - o.stop_at:.2f} s, database down "
            f"{o.back_at - o.stop_at:.2f} s; 503s: {sum(1 for r in bad if r.status == 503)}, "
            f"other failures: {sum(1 for r in bad if r.status != 503)}; first success after "
            f"back: {fmt_delta(first_ok, o.back_at)}; last 503 answered "
            f"{fmt_delta(last_bad, o.back_at)} after back; /readyz 503 x{ready_503}, 200 again "
            f"{fmt_delta(first_ready, o.back_at)} after back"
        )
        if ready_503 == 0:
            fail(f"{o.label}: /readyz never answered 503 during the outage")
        if first_ready is None:
            fail(f"{o.label}: /readyz did not answer 200 after the database came back")
        elif first_ready > o.window_end:
            fail(f"{o.label}: /readyz answered 200 only {first_ready - o.back_at:.1f} s after back")
    return out


def fmt_delta(t: float | None, ref: float) -> str:
    return "never" if t is None else f"{t - ref:+.2f} s"


# --------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--pg-version", required=True)
    ap.add_argument("--cluster", required=True)
    ap.add_argument("--pg-port", type=int, required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    t_begin = time.monotonic()

    cluster = Cluster(args.pg_version, args.cluster, args.pg_port)
    dbname = "contacts_fault"
    port = free_port()
    secret = "fault-test-" + "".join(random.choice("abcdef0123456789") for _ in range(32))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DATABASE_", "JWT_", "RATE_LIMIT_", "CLIENT_TIMEOUT"))}
    env.update({
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{args.pg_port}/{dbname}?sslmode=disable",
        "BIND_ADDR": f"127.0.0.1:{port}",
        "JWT_SECRET": secret,
        "RATE_LIMIT_UPSERTS_PER_MINUTE": "0",
        "RATE_LIMIT_REQUESTS_PER_MINUTE": "0",
        "CLIENT_TIMEOUT_SECONDS": str(CLIENT_TIMEOUT),
        "DATABASE_POOL_SIZE": str(POOL_SIZE),
        "RUST_LOG": "info",
    })
    log_path = os.path.join(args.workdir, "server.log")
    report: list[str] = []

    # 1. The server starts before its database.
    log(f"starting the server on 127.0.0.1:{port} while the cluster is down")
    with open(log_path, "wb") as log_file:
        server = subprocess.Popen([args.bin, "serve"], env=env, stdout=log_file,
                                  stderr=subprocess.STDOUT)
    with open(os.path.join(args.workdir, "server.pid"), "w") as f:
        f.write(str(server.pid))
    try:
        return run(args, cluster, server, port, env, log_path, report, dbname, t_begin)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def wait_http(port: int, path: str, want: int, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    client = Client(port, None)
    while time.monotonic() < deadline:
        r, _ = client.request("wait", "GET", path)
        if r.status == want:
            return time.monotonic()
        time.sleep(0.1)
    return None


def restart(cluster: Cluster, label: str, mode: str, pause: float) -> Outage:
    stop_at = time.monotonic()
    cluster.run_ctl("stop", "-m", mode)
    down_at = time.monotonic()
    log(f"{label}: cluster stopped (-m {mode}) in {down_at - stop_at:.2f} s; "
        f"starting it again in {pause:.1f} s")
    time.sleep(pause)
    start_at = time.monotonic()
    back_at = cluster.start_and_wait()
    log(f"{label}: cluster back after {back_at - stop_at:.2f} s (pg_isready)")
    return Outage(label, stop_at, down_at, start_at, back_at)


def run(args, cluster: Cluster, server: subprocess.Popen, port: int, env: dict, log_path: str,
        report: list[str], dbname: str, t_begin: float) -> int:
    time.sleep(3.0)
    text = open(log_path, errors="replace").read()
    retries = text.count("database not ready, retrying")
    if server.poll() is not None:
        fail(f"the server exited ({server.returncode}) while the database was down:\n{text}")
        return finish(report, t_begin)
    if retries == 0:
        fail(f"no 'database not ready, retrying' line after 3 s:\n{text}")
    report.append(f"start before the database: alive after 3 s, {retries} retry line(s)")
    back = cluster.start_and_wait()
    up = wait_http(port, "/healthz", 200, 30)
    if up is None:
        fail("the server did not serve within 30 s of the database starting")
        return finish(report, t_begin)
    report.append(f"  serving {up - back:.1f} s after the database started (retries every 2 s)")
    log(f"serving, {up - back:.1f} s after the database started")

    token = subprocess.run(
        [args.bin, "token", "--account", str(ACCOUNT), "--sub", "fault-test",
         "--scope", "contacts:read contacts:upsert", "--ttl", "1h"],
        env=env, check=True, capture_output=True, text=True).stdout.strip()

    shared = Shared()
    run_id = f"{int(time.time())}"
    threads = [threading.Thread(target=upserter, args=(shared, port, token, w, run_id))
               for w in range(4)]
    threads += [threading.Thread(target=reader, args=(shared, port, token, w)) for w in range(3)]
    threads += [threading.Thread(target=prober, args=(shared, port, "/healthz", "healthz", 0.2)),
                threading.Thread(target=prober, args=(shared, port, "/readyz", "readyz", 0.2))]
    for t in threads:
        t.daemon = True
        t.start()
    log("traffic: 4 upsert threads, 3 read threads, /healthz and /readyz probes")

    # 2. Slow clients, while the traffic warms up.
    report.append("slow clients (CLIENT_TIMEOUT_SECONDS=2):")
    report.extend(check_slow_clients(port, token))

    # 3. Two restarts under traffic.
    time.sleep(1.0)
    outages = [restart(cluster, "outage 1 (stop -m fast)", "fast", 3.5)]
    time.sleep(RECOVERY_SECONDS + 3.0)
    outages.append(restart(cluster, "outage 2 (stop -m immediate)", "immediate", 3.5))
    time.sleep(RECOVERY_SECONDS + 3.0)
    shared.stop.set()
    for t in threads:
        t.join(timeout=HTTP_TIMEOUT + 5)
    log(f"traffic stopped: {len(shared.results)} requests, {len(shared.acked)} acknowledged "
        "new sessions")
    report.extend(analyse(shared, outages))
    for m in shared.mismatches:
        fail(m)

    # 4. A restart while only /readyz polls (a pod taken out of rotation gets no traffic).
    report.extend(idle_restart(cluster, port, token))

    # 5. Every acknowledged upsert is stored and served.
    report.extend(check_acknowledged(cluster, dbname, port, token, shared, outages))

    # 6. SIGTERM.
    server.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    try:
        code = server.wait(timeout=15)
        took = time.monotonic() - t0
        text = open(log_path, errors="replace").read()
        report.append(f"SIGTERM: exit status {code} after {took:.2f} s, drain line "
                      f"{'present' if DRAIN_LINE in text else 'MISSING'}")
        if code != 0:
            fail(f"SIGTERM: exit status {code}")
        if DRAIN_LINE not in text:
            fail("SIGTERM: the log lacks the drain line")
    except subprocess.TimeoutExpired:
        fail("SIGTERM: the server did not exit within 15 s")

    text = open(log_path, errors="replace").read()
    levels = collections.Counter()
    for line in text.splitlines():
        for level in (" ERROR ", " WARN "):
            if level in line:
                levels[level.strip()] += 1
    report.append(f"server log: {levels['WARN']} WARN, {levels['ERROR']} ERROR line(s) "
                  f"({log_path})")
    if "panicked" in text:
        fail("the server log holds a panic")
    for line in [ln for ln in text.splitlines() if " ERROR " in ln][:10]:
        report.append(f"  {line}")
    return finish(report, t_begin)


def idle_restart(cluster: Cluster, port: int, token: str) -> list[str]:
    out = []
    time.sleep(1.0)
    shared = Shared()
    probe = threading.Thread(target=prober, args=(shared, port, "/readyz", "readyz", 0.25),
                             daemon=True)
    probe.start()
    o = restart(cluster, "idle restart (stop -m fast, /readyz only)", "fast", 2.0)
    time.sleep(RECOVERY_SECONDS + 1.0)
    shared.stop.set()
    probe.join(timeout=HTTP_TIMEOUT + 5)
    ready = [r for r in shared.results if r.start >= o.back_at]
    first_ok = min((r.end for r in ready if r.status == 200), default=None)
    late = [r for r in ready if r.start >= o.window_end and r.status != 200]
    out.append(f"{o.label}: /readyz 200 again {fmt_delta(first_ok, o.back_at)} after back; "
               f"{len(late)} non-200 answer(s) started later than back+{RECOVERY_SECONDS:.0f} s")
    if first_ok is None or first_ok > o.window_end or late:
        fail(f"{o.label}: /readyz did not recover within {RECOVERY_SECONDS:.0f} s "
             f"(statuses after back: {[r.status for r in ready]})")
    # Then the first API requests after the quiet outage, in bursts as wide as the pool (a
    # burst draws every idle pooled connection, not only the one /readyz keeps using): each
    # must succeed.
    rounds = []
    for _ in range(3):
        statuses: list = []
        lock = threading.Lock()

        def one() -> None:
            r, _ = Client(port, token).request("list", "GET", "/api/v1/contacts?limit=5")
            with lock:
                statuses.append(r.status or r.error)

        burst = [threading.Thread(target=one) for _ in range(POOL_SIZE)]
        for t in burst:
            t.start()
        for t in burst:
            t.join()
        rounds.append(statuses)
    since = time.monotonic() - o.back_at
    summary = "; ".join(str(dict(collections.Counter(r))) for r in rounds)
    out.append(f"  then 3 bursts of {POOL_SIZE} concurrent requests (ending {since:.1f} s after "
               f"back): {summary}")
    bad = [s for r in rounds for s in r if s != 200]
    if bad:
        fail(f"{o.label}: {len(bad)} of {3 * POOL_SIZE} requests sent more than "
             f"{RECOVERY_SECONDS:.0f} s after the database was back failed: "
             f"{dict(collections.Counter(bad))}")
    return out


def check_acknowledged(cluster: Cluster, dbname: str, port: int, token: str, shared: Shared,
                       outages: list[Outage]) -> list[str]:
    rows = cluster.psql(
        dbname,
        f"SELECT session_id, contact_id FROM contact_sessions "
        f"WHERE account_id = {ACCOUNT} AND chatbot_id = '{CHATBOT}'",
    )
    stored = {}
    for line in rows.splitlines():
        session, cid = line.split("|")
        stored[session] = int(cid)
    missing = [a for a in shared.acked.values() if a.session not in stored]
    moved = [a for a in shared.acked.values()
             if a.session in stored and stored[a.session] != a.contact_id]
    contacts = int(cluster.psql(dbname, f"SELECT count(*) FROM contacts WHERE account_id = {ACCOUNT}"))
    for a in missing[:10]:
        fail(f"acknowledged upsert of session {a.session} (contact {a.contact_id}) is not stored")
    for a in moved[:10]:
        fail(f"session {a.session} was acknowledged as contact {a.contact_id}, stored as "
             f"{stored[a.session]}")
    if len(missing) > 10 or len(moved) > 10:
        fail(f"{len(missing)} acknowledged sessions missing, {len(moved)} mapped elsewhere")
    # Through the API too: every upsert acknowledged near an outage, and a sample of the rest.
    near = [a for a in shared.acked.values()
            if any(o.stop_at - 1 <= a.at <= o.window_end for o in outages)]
    rest = [a for a in shared.acked.values() if a not in near]
    sample = near + random.Random(7).sample(rest, min(200, len(rest)))
    client = Client(port, token)
    api_bad = 0
    for a in sample:
        r, doc = client.request("verify", "GET", f"/api/v1/contacts/{a.contact_id}")
        if r.status != 200 or not isinstance(doc, dict) or doc.get("session_id") != a.session:
            api_bad += 1
            if api_bad <= 10:
                fail(f"GET /api/v1/contacts/{a.contact_id} (session {a.session}): "
                     f"{r.status or r.error} {r.detail}")
    return [
        f"acknowledged new sessions: {len(shared.acked)}; stored sessions of the run: "
        f"{len(stored)}, contacts: {contacts}; missing: {len(missing)}, mapped to another "
        f"contact: {len(moved)}",
        f"  checked through the API: {len(sample)} ({len(near)} acknowledged within an outage "
        f"window), failures: {api_bad}",
    ]


def finish(report: list[str], t_begin: float) -> int:
    print("\n==== fault test summary ====")
    for line in report:
        print(line)
    print(f"runtime {time.monotonic() - t_begin:.0f} s")
    if failures:
        print(f"\n{len(failures)} failure(s):")
        for f in failures[:40]:
            print(f"  - {f}")
        if len(failures) > 40:
            print(f"  ... and {len(failures) - 40} more")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
