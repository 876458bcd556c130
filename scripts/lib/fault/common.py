"""Shared pieces: failures and log lines, the throwaway PostgreSQL cluster, the HTTP client."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import threading
import time
from dataclasses import dataclass

HTTP_TIMEOUT = 10.0  # a request that takes longer is a hang, hence a failure
RECOVERY_SECONDS = 5.0  # every request started this long after the database is back succeeds

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

    def psql_json(self, db: str, sql: str) -> list:
        """Rows of `sql` as dicts (each row through row_to_json)."""
        out = self.psql(db, f"SELECT row_to_json(t) FROM ({sql}) t")
        return [json.loads(line) for line in out.splitlines() if line]


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


@dataclass
class Result:
    kind: str
    start: float
    end: float
    status: int | None  # None: no HTTP answer (timeout, reset, refused)
    error: str = ""
    problem_ok: bool = True  # for non-2xx answers: problem+json, and for 503 Retry-After too
    detail: str = ""
    # The answer is what this request must get when the database is up (2xx, or the 404/410
    # that the model predicts for a contact it knows to be gone). Set by the caller.
    expected: bool | None = None
    # A streamed answer that ended before its end (no terminating chunk): visible, not a lie.
    broken: bool = False

    @property
    def ok(self) -> bool:
        if self.broken:
            return False
        if self.expected is not None:
            return self.expected
        return self.status is not None and 200 <= self.status < 300


class Client:
    """One keep-alive connection per thread; reconnects after a transport error."""

    def __init__(self, port: int, token: str | None):
        self.port, self.token = port, token
        self.conn: http.client.HTTPConnection | None = None

    def request(self, kind: str, method: str, path: str, body: dict | None = None,
                content_type: str = "application/json",
                headers: dict | None = None) -> tuple[Result, dict | list | None]:
        hdrs = {"Host": "127.0.0.1"}
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        if headers:
            hdrs.update(headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = content_type
        start = time.monotonic()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
            self.conn.request(method, path, body=data, headers=hdrs)
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
            result.problem_ok = problem_ok(kind, resp, parsed)
            ctype = resp.getheader("Content-Type", "")
            result.detail = f"{ctype} {raw[:200]!r}"
        return result, parsed


def problem_ok(kind: str, resp: http.client.HTTPResponse, parsed) -> bool:
    """Whether an error answer has the contract's shape (problem+json; 503: Retry-After)."""
    ctype = resp.getheader("Content-Type", "")
    ok = ctype.startswith("application/problem+json") and isinstance(parsed, dict) \
        and parsed.get("status") == resp.status
    if resp.status == 503 and kind != "readyz":
        ok = ok and resp.getheader("Retry-After") is not None \
            and parsed.get("code") == "service_unavailable"
    if kind == "readyz":  # the probe answers its own JSON, with Retry-After
        ok = resp.status == 503 and resp.getheader("Retry-After") is not None
    return ok


def fmt_delta(t: float | None, ref: float) -> str:
    return "never" if t is None else f"{t - ref:+.2f} s"
