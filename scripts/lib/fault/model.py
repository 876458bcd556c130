"""What every acknowledged write must have left behind.

Each worker owns its contacts (keyed by the session that created them, its "home" session), so
the final state of each is computable from the worker's own requests. A contact has a set of
possible states: an acknowledged write maps the set through the write and must answer one of
the results (the answer then is the one state); a write answered 503 (or not answered) may or
may not have applied, so the set becomes both. A write that spans contacts (batch, merge, bulk
delete, erasure) and was not acknowledged retires its contacts (no later write touches them) and
records an atomic group: afterwards either all of it applied or none of it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

from .common import fail


def canon(payload: dict) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class State:
    name: str | None
    email: str | None
    payload: str  # canonical JSON
    version: int
    sessions: frozenset

    def short(self) -> str:
        return (f"(name={self.name!r}, email={self.email!r}, payload={self.payload}, "
                f"v{self.version}, sessions={sorted(self.sessions)})")


ABSENT = "absent"


@dataclass(frozen=True)
class MergedTarget:
    """The target of a merge that may have applied: any fields, exactly these sessions."""
    sessions: frozenset

    def short(self) -> str:
        return f"(merged, sessions={sorted(self.sessions)})"


def short(s) -> str:
    return "absent" if s == ABSENT else s.short()


def matches(expected, actual) -> bool:
    if isinstance(expected, MergedTarget):
        return isinstance(actual, State) and actual.sessions == expected.sessions
    return expected == actual


def apply_upsert(s, key: str, name: str | None, email: str | None, payload: dict):
    """The session upsert (and a batch item): creates, or fills the given fields, merges the
    payload's top level and bumps the version."""
    if s == ABSENT:
        return State(name, email, canon(payload), 1, frozenset({key}))
    merged = json.loads(s.payload)
    merged.update(payload)
    return State(name or s.name, email or s.email, canon(merged), s.version + 1, s.sessions)


def apply_patch(s, patch: dict):
    """A merge patch of name, email and flat payload keys (always a change: a new name)."""
    if s == ABSENT:
        return ABSENT
    merged = json.loads(s.payload)
    for k, v in patch.get("payload", {}).items():
        if v is None:
            merged.pop(k, None)
        else:
            merged[k] = v
    return State(patch.get("name", s.name), patch.get("email", s.email), canon(merged),
                 s.version + 1, s.sessions)


def observed(doc: dict, sessions: frozenset) -> State:
    return State(doc.get("name"), doc.get("email"), canon(doc.get("payload") or {}),
                 int(doc.get("version", -1)), sessions)


@dataclass
class Tracked:
    key: str  # home session id
    owner: str
    id: int | None = None
    states: set = field(default_factory=lambda: {ABSENT})
    retired: bool = False
    person: str | None = None  # the email of an erasure subject

    def label(self) -> str:
        return f"contact {self.id} (session {self.key}, {self.owner})"

    def exists_surely(self) -> bool:
        return all(isinstance(s, State) for s in self.states)

    def sessions(self) -> frozenset:
        found = {s.sessions for s in self.states if isinstance(s, State)}
        if len(found) == 1:
            return next(iter(found))
        return frozenset({self.key}) if not found else frozenset().union(*found)

    def acked(self, after: set, got, what: str) -> bool:
        """An acknowledged write: `got` must be one of `after`; it is then the one state."""
        ok = any(matches(a, got) for a in after)
        if not ok:
            fail(f"acknowledged {what} of {self.label()} answered {short(got)}; the possible "
                 f"states were {', '.join(short(a) for a in after)}")
        self.states = {got}
        return ok

    def maybe(self, after: set) -> None:
        """A write that may or may not have applied."""
        self.states = self.states | after


@dataclass
class Atomic:
    """A multi-contact write that may have applied: all of it or nothing."""
    kind: str
    members: list  # (Tracked, before states, after states)
    extra: dict = field(default_factory=dict)


@dataclass
class Model:
    lock: threading.Lock = field(default_factory=threading.Lock)
    contacts: list = field(default_factory=list)
    atomics: list = field(default_factory=list)
    merges: dict = field(default_factory=dict)  # acknowledged: source id -> target id
    erased: list = field(default_factory=list)  # acknowledged erasures: (email, ids)

    def track(self, key: str, owner: str, person: str | None = None) -> Tracked:
        t = Tracked(key, owner, person=person)
        with self.lock:
            self.contacts.append(t)
        return t

    def atomic(self, kind: str, members: list, **extra) -> None:
        for t, _, _ in members:
            t.retired = True
        with self.lock:
            self.atomics.append(Atomic(kind, members, extra))
