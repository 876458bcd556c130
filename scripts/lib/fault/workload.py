"""The traffic of the fault test: every write operation, each worker on its own contacts.

- upsert crews: several threads share one token (one account and actor), so the group commit
  (src/coalesce.rs) writes their concurrent single upserts together (more than UPSERT_LANES in
  flight for one key); solo upserters each have their own token, so theirs are written alone;
- editors (one token each): batch upserts, PATCH, DELETE, merge, bulk delete, erasure and single
  upserts of their own contacts, reading an acknowledged write back now and then;
- the retention worker: lowers account 3's retention step by step while the server's retention
  task deletes what expired;
- readers: list, get, stats and duplicates (exports are in exports.py).

Every answer is recorded (report.py sorts them by outage window); every write is fed to the model
(model.py), checked against it when acknowledged, and checked again in the database at the end
(verify.py).
"""

from __future__ import annotations

import collections
import json
import random
import threading
import time
from dataclasses import dataclass, field

from .common import Client, Result, fail
from .model import ABSENT, MergedTarget, Model, State, Tracked, apply_patch, apply_upsert, observed

CHATBOT = "fault-bot"
WORK_ACCOUNT = 1  # the writers' account
EXPORT_ACCOUNT = 2  # seeded, read only: exports, stats, duplicates
RETENTION_ACCOUNT = 3  # seeded, emptied by retention
SCOPES = ("contacts:read contacts:write contacts:upsert contacts:delete contacts:export "
          "privacy:manage audit:read")


@dataclass
class Run:
    port: int
    run_id: str
    model: Model = field(default_factory=Model)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    results: list = field(default_factory=list)
    driven: collections.Counter = field(default_factory=collections.Counter)
    acked: collections.Counter = field(default_factory=collections.Counter)
    retention_acked: list = field(default_factory=list)  # days of acknowledged PUTs, in order
    retention_maybe: list = field(default_factory=list)
    exports: collections.Counter = field(default_factory=collections.Counter)  # 200s by outcome

    def record(self, r: Result) -> None:
        with self.lock:
            self.results.append(r)
            self.driven[r.kind] += 1

    def ack(self, kind: str, n: int = 1) -> None:
        with self.lock:
            self.acked[kind] += n


def unanswered(r: Result) -> bool:
    """503, no answer, or another error: the write may or may not have applied."""
    return not (r.status is not None and 200 <= r.status < 300)


def settle_single(run: Run, t: Tracked, r: Result, doc, after: set, kind: str,
                  upsert: bool) -> bool:
    """One contact's write: checks an acknowledged answer against the model."""
    if unanswered(r) or not isinstance(doc, dict):
        t.maybe(after)
        run.record(r)
        return False
    r.expected = True
    run.record(r)
    if upsert:
        if r.status == 201 and ABSENT not in t.states:
            fail(f"{kind} of session {t.key} answered 201 (created) for an existing contact "
                 f"{t.id}")
        if r.status == 200 and t.states == {ABSENT}:
            fail(f"{kind} of session {t.key} answered 200 (updated) but no earlier write of it "
                 "could have created it")
    cid = doc.get("id")
    if t.id is not None and cid != t.id:
        fail(f"{kind} of session {t.key} answered contact {cid}, earlier {t.id}")
    t.id = cid
    t.acked(after, observed(doc, t.sessions()), kind)
    run.ack(kind)
    return True


def read_back(run: Run, client: Client, t: Tracked) -> None:
    """GET of a contact whose state the model knows exactly: the answer must be that state."""
    if t.id is None or len(t.states) != 1:
        return
    (state,) = t.states
    r, doc = client.request("read-back", "GET", f"/api/v1/contacts/{t.id}")
    if state == ABSENT:
        r.expected = r.status in (404, 410)
        if r.status == 200:
            fail(f"{t.label()} was deleted or merged away (acknowledged) but GET answers 200")
    elif isinstance(state, MergedTarget):
        return
    elif r.status == 200 and isinstance(doc, dict):
        got = observed(doc, state.sessions)
        if got != state:
            fail(f"GET of {t.label()} answered {got.short()} after the acknowledged write "
                 f"{state.short()}")
    run.record(r)


def sure_payload(t: Tracked) -> dict:
    """The payload keys with one value in every possible state of `t`."""
    payloads = [json.loads(s.payload) for s in t.states if isinstance(s, State)]
    if not payloads:
        return {}
    return {k: v for k, v in payloads[0].items() if all(p.get(k) == v for p in payloads)
            and all(k in p for p in payloads)}


def upsert_body(name: str, email: str | None, payload: dict) -> dict:
    body = {"channel": "website", "name": name, "payload": payload}
    if email:
        body["email"] = email
    return body


def single_upsert(run: Run, client: Client, t: Tracked, kind: str, n: int, actor: str,
                  rng: random.Random) -> bool:
    name = f"{actor} {n}"
    email = f"{actor}-{n}@fault.example" if rng.random() < 0.3 else None
    payload = {f"k{n % 4}": n, "last": actor}
    r, doc = client.request(kind, "PUT", f"/api/v1/chatbots/{CHATBOT}/sessions/{t.key}/contact",
                            upsert_body(name, email, payload))
    after = {apply_upsert(s, t.key, name, email, payload) for s in t.states}
    return settle_single(run, t, r, doc, after, kind, upsert=True)


def upserter(run: Run, token: str, actor: str, idx: int, kind: str) -> None:
    """Single upserts of new and returning sessions of its own, as fast as answered."""
    client = Client(run.port, token)
    rng = random.Random(f"{actor}-{idx}")
    mine: list[Tracked] = []
    n = 0
    while not run.stop.is_set():
        n += 1
        if not mine or rng.random() < 0.3:
            t = run.model.track(f"{run.run_id}-{actor}-{idx}-{n}", f"{actor}#{idx}")
            mine.append(t)
        else:
            t = rng.choice(mine)
        if single_upsert(run, client, t, kind, n, f"{actor}-{idx}", rng) and rng.random() < 0.1:
            read_back(run, client, t)


class Editor:
    """One token, its own contacts; every write operation of the API in turn."""

    def __init__(self, run: Run, token: str, actor: str):
        self.run, self.actor = run, actor
        self.client = Client(run.port, token)
        self.rng = random.Random(actor)
        self.mine: list[Tracked] = []
        self.persons: dict[str, list[Tracked]] = {}
        self.n = 0

    def new_key(self, person: str | None = None) -> Tracked:
        self.n += 1
        t = self.run.model.track(f"{self.run.run_id}-{self.actor}-{self.n}", self.actor, person)
        if person is None:
            self.mine.append(t)
        return t

    def live(self) -> list[Tracked]:
        return [t for t in self.mine if not t.retired and t.id is not None and t.exists_surely()]

    def setup(self, contacts: int, persons: int) -> bool:
        """Before the outages: plain contacts, and persons (two contacts sharing an email, with
        consent) for the erasures."""
        items = []
        for _ in range(contacts):
            t = self.new_key()
            items.append((t, f"{self.actor} seed {self.n}", None, {"seed": self.n}, None))
        for p in range(persons):
            email = f"person-{self.run.run_id}-{self.actor}-{p}@fault.example"
            self.persons[email] = []
            for _ in range(2):
                t = self.new_key(person=email)
                self.persons[email].append(t)
                consent = {"status": "granted", "source": "fault-test", "text_version": "v1"}
                items.append((t, f"Person {p}", email, {"person": p}, consent))
        return self.batch(items, kind="batch-setup")

    def batch(self, items: list, kind: str = "batch") -> bool:
        body = {"items": []}
        for t, name, email, payload, consent in items:
            item = {"chatbot_id": CHATBOT, "session_id": t.key} | upsert_body(name, email, payload)
            if consent:
                item["consent"] = consent
            body["items"].append(item)
        r, doc = self.client.request(kind, "POST", "/api/v1/contacts/batch-upsert", body)
        afters = [{apply_upsert(s, t.key, name, email, payload) for s in t.states}
                  for t, name, email, payload, _ in items]
        results = doc.get("results") if isinstance(doc, dict) else None
        if r.status == 200 and isinstance(results, list) and len(results) == len(items):
            r.expected = True
            self.run.record(r)
            for (t, _, _, _, consent), after, res in zip(items, afters, results):
                contact = res.get("contact") or {}
                if res.get("status") not in (200, 201) or t.id not in (None, contact.get("id")):
                    fail(f"{kind}: item of session {t.key} answered {res}")
                t.id = contact.get("id")
                got = observed(contact, t.sessions())
                if consent:  # the consent statement bumps the version once more
                    t.states = {got}
                else:
                    t.acked(after, got, kind)
            self.run.ack(kind, len(items))
            return True
        if r.status is not None and 200 <= r.status < 300:
            fail(f"{kind}: answered {r.status} with {str(doc)[:300]}")
        self.run.record(r)
        members = [(t, set(t.states), after) for (t, *_), after in zip(items, afters)]
        for t, _, after in members:
            t.maybe(after)
        self.run.model.atomic(kind, members)
        return False

    def op_batch(self) -> None:
        live = self.live()
        items = []
        for t in self.rng.sample(live, min(len(live), self.rng.randint(0, 4))):
            self.n += 1
            items.append((t, f"{self.actor} b{self.n}", None, {f"b{self.n % 3}": self.n}, None))
        for _ in range(self.rng.randint(1, 4)):
            t = self.new_key()
            items.append((t, f"{self.actor} b{self.n}", f"{self.actor}-{self.n}@fault.example",
                          {"new": self.n}, None))
        self.batch(items)

    def op_upsert(self) -> None:
        live = self.live()
        t = self.new_key() if not live or self.rng.random() < 0.5 else self.rng.choice(live)
        self.n += 1
        if single_upsert(self.run, self.client, t, "upsert-editor", self.n, self.actor, self.rng):
            self.maybe_read_back(t)

    def op_patch(self) -> None:
        live = self.live()
        if not live:
            return self.op_upsert()
        t = self.rng.choice(live)
        self.n += 1
        patch = {"name": f"{self.actor} p{self.n}", "payload": {f"p{self.n % 3}": self.n}}
        if self.rng.random() < 0.3:
            patch["email"] = f"{self.actor}-p{self.n}@fault.example"
        if self.rng.random() < 0.2:
            patch["payload"]["seed"] = None  # removes the key
        r, doc = self.client.request("patch", "PATCH", f"/api/v1/contacts/{t.id}", patch,
                                     content_type="application/merge-patch+json")
        after = {apply_patch(s, patch) for s in t.states}
        if settle_single(self.run, t, r, doc, after, "patch", upsert=False):
            self.maybe_read_back(t)

    def op_delete(self) -> None:
        live = self.live()
        if len(live) < 4:
            return self.op_batch()
        t = self.rng.choice(live)
        r, _ = self.client.request("delete", "DELETE", f"/api/v1/contacts/{t.id}")
        if r.status == 204:
            r.expected = True
            t.states = {ABSENT}
            self.run.ack("delete")
            self.run.record(r)
            self.maybe_read_back(t)
            return
        self.run.record(r)
        self.run.model.atomic("delete", [(t, set(t.states), {ABSENT})])
        t.maybe({ABSENT})

    def op_merge(self) -> None:
        live = self.live()
        if len(live) < 5:
            return self.op_batch()
        target, *sources = self.rng.sample(live, self.rng.randint(2, 3))
        union = target.sessions().union(*(s.sessions() for s in sources))
        r, doc = self.client.request("merge", "POST", f"/api/v1/contacts/{target.id}/merge",
                                     {"source_ids": [s.id for s in sources]})
        if r.status == 200 and isinstance(doc, dict) and doc.get("id") == target.id:
            r.expected = True
            self.run.record(r)
            # The target's own payload keys win (README: merge); its other fields may be
            # filled from a source.
            got = observed(doc, union)
            merged = doc.get("payload") or {}
            for key, value in sure_payload(target).items():
                if merged.get(key) != value:
                    fail(f"merge into {target.label()}: its payload key {key!r} was {value!r}, "
                         f"the merged contact has {merged.get(key)!r} (the target's must win)")
            target.acked({MergedTarget(union)}, got, "merge")
            for s in sources:
                s.states = {ABSENT}
                with self.run.model.lock:
                    self.run.model.merges[s.id] = target.id
            self.run.ack("merge")
            self.maybe_read_back(self.rng.choice(sources))
            return
        if r.status is not None and 200 <= r.status < 300:
            fail(f"merge into {target.label()}: answered {r.status} {str(doc)[:200]}")
        self.run.record(r)
        members = [(target, set(target.states), {MergedTarget(union)})]
        members += [(s, set(s.states), {ABSENT}) for s in sources]
        self.run.model.atomic("merge", members, target=target.id,
                              sources=[s.id for s in sources])
        for t, _, after in members:
            t.maybe(after)

    def op_bulk_delete(self) -> None:
        live = self.live()
        if len(live) < 6:
            return self.op_batch()
        doomed = self.rng.sample(live, self.rng.randint(2, 3))
        r, doc = self.client.request("bulk-delete", "POST", "/api/v1/contacts/bulk-delete",
                                     {"ids": [t.id for t in doomed]})
        if r.status == 200 and isinstance(doc, dict):
            r.expected = True
            self.run.record(r)
            if doc.get("deleted") != len(doomed):
                fail(f"bulk delete of {[t.id for t in doomed]} answered {doc}")
            for t in doomed:
                t.states = {ABSENT}
            self.run.ack("bulk-delete")
            return
        self.run.record(r)
        self.run.model.atomic("bulk-delete", [(t, set(t.states), {ABSENT}) for t in doomed])
        for t in doomed:
            t.maybe({ABSENT})

    def op_erasure(self) -> None:
        if not self.persons:
            return self.op_patch()
        email = self.rng.choice(sorted(self.persons))
        people = self.persons.pop(email)
        r, doc = self.client.request("erasure", "POST", "/api/v1/privacy/erasure",
                                     {"email": email})
        if r.status == 200 and isinstance(doc, dict):
            r.expected = True
            self.run.record(r)
            if doc.get("erased") != len(people):
                fail(f"erasure of {email} answered {doc}, expected {len(people)} contacts")
            for t in people:
                t.states = {ABSENT}
            with self.run.model.lock:
                self.run.model.erased.append((email, [t.id for t in people]))
            self.run.ack("erasure")
            return
        self.run.record(r)
        self.run.model.atomic("erasure", [(t, set(t.states), {ABSENT}) for t in people],
                              email=email)
        for t in people:
            t.maybe({ABSENT})

    def maybe_read_back(self, t: Tracked) -> None:
        if self.rng.random() < 0.3:
            read_back(self.run, self.client, t)

    def loop(self) -> None:
        ops = [(self.op_patch, 30), (self.op_batch, 15), (self.op_upsert, 15),
               (self.op_delete, 10), (self.op_merge, 12), (self.op_bulk_delete, 8),
               (self.op_erasure, 3)]
        funcs, weights = zip(*ops)
        while not self.run.stop.is_set():
            self.rng.choices(funcs, weights)[0]()
            time.sleep(0.01)


def retention_worker(run: Run, token: str, floor: int) -> None:
    """Lowers account 3's retention by 5 days every 0.25 s down to `floor`, so that the
    server's retention task (every second) deletes contacts through the outages."""
    client = Client(run.port, token)
    days = 365
    while not run.stop.is_set():
        days = max(floor, days - 5)
        put_retention(run, client, days)
        time.sleep(0.25)


def put_retention(run: Run, client: Client, days: int) -> bool:
    r, doc = client.request("retention", "PUT", "/api/v1/settings/retention", {"days": days})
    if r.status == 200:
        r.expected = True
        if not isinstance(doc, dict) or doc.get("days") != days:
            fail(f"PUT retention {days} answered {doc}")
        run.retention_acked.append(days)
        run.ack("retention")
    else:
        run.retention_maybe.append(days)
    run.record(r)
    return r.status == 200


def reader(run: Run, token: str, seed: int) -> None:
    client = Client(run.port, token)
    rng = random.Random(seed)
    while not run.stop.is_set():
        with run.model.lock:
            known = [t.id for t in run.model.contacts[-300:] if t.id is not None]
        if not known or rng.random() < 0.4:
            r, _ = client.request("list", "GET", "/api/v1/contacts?limit=5")
        else:
            # Any contact of any worker: 200, or 404/410 when its owner deleted or merged it.
            r, _ = client.request("get", "GET", f"/api/v1/contacts/{rng.choice(known)}")
            r.expected = r.status in (200, 404, 410)
        run.record(r)
        time.sleep(0.005)


def heavy_reader(run: Run, tokens: dict, seed: int) -> None:
    """Stats and duplicate groups of the working account and of the seeded one."""
    clients = {a: Client(run.port, t) for a, t in tokens.items()}
    rng = random.Random(seed)
    paths = [("stats", "/api/v1/contacts/stats?interval=day"),
             ("stats", "/api/v1/contacts/stats?interval=month&channel=website"),
             ("duplicates", "/api/v1/contacts/duplicates?limit=50"),
             ("duplicates", "/api/v1/contacts/duplicates?limit=20&match=email")]
    while not run.stop.is_set():
        kind, path = rng.choice(paths)
        r, _ = clients[rng.choice(sorted(clients))].request(kind, "GET", path)
        run.record(r)
        time.sleep(0.02)


def prober(run: Run, path: str, kind: str, interval: float) -> None:
    client = Client(run.port, None)
    while not run.stop.is_set():
        r, _ = client.request(kind, "GET", path)
        run.record(r)
        time.sleep(interval)
