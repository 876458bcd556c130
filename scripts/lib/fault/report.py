"""The answers sorted by outage window, the slow clients, the quiet restart."""

from __future__ import annotations

import collections
import socket
import threading
import time

from .common import (HTTP_TIMEOUT, RECOVERY_SECONDS, Client, Cluster, Outage, fail, fmt_delta,
                     restart)
from .workload import Run, prober


def phase_of(r, outages: list[Outage]) -> str:
    for o in outages:
        if r.end >= o.stop_at and r.start <= o.window_end:
            return o.label
    return "steady"


def label(r) -> str:
    if r.broken:
        return "200-broken"
    if r.status is None:
        return r.error.split(":")[0]
    return str(r.status)


def analyse(results: list, outages: list[Outage]) -> tuple[list[str], int]:
    """Checks every answer against its window; returns the report and the number of answers
    that were neither what the request must get nor a proper 503 (nor, for an export, a
    visibly broken stream during an outage)."""
    out: list[str] = []
    by_phase: dict = collections.defaultdict(collections.Counter)
    bad = 0
    for r in results:
        phase = phase_of(r, outages)
        by_phase[(phase, r.kind)][label(r)] += 1
        if phase == "steady":
            if not r.ok:
                bad += r.status != 503
                fail(f"{r.kind} outside any outage window answered {label(r)} {r.error} "
                     f"{r.detail}")
            continue
        outage = next(o for o in outages if o.label == phase)
        at = f"{r.start - outage.back_at:+.2f} s from db back"
        if r.kind == "healthz":
            if r.status != 200:
                bad += 1
                fail(f"{phase}: /healthz answered {label(r)} {at}")
        elif r.broken or r.ok:
            pass
        elif r.status is None:
            bad += 1
            fail(f"{phase}: {r.kind} got no answer ({r.error}) {at}")
        elif r.status != 503:
            bad += 1
            fail(f"{phase}: {r.kind} answered {r.status} {at}: {r.detail}")
        elif not r.problem_ok:
            fail(f"{phase}: {r.kind} 503 without problem+json/Retry-After {at}: {r.detail}")
        if r.kind == "readyz" and r.status == 200 and r.start >= outage.down_at \
                and r.end <= outage.start_at:
            fail(f"{phase}: /readyz answered 200 while the database was down {at}")
    slow_health = [r for r in results if r.kind == "healthz" and r.end - r.start > 2.0]
    if slow_health:
        worst = max(r.end - r.start for r in slow_health)
        fail(f"/healthz took more than 2 s {len(slow_health)} time(s) (worst {worst:.1f} s)")

    out.append("answers by phase and kind (status: count; 200-broken: an export stream that "
               "ended before its terminating chunk):")
    kinds = sorted({k for _, k in by_phase})
    for phase in ["steady"] + [o.label for o in outages]:
        for kind in kinds:
            c = by_phase.get((phase, kind))
            if c:
                counts = ", ".join(f"{k}: {v}" for k, v in sorted(c.items()))
                out.append(f"  {phase:<28} {kind:<14} {counts}")
    for o in outages:
        window = [r for r in results if phase_of(r, [o]) == o.label and r.kind != "healthz"]
        failed = [r for r in window if not r.ok]
        first_ok = min((r.start for r in window if r.start >= o.back_at and r.ok),
                       default=None)
        last_bad = max((r.end for r in failed if r.kind != "readyz"), default=None)
        ready = [r for r in window if r.kind == "readyz"]
        ready_503 = sum(1 for r in ready if r.status == 503)
        first_ready = min((r.end for r in ready if r.status == 200 and r.start >= o.back_at),
                          default=None)
        out.append(
            f"{o.label}: stop took {o.down_at - o.stop_at:.2f} s, database down "
            f"{o.back_at - o.stop_at:.2f} s; 503s: {sum(1 for r in failed if r.status == 503)}, "
            f"broken exports: {sum(1 for r in failed if r.broken)}, other failures: "
            f"{sum(1 for r in failed if r.status != 503 and not r.broken)}; first success "
            f"after back: {fmt_delta(first_ok, o.back_at)}; last failure answered "
            f"{fmt_delta(last_bad, o.back_at)} after back; /readyz 503 x{ready_503}, 200 again "
            f"{fmt_delta(first_ready, o.back_at)} after back")
        if ready_503 == 0:
            fail(f"{o.label}: /readyz never answered 503 during the outage")
        if first_ready is None:
            fail(f"{o.label}: /readyz did not answer 200 after the database came back")
        elif first_ready > o.window_end:
            fail(f"{o.label}: /readyz answered 200 only {first_ready - o.back_at:.1f} s after back")
    return out, bad


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


def check_slow_clients(port: int, token: str, client_timeout: int) -> list[str]:
    """Slow clients in parallel; each must get 408 or a close within the timeout + 2 s."""
    limit = client_timeout + 2
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


def idle_restart(cluster: Cluster, port: int, token: str, pool_size: int) -> tuple[list[str], Outage]:
    out = []
    time.sleep(1.0)
    run = Run(port, "idle")
    probe = threading.Thread(target=prober, args=(run, "/readyz", "readyz", 0.25), daemon=True)
    probe.start()
    o = restart(cluster, "idle restart (stop -m fast, /readyz only)", "fast", 2.0)
    time.sleep(RECOVERY_SECONDS + 1.0)
    run.stop.set()
    probe.join(timeout=HTTP_TIMEOUT + 5)
    ready = [r for r in run.results if r.start >= o.back_at]
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

        burst = [threading.Thread(target=one) for _ in range(pool_size)]
        for t in burst:
            t.start()
        for t in burst:
            t.join()
        rounds.append(statuses)
    since = time.monotonic() - o.back_at
    summary = "; ".join(str(dict(collections.Counter(r))) for r in rounds)
    out.append(f"  then 3 bursts of {pool_size} concurrent requests (ending {since:.1f} s after "
               f"back): {summary}")
    bad = [s for r in rounds for s in r if s != 200]
    if bad:
        fail(f"{o.label}: {len(bad)} of {3 * pool_size} requests sent more than "
             f"{RECOVERY_SECONDS:.0f} s after the database was back failed: "
             f"{dict(collections.Counter(bad))}")
    return out, o
