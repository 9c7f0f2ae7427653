"""A store link cut mid-traffic: two `workflow-authz serve` processes on one PostgreSQL, A behind
a relay (tests/relay.py) that is cut -- reset, or blackholed as by a partition -- while both
decide, advance assessments and the policy is saved through B's admin form; then restored.

Required, and asserted: A answers 503 (never an allow) to everything sent during the cut, promptly,
with no client-side help; B keeps answering; once the link is back both answer from the same,
newest policy version on their next request; every advance answered 200 is in the history once,
and none answered otherwise is -- except one whose commit lost its connection, which the service
answers as "may have been saved" (CommitUnknown): such advances are counted, not hidden. The
counts of answers by status per process during each cut are in the "store cut" report section
(`pytest -rP` shows it). A second test makes that ambiguous case happen on purpose: the relay
cuts right after a COMMIT reached the server, before its answer comes back.
"""

from __future__ import annotations

import http.client
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, insert, make_url, select, text

from bench.admin_form import AdminFormWriter, Target, ask, prepare_target, toggled
from bench.internals import form_fields
from bench.server import (
    Reply,
    Server,
    create_admin,
    create_api_key,
    poll,
    serving,
    wait_ready,
)
from service import create_app
from service.config import load_config
from service.db import Database
from service.errors import CommitUnknown
from service.models import Assessment, Transition
from service.policies.store import current_version, tenant_cells
from service.workflows import Workflow, load_workflow
from tests.conftest import PG_ADMIN_URL, Api
from tests.relay import BLACKHOLE, RESET, Relay, relaying

pytestmark = pytest.mark.postgres

CUTS = (RESET, BLACKHOLE)
ASSESSMENTS = 1500
"""Assessments of the target's area both processes advance (two steps each), in the same order."""
STEPS = (("mentor", "group_registration"), ("headteacher", "organisation_approval"))
HTTP_TIMEOUT = 15.0
"""How long the test waits for any answer: past it (or gunicorn's 30 s kill) a request hung."""
WAIT = 60.0
"""How long a phase of the test may take to see what it waits for before failing."""
DURING_CUT = {"A": {"decide": 2, "advance": 2}, "B": {"decide": 5, "advance": 5, "save": 2}}
"""Answers to requests sent during the cut that each stream must get before the link returns."""
UNKNOWN = CommitUnknown().message
QUESTION = {"role": "parent", "action": "view", "area": "behaviour", "phase": "completed"}
"""Allowed by the default policy of tenant `default`."""


@dataclass(frozen=True)
class Sent:
    """One request a load thread made and what came back (status 0: no HTTP answer at all)."""

    server: str
    kind: str
    sent: float
    answered: float
    status: int
    body: Any = None
    actor: str | None = None
    error: str = ""

    @property
    def unknown_commit(self) -> bool:
        """A 503 saying the commit's outcome is unknown (the connection died during it)."""
        return self.status == 503 and _message(self.body) == UNKNOWN


def _message(body: Any) -> str | None:
    """The message of a JSON error body."""
    return body.get("error", {}).get("message") if isinstance(body, dict) else None


@dataclass
class Log:
    """Every request of every load thread, and a condition to wait on as they come in."""

    entries: list[Sent] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def add(self, entry: Sent) -> None:
        with self.changed:
            self.entries.append(entry)
            self.changed.notify_all()

    def wait_for(self, what: str, done: Callable[[list[Sent]], bool]) -> None:
        """Block until `done(entries)` holds; fail after WAIT seconds, saying what was missing."""
        with self.changed:
            if not self.changed.wait_for(lambda: done(self.entries), WAIT):
                counts = Counter((e.server, e.kind, e.status) for e in self.entries)
                pytest.fail(f"no {what} within {WAIT:g} s; answers so far: {dict(counts)}")

    def snapshot(self) -> list[Sent]:
        with self.changed:
            return list(self.entries)


@dataclass(frozen=True)
class Pair:
    """A (behind the relay) and B (direct) on one database, and what the load needs."""

    a: Server
    b: Server
    relay: Relay
    url: str
    key: str
    target: Target
    writer: AdminFormWriter
    workflow: Workflow
    prefix: str = ""
    """Of this test's assessment ids and actors: the servers serve every test of the module."""
    ids: tuple[str, ...] = ()


def _through(url: str, relay: Relay) -> str:
    """The database URL with the relay's address instead of the server's."""
    return make_url(url).set(host="127.0.0.1", port=relay.port).render_as_string(False)


def _add_assessments(pair: Pair, prefix: str) -> tuple[str, ...]:
    """ASSESSMENTS new assessments in the target's tenant and area, at its first phase (one
    insert: creating them one by one through the API would take most of the test's time)."""
    ids = tuple(f"{prefix}{i}" for i in range(ASSESSMENTS))
    area, tenant = pair.target.area, pair.target.tenant
    first = pair.workflow.area_by_id[area].first_phase.id
    rows = [dict(tenant=tenant, id=i, area=area, phase=first) for i in ids]
    db = Database(pair.url, 1)
    try:
        with db.write() as conn:
            conn.execute(insert(Assessment), rows)
    finally:
        db.dispose()
    return ids


@pytest.fixture(scope="module")
def module_pg_url(pg_template: str) -> Iterator[str]:
    """A database for the whole module, copied from the template like `pg_url`'s."""
    name = f"wa_cut_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def servers(module_pg_url: str) -> Iterator[Pair]:
    """A and B, started once for the module: starting and stopping them is most of a test's
    time. Each test works on assessments and actors of its own (see `pair`)."""
    url = module_pg_url
    workflow = load_workflow(Path(load_config()["POLICY_DIR"]) / "workflow.toml")
    target = prepare_target(url, workflow)
    key, login = create_api_key(url), create_admin(url)
    upstream = make_url(url)
    with (
        relaying((upstream.host or "127.0.0.1", upstream.port or 5432)) as relay,
        serving(_through(url, relay), workers=2, wait=False) as a,
        serving(url, workers=2, wait=False) as b,
    ):
        wait_ready(a)
        wait_ready(b)
        writer = AdminFormWriter(b, url, workflow, target, login)
        try:
            yield Pair(a, b, relay, url, key, target, writer, workflow)
        finally:
            writer.close()


@pytest.fixture
def pair(servers: Pair) -> Iterator[Pair]:
    """The servers, with assessments of this test's own; the link is restored afterwards."""
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    try:
        yield replace(servers, prefix=prefix, ids=_add_assessments(servers, prefix))
    finally:
        servers.relay.restore()


# -- the load ------------------------------------------------------------------------------------


def _call(
    log: Log, server: str, kind: str, actor: str | None, send: Callable[..., Reply], *args: Any
) -> None:
    """Make one request and log it, whatever happens (a hung or dropped one is status 0)."""
    sent = time.monotonic()
    try:
        reply = send(*args)
    except (OSError, http.client.HTTPException) as exc:
        log.add(Sent(server, kind, sent, time.monotonic(), 0, actor=actor, error=repr(exc)))
        return
    body = reply.json() if reply.headers.get("content-type") == "application/json" else None
    log.add(Sent(server, kind, sent, time.monotonic(), reply.status, body, actor))


def _decide(pair: Pair, name: str, server: Server, log: Log, stop: threading.Event) -> None:
    """POST /authorize about the target assessment until stopped."""
    request = ("/authorize", pair.target.question(), pair.key, HTTP_TIMEOUT)
    while not stop.is_set():
        _call(log, name, "decide", None, server.post_json, *request)


def _advance(pair: Pair, name: str, server: Server, log: Log, stop: threading.Event) -> None:
    """Walk the assessments through their two advances, each request under an actor of its own."""
    steps = ((assessment, step) for assessment in pair.ids for step in STEPS)
    for n, (assessment, (role, phase)) in enumerate(steps):
        if stop.is_set():
            return
        actor = f"{pair.prefix}{name}-{n}"
        body = {"tenant": pair.target.tenant, "role": role, "actor": actor, "expected_phase": phase}
        path = f"/assessments/{assessment}/advance"
        _call(log, name, "advance", actor, server.post_json, path, body, pair.key, HTTP_TIMEOUT)


def _save(pair: Pair, log: Log, stop: threading.Event) -> None:
    """Toggle the target's cell through B's admin form (logged in, CSRF) until stopped."""
    allowed = False
    area = pair.workflow.area_by_id[pair.target.area]
    while not stop.is_set():
        allowed = not allowed
        version, cells = pair.writer.local.cells(pair.target.tenant, area.id)
        fields = [("tenant", pair.target.tenant), ("version", str(version)), ("step", "save")]
        fields += form_fields(pair.workflow, area, toggled(cells, pair.target.cell, allowed))
        path = f"/admin/workflow/{area.id}"
        _call(log, "B", "save", None, pair.writer.browser.post_form, path, fields)


@contextmanager
def _load(pair: Pair, log: Log) -> Iterator[threading.Event]:
    """Every load thread running until the block ends; then stopped, each after its current
    request (which the test waits for: one still hanging is a failure)."""
    stop = threading.Event()
    threads = [
        threading.Thread(target=work, args=(pair, name, server, log, stop), daemon=True)
        for name, server in (("A", pair.a), ("B", pair.b))
        for work in (_decide, _advance)
    ]
    threads.append(threading.Thread(target=_save, args=(pair, log, stop), daemon=True))
    for thread in threads:
        thread.start()
    try:
        yield stop
    finally:
        stop.set()
        for thread in threads:
            thread.join(HTTP_TIMEOUT * 2)
    assert not any(t.is_alive() for t in threads), "a request never ended"


def _after(entries: Sequence[Sent], at: float) -> list[Sent]:
    """The requests sent after `at`."""
    return [e for e in entries if e.sent > at]


def _enough(at: float) -> Callable[[list[Sent]], bool]:
    """Whether every stream has answered DURING_CUT[server][kind] requests sent after `at`."""

    def done(entries: list[Sent]) -> bool:
        counts = Counter((e.server, e.kind) for e in _after(entries, at))
        return all(
            counts[server, kind] >= n
            for server, want in DURING_CUT.items()
            for kind, n in want.items()
        )

    return done


# -- the tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", CUTS)
def test_a_cut_store_link_fails_closed_and_loses_nothing(
    pair: Pair, cut: str, request: pytest.FixtureRequest
) -> None:
    log = Log()
    with _load(pair, log):
        log.wait_for("answer from every stream before the cut", _enough(0.0))
        getattr(pair.relay, cut)()
        cut_at = time.monotonic()
        log.wait_for("answers during the cut", _enough(cut_at))
    restored_at = time.monotonic()
    pair.relay.restore()
    entries = log.snapshot()
    during = _after(entries, cut_at)
    assert all(e.answered < restored_at for e in during)  # the load ended before the restore
    written = _history(pair)
    request.node.add_report_section("call", "store cut", _report(cut, entries, cut_at, written))

    _a_failed_closed([e for e in during if e.server == "A"])
    _b_kept_answering([e for e in during if e.server == "B"])
    _both_answer_the_newest_policy(pair, entries, cut_at)
    _history_matches_answers(written, [e for e in entries if e.kind == "advance"])


def _a_failed_closed(during: list[Sent]) -> None:
    """Everything sent to A while its link was cut got 503 unavailable, never an allow."""
    assert during
    assert [e for e in during if e.status != 503] == []
    for entry in during:
        assert entry.body["error"]["code"] == "unavailable"
        assert "allowed" not in entry.body


def _b_kept_answering(during: list[Sent]) -> None:
    """B answered every request meanwhile: decisions 200, saves 303, advances 200 or 409 (A or B
    moved the assessment first)."""
    allowed = {"decide": {200}, "save": {303}, "advance": {200, 409}}
    assert [e for e in during if e.status not in allowed[e.kind]] == []


def _both_answer_the_newest_policy(pair: Pair, entries: Sequence[Sent], cut_at: float) -> None:
    """The policy moved during the cut, and the next request of each process answers from the
    version now in the store -- A's last answer before the cut was from an older one."""
    saved = [e for e in _after(entries, cut_at) if e.kind == "save" and e.status == 303]
    assert len(saved) >= DURING_CUT["B"]["save"]
    db = Database(pair.url, 1)
    try:
        with db.read() as conn:
            version = current_version(conn, pair.target.tenant)
            cells = set(tenant_cells(conn, pair.target.tenant, pair.target.area))
    finally:
        db.dispose()
    newest = (pair.target.cell in cells, version)
    assert ask(pair.a, pair.key, pair.target) == newest
    assert ask(pair.b, pair.key, pair.target) == newest
    before = [e for e in entries if e.server == "A" and e.kind == "decide" and e.status == 200]
    assert version is not None and before[-1].body["policy_version"] < version


def _history(pair: Pair) -> Counter[str]:
    """How many transitions of the target's tenant each of this test's actors made."""
    db = Database(pair.url, 1)
    try:
        with db.read() as conn:
            query = select(Transition.actor).where(
                Transition.tenant == pair.target.tenant,
                Transition.actor.startswith(pair.prefix, autoescape=True),
            )
            return Counter(conn.execute(query).scalars())
    finally:
        db.dispose()


def _history_matches_answers(written: Counter[str], advances: list[Sent]) -> None:
    """Each advance answered 200 is in the history exactly once; no other is, except that one
    answered CommitUnknown may be. No advance is there twice (none was retried)."""
    assert set(written.values()) == {1}
    assert set(written) <= {e.actor for e in advances}
    assert [e for e in advances if e.status == 200 and e.actor not in written] == []
    others = [e for e in advances if e.status != 200 and not e.unknown_commit]
    assert [e for e in others if e.actor in written] == []


def _report(cut: str, entries: list[Sent], cut_at: float, written: Counter[str]) -> str:
    """Answers by process, kind and status during the cut and at its moment, A's slowest answer
    meanwhile, and the advances answered "may have been saved", by what the history says."""
    during = _after(entries, cut_at)
    in_flight = [e for e in entries if e.sent <= cut_at < e.answered]
    unknown = [e for e in entries if e.kind == "advance" and e.unknown_commit]
    saved = sum(e.actor in written for e in unknown)
    slowest = max((e.answered - e.sent for e in during if e.server == "A"), default=0.0)
    return "\n".join(
        [
            f"cut: {cut}",
            "answers to requests sent during the cut (process kind status: count):",
            *_counts(during),
            "requests in flight at the moment of the cut:",
            *_counts(in_flight),
            f"slowest answer of A during the cut: {slowest:.2f} s",
            f"advances answered 503 'may have been saved': {len(unknown)} "
            f"({saved} in the history, {len(unknown) - saved} not)",
        ]
    )


def _counts(entries: list[Sent]) -> list[str]:
    """One line per process, kind and status, with how many."""
    counts = Counter((e.server, e.kind, e.status) for e in entries)
    return [f"  {s} {k:8} {c}: {n}" for (s, k, c), n in sorted(counts.items())]


@pytest.mark.parametrize("cut", CUTS)
def test_a_commit_whose_answer_is_lost_is_answered_as_may_have_been_saved(
    pair: Pair, cut: str
) -> None:
    """The relay cuts A's link right after a COMMIT reached the server, before its answer
    returns: the advance is saved, and A answers 503 saying it may have been -- not that
    nothing was written. Once the link is back, the history and A agree."""
    assessment = pair.ids[0]
    role, phase = STEPS[0]
    body = {"tenant": pair.target.tenant, "role": role, "actor": "lost", "expected_phase": phase}
    pair.relay.cut_at_reply_to(b"COMMIT", cut)
    reply = pair.a.post_json(f"/assessments/{assessment}/advance", body, pair.key, HTTP_TIMEOUT)
    assert pair.relay.tripped.is_set()
    assert reply.status == 503
    assert reply.json()["error"] == {"code": "unavailable", "message": UNKNOWN}
    pair.relay.restore()
    path = f"/assessments/{assessment}?tenant={pair.target.tenant}"
    state = _answer_json(pair.a, path, pair.key)
    assert state["phase"] == "organisation_approval"
    assert [(s["actor"], s["from_phase"]) for s in state["history"]] == [("lost", phase)]


def test_locks_held_by_a_cut_process_do_not_stop_the_other(pair: Pair) -> None:
    """A's link is blackholed while its advance's UPDATE waits for a row lock the test holds;
    then the test lets it through. A's transaction now holds the row, and A will never speak
    again. The server ends that transaction after half of STORE_TIMEOUT, so B's advance of the
    same assessment, which waits for the row, wins in time; A answers 503 (nothing written:
    its commit was never sent), and the history holds B's move only."""
    assessment, (role, phase) = pair.ids[0], STEPS[0]
    body = {"tenant": pair.target.tenant, "role": role, "expected_phase": phase}
    path = f"/assessments/{assessment}/advance"
    db = Database(pair.url, 1)
    with ThreadPoolExecutor(1) as pool:
        with db.write() as conn:
            conn.execute(
                select(Assessment.id)
                .where(Assessment.tenant == pair.target.tenant, Assessment.id == assessment)
                .with_for_update()
            )
            a = pool.submit(pair.a.post_json, path, body | {"actor": "a"}, pair.key, HTTP_TIMEOUT)
            poll(pair.a, lambda: _backend(db, "Lock") is not None, WAIT)
            pair.relay.blackhole()
        ghost = _backend(db, None)
        poll(pair.a, lambda: _state(db, ghost) == "idle in transaction", WAIT)
        b = pair.b.post_json(path, body | {"actor": "b"}, pair.key, HTTP_TIMEOUT)
        a_reply = a.result(HTTP_TIMEOUT)
    db.dispose()
    pair.relay.restore()
    assert b.status == 200, b.body
    assert a_reply.status == 503 and a_reply.json()["error"]["message"] != UNKNOWN
    history = _answer_json(
        pair.b, f"/assessments/{assessment}?tenant={pair.target.tenant}", pair.key
    )
    assert [s["actor"] for s in history["history"]] == ["b"]


def _backend(db: Database, waiting: str | None) -> int | None:
    """The backend running our UPDATE of an assessment (waiting for `waiting`, if given)."""
    with db.read() as conn:
        query = text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'UPDATE assessments%' AND pid <> pg_backend_pid() "
            "AND (CAST(:waiting AS text) IS NULL OR wait_event_type = :waiting)"
        )
        pid: int | None = conn.execute(query, {"waiting": waiting}).scalar()
        return pid


def _state(db: Database, pid: int | None) -> str | None:
    """pg_stat_activity's state of a backend."""
    with db.read() as conn:
        query = text("SELECT state FROM pg_stat_activity WHERE pid = :pid")
        state: str | None = conn.execute(query, {"pid": pid}).scalar()
        return state


def _answer_json(server: Server, path: str, key: str) -> Any:
    """A GET's JSON body, which must be a 200."""
    reply = server.request("GET", path, headers={"Authorization": f"Bearer {key}"})
    assert reply.status == 200, reply.body
    return reply.json()


@pytest.mark.parametrize(("cut", "read_retries"), [(RESET, 1), (BLACKHOLE, 0)])
def test_only_a_read_is_tried_again_and_only_after_a_lost_connection(
    pg_url: str, cut: str, read_retries: int
) -> None:
    """Counted in the connections the relay sees: a read whose connection was reset is tried
    once more on a new one (the pool is renewed after a restart); one that got no reply is not
    (the store would not answer the retry either). A write is never sent again: its one new
    connection is the pool's check of an idle connection, before the transaction begins."""
    upstream = make_url(pg_url)
    with relaying((upstream.host or "127.0.0.1", upstream.port or 5432)) as relay:
        app = create_app({"DATABASE_URL": _through(pg_url, relay), "TESTING": True})
        api = Api(app.test_client(), create_api_key(pg_url))
        move = {"role": "mentor", "actor": "cut", "expected_phase": "group_registration"}
        try:
            assert api.post("/authorize", QUESTION).json["allowed"] is True  # both pools hold
            assert api.post("/assessments", {"id": "x", "area": "behaviour"}).status_code == 201
            getattr(relay, cut)()
            accepted = relay.accepted
            decision = _in_time(lambda: api.post("/authorize", QUESTION))
            assert decision.status_code == 503 and "allowed" not in decision.json
            assert relay.accepted - accepted == read_retries
            accepted = relay.accepted
            advance = _in_time(lambda: api.post("/assessments/x/advance", move))
            assert advance.status_code == 503
            assert relay.accepted - accepted == 1
            relay.restore()
            assert api.get("/assessments/x").json["history"] == []
            assert api.post("/assessments/x/advance", move).status_code == 200
        finally:
            app.extensions["workflow_authz.db"].dispose()


def _in_time(send: Callable[[], Any]) -> Any:
    """send()'s result; the test fails if it is still waiting after HTTP_TIMEOUT (it hung: the
    relay's close at the end of the test breaks the connection it waits on)."""
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(send).result(HTTP_TIMEOUT)
    except FutureTimeout:
        pytest.fail(f"no answer within {HTTP_TIMEOUT:g} s")
    finally:
        pool.shutdown(wait=False)
