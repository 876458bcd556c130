"""How the binary ends: SIGTERM while serving, and a start that fails (BIND_ADDR taken).

Both must end with an exit status, never a signal (SIGSEGV, SIGABRT: a crash in a library's
exit path, libkrb5's for one) and never a core file. Each child runs with the core size limit
raised to the hard limit in its own directory, so a crash that the kernel dumps leaves a file
there (`/proc/sys/kernel/core_pattern` permitting; a signal is caught either way).
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import time

from .common import fail

DRAIN_LINE = "stopped: server shut down, database pool closed"


def allow_cores() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def cores_in(directory: str) -> list[str]:
    return sorted(f for f in os.listdir(directory) if f == "core" or f.startswith("core."))


def check_sigterm(server: subprocess.Popen, log_path: str, cwd: str) -> list[str]:
    server.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    try:
        code = server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        fail("SIGTERM: the server did not exit within 15 s")
        return ["SIGTERM: no exit within 15 s"]
    took = time.monotonic() - t0
    text = open(log_path, errors="replace").read()
    cores = cores_in(cwd)
    if code != 0:
        fail(f"SIGTERM: {describe_exit(code)}, expected exit status 0")
    if DRAIN_LINE not in text:
        fail("SIGTERM: the log lacks the drain line")
    if cores:
        fail(f"SIGTERM: core file(s) {cores} in {cwd}")
    return [f"SIGTERM: {describe_exit(code)} after {took:.2f} s, drain line "
            f"{'present' if DRAIN_LINE in text else 'MISSING'}, core files: {len(cores)}"]


def check_failed_starts(bin_path: str, env: dict, workdir: str, urls: list[str],
                        rounds: int) -> list[str]:
    """Starts the binary `rounds` times per database URL with BIND_ADDR taken by another socket:
    each must exit with status 2 and one line `contacts-api: BIND_ADDR: ...`."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    outcomes = []
    try:
        for url in urls:
            for i in range(rounds):
                cwd = os.path.join(workdir, f"bind-taken-{len(outcomes)}")
                os.makedirs(cwd)
                child_env = dict(env, BIND_ADDR=f"127.0.0.1:{port}", DATABASE_URL=url,
                                 RUST_LOG="warn")
                try:
                    p = subprocess.run([bin_path, "serve"], env=child_env, cwd=cwd,
                                       capture_output=True, text=True, timeout=60,
                                       preexec_fn=allow_cores)
                except subprocess.TimeoutExpired:
                    fail(f"BIND_ADDR taken ({url}): the server did not exit within 60 s")
                    outcomes.append("timeout")
                    continue
                lines = (p.stdout + p.stderr).splitlines()
                named = [ln for ln in lines if "BIND_ADDR" in ln]
                cores = cores_in(cwd)
                problems = []
                if p.returncode != 2:
                    problems.append(describe_exit(p.returncode))
                if len(named) != 1 or not named[0].startswith("contacts-api: BIND_ADDR: "):
                    problems.append(f"{len(named)} line(s) naming BIND_ADDR")
                if cores:
                    problems.append(f"core file(s) {cores}")
                if any("panicked" in ln for ln in lines):
                    problems.append("a panic")
                if problems:
                    fail(f"BIND_ADDR taken, start {i + 1} with {url}: {', '.join(problems)}; "
                         f"output: {lines[-8:]}")
                outcomes.append(describe_exit(p.returncode) if not problems else
                                "; ".join(problems))
    finally:
        taken.close()
    summary = {o: outcomes.count(o) for o in outcomes}
    return [f"failed start (BIND_ADDR taken), {len(outcomes)} runs over {len(urls)} database "
            f"URL form(s): {summary}"]
