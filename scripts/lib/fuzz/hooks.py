"""Schemathesis extensions for scripts/fuzz (loaded through `hooks` in schemathesis.toml).

Generation only, never a filter on failures:

- `format: phone` (this API's own format) gets a generator of numbers the service accepts.
- Positive test cases never send an invented pagination cursor (cursors are opaque: only a
  `next_cursor` of the same listing is valid, which no schema can state): a cursor is replaced
  by a real one, fetched with the same query, or dropped when there is no next page.
- Conditional requests send no made-up tag (a documented 412, evaluated before the body, which
  schemathesis counts as neither acceptance nor rejection): positive ones on a contact send its
  current ETag in `If-Match`, the others no precondition, and positive growth series stay within the documented 1000 buckets
  with `from` before `to`.
- Positive merges name real sources: contacts of account A created for the purpose (random
  int64 ids are unknown ids, a documented 422).

One check, `cross_tenant_write`: every request on `/contacts/{id}...` that account A's token
got a 2xx for is replayed with account B's token, for writes as well as reads, and must get
404 (an id of another account is answered as an unknown id). Schemathesis's own
object_level_authorization check covers reads only.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re

import requests
import schemathesis
from hypothesis import strategies as st

# --- formats -----------------------------------------------------------------------------------

# Country code and mobile range, and how many digits complete a valid number (E.164).
_PHONE_RANGES = [("+447700", 6), ("+3361234", 4), ("+4915112", 7), ("+1415555", 4), ("+3934712", 5),
                 ("+34612", 6), ("+8190", 8)]
_phones = st.sampled_from(_PHONE_RANGES).flatmap(
    lambda r: st.text(alphabet="0123456789", min_size=r[1], max_size=r[1]).map(lambda d: r[0] + d)
)
schemathesis.openapi.format("phone", _phones)


# --- identities ----------------------------------------------------------------------------------


def _tokens() -> dict[str, str]:
    with open(os.environ["FUZZ_WFC_PATH"], encoding="utf-8") as f:
        doc = json.load(f)
    return {
        entry["name"]: next(h["value"] for h in entry["fixedHeaders"] if h["name"] == "Authorization")
        for entry in doc["auth"]
    }


TOKENS = _tokens()
OWNER, PEER = "tenant-a", "tenant-b"


def _base_url(case) -> str:
    return os.environ["FUZZ_BASE_URL"]


def _is_positive(case) -> bool:
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


# --- realistic positive requests ----------------------------------------------------------------

_PAGED = re.compile(r"^/api/v1/(contacts|contacts/duplicates|contacts/\{id\}/sessions|audit-events)$")


def _real_cursor(case) -> str | None:
    query = {k: v for k, v in (case.query or {}).items() if k != "cursor"}
    query["limit"] = 1
    path = case.formatted_path
    response = requests.get(
        _base_url(case) + path,
        params={k: (",".join(map(str, v)) if isinstance(v, list) else v) for k, v in query.items()},
        headers={"Authorization": TOKENS[OWNER]},
        timeout=10,
    )
    if response.status_code != 200:
        return None
    return response.json().get("next_cursor")


def _fresh_contacts(case, n: int) -> list[int]:
    ids = []
    for _ in range(n):
        response = requests.post(
            _base_url(case) + "/api/v1/contacts",
            json={"chatbot_id": "fuzz-merge", "channel": "api"},
            headers={"Authorization": TOKENS[OWNER]},
            timeout=10,
        )
        response.raise_for_status()
        ids.append(response.json()["id"])
    return ids


def _current_etag(case) -> str | None:
    contact = (case.path_parameters or {}).get("id")
    response = requests.get(
        f"{_base_url(case)}/api/v1/contacts/{contact}",
        headers={"Authorization": TOKENS[OWNER]},
        timeout=10,
    )
    return response.headers.get("ETag") if response.status_code == 200 else None


def _instant(value) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(str(value).strip().replace(" ", "+"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


# Bucket lengths with room to spare below 1000 buckets (months are at least 28 days).
_BUCKET_DAYS = {"day": 1, "week": 7, "month": 28}


def _series_fits(query: dict) -> bool:
    start = _instant(query["from"])
    end = _instant(query["to"]) if "to" in query else dt.datetime.now(dt.timezone.utc)
    if start is None or end is None:
        return True
    days = _BUCKET_DAYS.get(query.get("interval", "day"), 1)
    return start < end and (end - start) < dt.timedelta(days=days * 990)


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers if case.headers is not None else {}
    # One credential per request: the auth provider's. A generated `Authorization` field next
    # to it is two credentials, which the service refuses (400 invalid_request, RFC 6750 §3.1).
    for name in [k for k in headers if k.lower() == "authorization"]:
        del headers[name]
    for extra in (kwargs.get("headers") or {},):
        for name in [k for k in extra if k.lower() in ("if-none-match", "if-match")]:
            if name.lower() == "if-none-match" or "id" not in (case.path_parameters or {}):
                del extra[name]
    # Preconditions are evaluated before the body is read (RFC 9110 §13.2.2), so a made-up
    # entity tag is a documented 412 whatever else the case holds; schemathesis counts 412
    # neither as an acceptance nor as a rejection. Their evaluation is proven by
    # tests/api/preconditions.rs; here only a real ETag (below) is sent.
    headers.pop("If-None-Match", None)
    if "id" not in (case.path_parameters or {}):
        headers.pop("If-Match", None)
    if not _is_positive(case):
        headers.pop("If-Match", None)
        return
    params = case.path_parameters or {}
    if "id" in params and params["id"] in (None, "None"):
        # A stateful link from a nullable response field (an account-level audit event has
        # `contact_id: null`) yields no id at all, which is not schema-valid data: use a real one.
        params["id"] = _fresh_contacts(case, 1)[0]
    if "If-Match" in (case.headers or {}) and "id" in (case.path_parameters or {}):
        # The current version, or any version when there is no such contact (then a 404).
        case.headers["If-Match"] = _current_etag(case) or "*"
    if case.path == "/api/v1/contacts/stats" and isinstance(case.query, dict) and "from" in case.query:
        if not _series_fits(case.query):
            del case.query["from"]
    if _PAGED.match(case.path) and isinstance(case.query, dict) and "cursor" in case.query:
        cursor = _real_cursor(case)
        if cursor is None:
            del case.query["cursor"]
        else:
            case.query["cursor"] = cursor
            case.query["limit"] = 1
    if case.path == "/api/v1/contacts/{id}/merge" and isinstance(case.body, dict):
        sources = case.body.get("source_ids")
        if isinstance(sources, list) and sources:
            case.body["source_ids"] = _fresh_contacts(case, min(len(sources), 3))


# --- cross-tenant replay -----------------------------------------------------------------------


@schemathesis.check
def cross_tenant_write(ctx, response, case):
    """A 2xx that account A got on one of its contacts: account B's replay must be a 404."""
    if not case.path.startswith("/api/v1/contacts/{id}") or not 200 <= response.status_code < 300:
        return None
    if case.method.upper() == "DELETE":
        # The contact is gone now; B's replay would be a 404 whatever the service checks.
        return None
    request = response.request
    headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
    headers["Authorization"] = TOKENS[PEER]
    replay = requests.request(request.method, request.url, headers=headers, data=request.body, timeout=10)
    if replay.status_code != 404:
        raise AssertionError(
            f"account B's replay of account A's {case.method} {request.url} answered "
            f"{replay.status_code}, expected 404: {replay.text[:300]}"
        )
    return None
