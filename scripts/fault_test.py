#!/usr/bin/env python3
"""Database fault test of contacts-api (driven by scripts/fault-test; Python 3.11, stdlib only).

Against a throwaway PostgreSQL cluster that scripts/fault-test created (stopped) and drops, with
the release binary:

1. start the server while the cluster is down: it must stay up, log "database not ready,
   retrying", and serve once the cluster starts;
2. slow clients (CLIENT_TIMEOUT_SECONDS=2): 408 or a closed connection within the timeout + 2 s;
3. every write operation and the heavy reads from ~30 threads, each writer on contacts of its
   own (scripts/lib/fault/workload.py, exports.py), while the cluster is restarted twice
   (`stop -m fast`, then `stop -m immediate`): every answer is what the request must get or a
   503 problem+json with Retry-After (an export stream may instead break visibly, before its
   terminating chunk); every request started 5 s after the database is back succeeds;
   /healthz stays 200; /readyz is 503 while the database is down and 200 after;
4. a restart with no traffic but /readyz polls, then bursts as wide as the pool;
5. the database against the model of every acknowledged write (scripts/lib/fault/model.py,
   verify.py), and retention's account against its last policy and its audit;
6. the binary's exits: a start with BIND_ADDR taken (status 2, one line naming BIND_ADDR, no
   crash signal, no core), several times; SIGTERM (status 0, the drain line, no core).

Prints a summary with counts and exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

from fault import common, exports, lifecycle, report, verify, workload  # noqa: E402
from fault.common import RECOVERY_SECONDS, Client, Cluster, fail, free_port, log  # noqa: E402
from fault.workload import (EXPORT_ACCOUNT, RETENTION_ACCOUNT, SCOPES, WORK_ACCOUNT,  # noqa: E402
                            Editor, Run)

CLIENT_TIMEOUT = 2  # CLIENT_TIMEOUT_SECONDS of the server under test
POOL_SIZE = 16  # DATABASE_POOL_SIZE of the server under test
SEEDED = 20000  # contacts seeded in the export and the retention accounts
RETENTION_FLOOR = 20  # days: where the retention worker stops lowering the policy
CREWS, CREW_THREADS, SOLOS, EDITORS = 2, 5, 3, 4
FAILED_START_ROUNDS = 3  # per database URL form


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
           if not k.startswith(("DATABASE_", "JWT_", "RATE_LIMIT_", "CLIENT_TIMEOUT", "UPSERT_",
                                "EXPORTS_", "RETENTION_"))}
    env.update({
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{args.pg_port}/{dbname}?sslmode=disable",
        "BIND_ADDR": f"127.0.0.1:{port}",
        "JWT_SECRET": secret,
        "RATE_LIMIT_UPSERTS_PER_MINUTE": "0",
        "RATE_LIMIT_REQUESTS_PER_MINUTE": "0",
        "CLIENT_TIMEOUT_SECONDS": str(CLIENT_TIMEOUT),
        "DATABASE_POOL_SIZE": str(POOL_SIZE),
        "RETENTION_INTERVAL_SECONDS": "1",
        # Two exporter threads; a slot is freed when the server sees the client go.
        "EXPORTS_PER_ACCOUNT": "8",
        "RUST_LOG": "info",
    })
    log_path = os.path.join(args.workdir, "server.log")
    server_dir = os.path.join(args.workdir, "server")
    os.makedirs(server_dir)
    report_lines: list[str] = []

    # 1. The server starts before its database.
    log(f"starting {args.bin} on 127.0.0.1:{port} while the cluster is down")
    with open(log_path, "wb") as log_file:
        server = subprocess.Popen([args.bin, "serve"], env=env, stdout=log_file,
                                  stderr=subprocess.STDOUT, cwd=server_dir,
                                  preexec_fn=lifecycle.allow_cores)
    with open(os.path.join(args.workdir, "server.pid"), "w") as f:
        f.write(str(server.pid))
    try:
        return run(args, cluster, server, port, env, log_path, server_dir, report_lines,
                   dbname, t_begin)
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


def mint(bin_path: str, env: dict, account: int, sub: str) -> str:
    return subprocess.run(
        [bin_path, "token", "--account", str(account), "--sub", sub, "--scope", SCOPES,
         "--ttl", "1h"],
        env=env, check=True, capture_output=True, text=True).stdout.strip()


def run(args, cluster: Cluster, server: subprocess.Popen, port: int, env: dict, log_path: str,
        server_dir: str, out: list[str], dbname: str, t_begin: float) -> int:
    time.sleep(3.0)
    text = open(log_path, errors="replace").read()
    retries = text.count("database not ready, retrying")
    if server.poll() is not None:
        fail(f"the server exited ({lifecycle.describe_exit(server.returncode)}) while the "
             f"database was down:\n{text}")
        return finish(out, t_begin)
    if retries == 0:
        fail(f"no 'database not ready, retrying' line after 3 s:\n{text}")
    out.append(f"binary: {args.bin}")
    out.append(f"start before the database: alive after 3 s, {retries} retry line(s)")
    back = cluster.start_and_wait()
    up = wait_http(port, "/readyz", 200, 30)
    if up is None:
        fail("the server did not serve within 30 s of the database starting")
        return finish(out, t_begin)
    out.append(f"  serving {up - back:.1f} s after the database started (retries every 2 s)")
    log(f"serving, {up - back:.1f} s after the database started")

    # The read-only account for exports and the account retention empties.
    t0 = time.monotonic()
    subprocess.run([args.bin, "seed", "--accounts", f"{EXPORT_ACCOUNT},{RETENTION_ACCOUNT}",
                    "--contacts", str(SEEDED)], env=env, check=True, capture_output=True)
    export_ids = {int(x) for x in cluster.psql(
        dbname, f"SELECT id FROM contacts WHERE account_id = {EXPORT_ACCOUNT}").split()}
    retention_before = verify.retention_snapshot(cluster, dbname)
    log(f"seeded {len(export_ids)} + {len(retention_before)} contacts in accounts "
        f"{EXPORT_ACCOUNT} and {RETENTION_ACCOUNT} in {time.monotonic() - t0:.1f} s")

    wr = Run(port, f"{int(time.time())}")
    tok = {a: mint(args.bin, env, a, f"fault-reader-{a}") for a in
           (WORK_ACCOUNT, EXPORT_ACCOUNT, RETENTION_ACCOUNT)}
    editors = [Editor(wr, mint(args.bin, env, WORK_ACCOUNT, f"editor-{i}"), f"editor-{i}")
               for i in range(EDITORS)]
    for e in editors:
        if not e.setup(contacts=16, persons=4):
            fail(f"{e.actor}: the setup batch was not acknowledged")
            return finish(out, t_begin)

    threads = []
    for c in range(CREWS):
        crew_token = mint(args.bin, env, WORK_ACCOUNT, f"crew-{c}")
        threads += [threading.Thread(target=workload.upserter,
                                     args=(wr, crew_token, f"crew-{c}", i, "upsert-crew"))
                    for i in range(CREW_THREADS)]
    for i in range(SOLOS):
        threads.append(threading.Thread(target=workload.upserter, args=(
            wr, mint(args.bin, env, WORK_ACCOUNT, f"solo-{i}"), f"solo-{i}", 0, "upsert-solo")))
    threads += [threading.Thread(target=e.loop) for e in editors]
    threads.append(threading.Thread(target=workload.retention_worker,
                                    args=(wr, tok[RETENTION_ACCOUNT], RETENTION_FLOOR)))
    threads += [threading.Thread(target=workload.reader, args=(wr, tok[WORK_ACCOUNT], i))
                for i in range(2)]
    threads.append(threading.Thread(target=workload.heavy_reader, args=(
        wr, {WORK_ACCOUNT: tok[WORK_ACCOUNT], EXPORT_ACCOUNT: tok[EXPORT_ACCOUNT]}, 7)))
    threads += [threading.Thread(target=exports.exporter,
                                 args=(wr, port, tok[EXPORT_ACCOUNT], export_ids))
                for _ in range(2)]
    threads += [threading.Thread(target=workload.prober, args=(wr, "/healthz", "healthz", 0.2)),
                threading.Thread(target=workload.prober, args=(wr, "/readyz", "readyz", 0.2))]
    for t in threads:
        t.daemon = True
        t.start()
    log(f"traffic: {len(threads)} threads ({CREWS} upsert crews of {CREW_THREADS} threads "
        f"sharing a token, {SOLOS} solo upserters, {EDITORS} editors, retention, readers, "
        "stats/duplicates, 2 slow exporters, probes)")

    # 2. Slow clients, while the traffic warms up.
    out.append(f"slow clients (CLIENT_TIMEOUT_SECONDS={CLIENT_TIMEOUT}):")
    out.extend(report.check_slow_clients(port, tok[WORK_ACCOUNT], CLIENT_TIMEOUT))

    # 3. Two restarts under traffic.
    time.sleep(1.0)
    outages = [common.restart(cluster, "outage 1 (stop -m fast)", "fast", 3.5)]
    time.sleep(RECOVERY_SECONDS + 3.0)
    outages.append(common.restart(cluster, "outage 2 (stop -m immediate)", "immediate", 3.5))
    time.sleep(RECOVERY_SECONDS + 3.0)
    wr.stop.set()
    for t in threads:
        t.join(timeout=common.HTTP_TIMEOUT + 30)
    log(f"traffic stopped: {len(wr.results)} requests")
    lines, non_503 = report.analyse(wr.results, outages)
    out.extend(lines)

    # 4. A restart while only /readyz polls (a pod taken out of rotation gets no traffic).
    lines, idle = report.idle_restart(cluster, port, tok[WORK_ACCOUNT], POOL_SIZE)
    out.extend(lines)
    outages.append(idle)

    # 5. What the database holds.
    client = Client(port, tok[RETENTION_ACCOUNT])
    while not workload.put_retention(wr, client, RETENTION_FLOOR):
        time.sleep(0.5)
    out.extend(verify.verify_retention(cluster, dbname, wr, retention_before, RETENTION_FLOOR))
    out.extend(verify.verify_model(cluster, dbname, wr))
    out.extend(group_commit(port, log_path))

    # 6. How the binary ends.
    base = env["DATABASE_URL"].split("?")[0]
    out.extend(lifecycle.check_failed_starts(args.bin, env, args.workdir,
                                             [env["DATABASE_URL"], base], FAILED_START_ROUNDS))
    out.extend(lifecycle.check_sigterm(server, log_path, server_dir))

    text = open(log_path, errors="replace").read()
    levels = collections.Counter()
    for line in text.splitlines():
        for level in (" ERROR ", " WARN "):
            if level in line:
                levels[level.strip()] += 1
    out.append(f"server log: {levels['WARN']} WARN, {levels['ERROR']} ERROR line(s) "
               f"({log_path})")
    if "panicked" in text:
        fail("the server log holds a panic")
    for line in [ln for ln in text.splitlines() if " ERROR " in ln][:10]:
        out.append(f"  {line}")

    out.append("counts:")
    out.append("  operations driven per kind: " + ", ".join(
        f"{k} {v}" for k, v in sorted(wr.driven.items())))
    out.append(f"  outages: {len(outages)} ({len(outages) - 1} under traffic, 1 quiet)")
    out.append("  acknowledged writes checked per kind: " + ", ".join(
        f"{k} {v}" for k, v in sorted(wr.acked.items())))
    out.append("  exports answered 200: " + ", ".join(
        f"{k} {v}" for k, v in sorted(wr.exports.items())))
    out.append(f"  non-503 failures: {non_503}")
    return finish(out, t_begin)


def group_commit(port: int, log_path: str) -> list[str]:
    """How the group commit wrote the single upserts: transactions by size (from /metrics), and
    how often a group failed as a whole and was rewritten one by one (its WARN line)."""
    text = ""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError as e:
        fail(f"/metrics: {e}")
    buckets = {}
    for line in text.splitlines():
        if line.startswith("contacts_upsert_group_size_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets[le] = int(float(line.rsplit(" ", 1)[1]))
    total = buckets.get("+Inf", 0)
    alone = buckets.get("1.0", 0)
    fallback = open(log_path, errors="replace").read().count("writing each alone")
    if total - alone == 0:
        fail("the group commit never wrote two upserts together: the crews did not exercise it")
    return [f"group commit: {total} transactions of single upserts, {alone} of one upsert, "
            f"{total - alone} of several; {fallback} group(s) failed as a whole and were "
            "rewritten one by one"]


def finish(report_lines: list[str], t_begin: float) -> int:
    print("\n==== fault test summary ====")
    for line in report_lines:
        print(line)
    print(f"runtime {time.monotonic() - t_begin:.0f} s")
    if common.failures:
        print(f"\n{len(common.failures)} failure(s):")
        for f in common.failures[:40]:
            print(f"  - {f}")
        if len(common.failures) > 40:
            print(f"  ... and {len(common.failures) - 40} more")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
