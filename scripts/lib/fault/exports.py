"""Exports read slowly, so that outages hit them mid-stream.

The export of the seeded account (nobody writes to it) is streamed with chunked transfer
encoding in batches of 2,000 rows, each read from the database when the one before has been
sent. The client reads through a small receive buffer at a bounded rate, so one export of the
account takes seconds and its later batches are read while the cluster restarts. What the
service does when a batch fails (src/routes/export.rs): it has already answered 200, so it ends
the stream with an error, and actix then closes the connection without the terminating chunk.
The check: every export is either a 503 before the first byte, or a 200 whose stream reached
its terminating chunk and holds exactly the account's contacts, or a 200 whose stream visibly
broke (closed before the terminating chunk) during an outage window. A stream that ends
"cleanly" but lacks rows is the silent truncation this looks for.
"""

from __future__ import annotations

import http.client
import json
import socket
import time

from .common import HTTP_TIMEOUT, Result, fail, problem_ok
from .workload import Run

READ_SIZE = 16384
READ_PAUSE = 0.01  # ~1.6 MB/s at most: the account's export takes a few seconds


def export_once(run: Run, port: int, token: str, expected: set) -> None:
    start = time.monotonic()
    sock = socket.socket()
    # Set before connecting, so the advertised window stays small: the server's stream is held
    # back by this reader, not buffered ahead in the kernel.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    sock.settimeout(HTTP_TIMEOUT)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    r = Result("export", start, start, None)
    body = b""
    try:
        sock.connect(("127.0.0.1", port))
        conn.sock = sock
        conn.request("GET", "/api/v1/contacts/export?format=ndjson",
                     headers={"Authorization": f"Bearer {token}", "Host": "127.0.0.1"})
        resp = conn.getresponse()
        r.status = resp.status
        if resp.status != 200:
            raw = resp.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            r.problem_ok = problem_ok("export", resp, parsed)
            r.detail = f"{resp.getheader('Content-Type', '')} {raw[:200]!r}"
        else:
            if resp.getheader("Transfer-Encoding", "").lower() != "chunked":
                fail(f"export answered 200 without chunked transfer encoding "
                     f"({resp.getheaders()})")
            while True:
                chunk = resp.read(READ_SIZE)  # IncompleteRead when the stream breaks
                if not chunk:
                    break
                body += chunk
                time.sleep(READ_PAUSE)
    except (OSError, http.client.HTTPException) as e:
        r.error = f"{type(e).__name__}: {e}"
        if r.status == 200:
            # The stream ended before its terminating chunk: a visible break.
            r.broken = True
            r.detail = f"broke after {len(body)} bytes: {r.error}"
    finally:
        conn.close()
    r.end = time.monotonic()
    if r.status == 200 and not r.broken:
        check_complete(r, body, expected)
    run.record(r)
    if r.status == 200:
        with run.lock:
            run.exports["broken visibly" if r.broken else "complete, every row checked"] += 1


def check_complete(r: Result, body: bytes, expected: set) -> None:
    if body and not body.endswith(b"\n"):
        fail(f"a complete export (terminating chunk received) ends mid-line: {body[-80:]!r}")
    ids = []
    for line in body.splitlines():
        try:
            ids.append(json.loads(line)["id"])
        except (ValueError, KeyError, TypeError):
            fail(f"a complete export holds a line that is not a contact: {line[:120]!r}")
            return
    got = set(ids)
    if len(ids) != len(got) or got != expected:
        fail(f"an export answered 200 and ended with its terminating chunk but holds "
             f"{len(ids)} rows ({len(got)} distinct), {len(expected - got)} of the account's "
             f"{len(expected)} contacts missing, {len(got - expected)} unknown: a truncated "
             f"export that looks complete")
    r.detail = f"{len(ids)} rows"


def exporter(run: Run, port: int, token: str, expected: set) -> None:
    while not run.stop.is_set():
        export_once(run, port, token, expected)
        time.sleep(0.05)
