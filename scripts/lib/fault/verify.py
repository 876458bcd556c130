"""After the traffic: the database against the model (model.py), and retention's account."""

from __future__ import annotations

import collections
import json
import time

from .common import Cluster, fail
from .model import ABSENT, State, canon, matches, short
from .workload import CHATBOT, RETENTION_ACCOUNT, WORK_ACCOUNT, Run


def db_states(cluster: Cluster, db: str):
    contacts = {r["id"]: r for r in cluster.psql_json(
        db, f"SELECT id, name, email, payload, version FROM contacts "
            f"WHERE account_id = {WORK_ACCOUNT}")}
    session_to = {r["session_id"]: r["contact_id"] for r in cluster.psql_json(
        db, f"SELECT session_id, contact_id FROM contact_sessions "
            f"WHERE account_id = {WORK_ACCOUNT} AND chatbot_id = '{CHATBOT}'")}
    sessions_of = collections.defaultdict(set)
    for s, cid in session_to.items():
        sessions_of[cid].add(s)

    def state(cid):
        row = contacts.get(cid)
        if row is None:
            return ABSENT
        payload = row["payload"] if isinstance(row["payload"], dict) else json.loads(row["payload"])
        return State(row["name"], row["email"], canon(payload), row["version"],
                     frozenset(sessions_of.get(cid, ())))

    return contacts, session_to, state


def verify_model(cluster: Cluster, db: str, run: Run) -> list[str]:
    """Every tracked contact is in one of its possible states, every write that may have
    applied applied wholly or not at all, and nothing else is in the working account."""
    contacts, session_to, state = db_states(cluster, db)
    model = run.model
    actual = {}
    exact = ambiguous = 0
    accounted = set()
    for t in model.contacts:
        cid = t.id if t.id is not None else session_to.get(t.key)
        got = state(cid) if cid is not None else ABSENT
        actual[id(t)] = got
        if cid is not None and got != ABSENT:
            accounted.add(cid)
        if len(t.states) == 1:
            exact += 1
        else:
            ambiguous += 1
        if not any(matches(s, got) for s in t.states):
            fail(f"{t.label()}: the database holds {short(got)}; the acknowledged writes (and "
                 f"the unanswered ones) allow only {', '.join(short(s) for s in t.states)}")
    keys = {t.key for t in model.contacts}
    for session, cid in session_to.items():
        if session not in keys:
            fail(f"session {session} (contact {cid}) was never sent by the test")
    for cid in sorted(set(contacts) - accounted)[:10]:
        fail(f"contact {cid} is in the working account but no tracked session leads to it: "
             f"{contacts[cid]}")

    outcomes = collections.Counter()
    for a in model.atomics:
        applied = [any(matches(x, actual[id(t)]) for x in after) for t, _, after in a.members]
        before = [any(matches(x, actual[id(t)]) for x in prior) for t, prior, _ in a.members]
        if all(applied):
            outcomes[(a.kind, "applied")] += 1
        elif all(before):
            outcomes[(a.kind, "not applied")] += 1
        else:
            fail(f"a {a.kind} answered 503 (or not at all) applied in part: "
                 + "; ".join(f"{t.label()} now {short(actual[id(t)])}"
                             for t, _, _ in a.members))
        if a.kind == "erasure" and all(applied):
            check_erased(cluster, db, a.extra["email"], [t.id for t, _, _ in a.members])

    merges = {r["source_id"]: r["target_id"] for r in cluster.psql_json(
        db, f"SELECT source_id, target_id FROM contact_merges WHERE account_id = {WORK_ACCOUNT}")}
    for source, target in model.merges.items():
        chain = [target]
        while chain[-1] in model.merges and len(chain) < 20:
            chain.append(model.merges[chain[-1]])
        if contacts.get(target) is not None and merges.get(source) not in chain:
            fail(f"contact {source}, merged into {target} (acknowledged), redirects to "
                 f"{merges.get(source)}")
    for email, ids in model.erased:
        check_erased(cluster, db, email, ids)

    lines = [f"database vs model: {len(model.contacts)} tracked contacts ({exact} with one "
             f"possible state, {ambiguous} with two or more after unanswered writes), "
             f"{len(contacts)} contacts and {len(session_to)} sessions in account "
             f"{WORK_ACCOUNT}; {len(model.merges)} acknowledged merge redirects, "
             f"{len(model.erased)} acknowledged erasures"]
    if outcomes:
        lines.append("  unanswered multi-contact writes (all or nothing): " + ", ".join(
            f"{k} {o} x{n}" for (k, o), n in sorted(outcomes.items())))
    return lines


def check_erased(cluster: Cluster, db: str, email: str, ids: list) -> None:
    ids = [i for i in ids if i is not None]
    id_list = ",".join(str(i) for i in ids) or "NULL"
    left = cluster.psql(db, f"""
        SELECT (SELECT count(*) FROM contacts WHERE account_id = {WORK_ACCOUNT}
                  AND (lower(email) = lower('{email}') OR id IN ({id_list}))),
               (SELECT count(*) FROM contact_sessions WHERE account_id = {WORK_ACCOUNT}
                  AND contact_id IN ({id_list})),
               (SELECT count(*) FROM consent_events WHERE account_id = {WORK_ACCOUNT}
                  AND contact_id IN ({id_list})),
               (SELECT count(*) FROM contact_merges WHERE account_id = {WORK_ACCOUNT}
                  AND (source_id IN ({id_list}) OR target_id IN ({id_list})))""").strip()
    if left != "0|0|0|0":
        fail(f"erasure of {email} (contacts {ids}) left contacts|sessions|consent|redirects "
             f"= {left}")


def retention_snapshot(cluster: Cluster, db: str) -> dict:
    rows = cluster.psql(db, f"SELECT id, extract(epoch FROM last_seen_at) FROM contacts "
                            f"WHERE account_id = {RETENTION_ACCOUNT}")
    return {int(i): float(t) for i, t in (line.split("|") for line in rows.splitlines())}


def verify_retention(cluster: Cluster, db: str, run: Run, before: dict, days: int) -> list[str]:
    """After the last acknowledged policy (`days`) and a few passes of the task: nothing older
    is left, nothing younger is gone, and the audit counts exactly what was deleted."""
    deadline = time.monotonic() + 15
    while True:
        old = int(cluster.psql(db, f"SELECT count(*) FROM contacts WHERE account_id = "
                                   f"{RETENTION_ACCOUNT} AND last_seen_at < now() - "
                                   f"make_interval(days => {days})"))
        if old == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    now = float(cluster.psql(db, "SELECT extract(epoch FROM now())"))
    after = retention_snapshot(cluster, db)
    young = {i for i, t in before.items() if t > now - days * 86400 + 3600}
    lost = young - set(after)
    audited = int(cluster.psql(db, f"""
        SELECT coalesce(sum((details->>'deleted')::bigint), 0) FROM audit_events
        WHERE account_id = {RETENTION_ACCOUNT} AND action = 'contacts.retention_deleted'"""))
    deleted = len(before) - len(after)
    if old:
        fail(f"retention ({days} days): {old} older contacts still in account "
             f"{RETENTION_ACCOUNT} 15 s after the last policy")
    if lost:
        fail(f"retention ({days} days) deleted {len(lost)} contacts seen within the period, "
             f"e.g. {sorted(lost)[:5]}")
    if set(after) - set(before):
        fail(f"account {RETENTION_ACCOUNT} gained contacts: {sorted(set(after) - set(before))[:5]}")
    if audited != deleted:
        fail(f"retention deleted {deleted} contacts but its audit events count {audited}")
    return [f"retention: policy lowered 365 -> {days} days ({len(run.retention_acked)} "
            f"acknowledged PUTs, {len(run.retention_maybe)} unanswered); {deleted} of "
            f"{len(before)} seeded contacts deleted, audit counts {audited}; {len(young)} "
            f"younger than the policy, {len(lost)} of them lost"]
