"""The one seam around casbin: the model, each tenant's policy rows, versions and decide().

casbin parses model.conf; the rows live in casbin-sqlalchemy-adapter's `casbin_rule` table, and a
process reads one tenant's rows (by the tenant-leading index) when it first decides for it.
Because the model's matcher is exact equality on all five fields with a some-allow effect --
checked when the model is loaded -- a request is allowed exactly when it equals one of the
tenant's rows. Each loaded tenant is therefore compiled into a frozenset and a decision is one
membership test instead of casbin's per-call matcher evaluation (which re-parses the matcher and
scans every row). tests/test_policies.py proves both give the same answer for every cell. Writes
are our own single transactions, never the adapter's auto-save, which commits row by row and
deletes across tenants.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import casbin
from casbin.model import Model
from casbin.persist.adapters import FileAdapter
from sqlalchemy import Connection

from service import events, policy_store
from service.db import Database
from service.errors import Conflict, InvalidRequest
from service.policy_store import CellChange, current_version, require_version, tenant_cells
from service.workflows import Area, Cell, Phase, Row, Workflow, is_identifier

FIELDS = ("tenant", "role", "area", "phase", "action")
EFFECT = "some(where (p_eft == allow))"


class ModelError(ValueError):
    """model.conf is not the exact-equality model this service can decide with."""


@dataclass(frozen=True)
class Decision:
    """An answer: allowed or not, the row that allowed it, the policy version, and why."""

    allowed: bool
    tenant: str
    role: str
    area: str
    phase: str
    action: str
    policy_version: int
    rule: Row | None
    reason: str


@dataclass(frozen=True)
class TenantPolicy:
    """One tenant's rows at one version, compiled for membership tests."""

    tenant: str
    version: int
    cells: frozenset[Cell]


@dataclass(frozen=True)
class WriteResult:
    """What a policy write did: the version now in force and the cells it changed."""

    version: int
    changes: tuple[CellChange, ...] = field(default_factory=tuple)


def load_model(path: Path) -> Model:
    """Parse model.conf with casbin and refuse any model that is not exact-equality some-allow."""
    model = casbin.Enforcer.new_model(path=str(path))
    fields = [f"r_{f}" for f in FIELDS]
    if model["r"]["r"].tokens != fields or model["p"]["p"].tokens != [f"p_{f}" for f in FIELDS]:
        raise ModelError(f"{path}: request and policy must be exactly {', '.join(FIELDS)}")
    if model["e"]["e"].value.replace(" ", "") != EFFECT.replace(" ", ""):
        raise ModelError(f"{path}: effect must be {EFFECT.replace('_', '.')}")
    terms = {t.replace(" ", "") for t in model["m"]["m"].value.split("&&")}
    if terms != {f"r_{f}==p_{f}" for f in FIELDS}:
        raise ModelError(f"{path}: the matcher must be r.X == p.X for each field, joined by &&")
    return model


def read_policy_file(model_path: Path, csv_path: Path) -> list[Row]:
    """The rows of a casbin policy CSV, read by casbin's own file adapter."""
    model = load_model(model_path)
    FileAdapter(str(csv_path)).load_policy(model)
    return [_row(r) for r in model.get_policy("p", "p")]


class PolicyEngine:
    """Per-process policy state: the model, the workflow and a bounded cache of tenant policies."""

    def __init__(self, db: Database, workflow: Workflow, model_path: Path, capacity: int) -> None:
        self.db = db
        self.workflow = workflow
        self.model_path = model_path
        self.capacity = capacity
        self._model_text = model_path.read_text(encoding="utf-8")
        load_model(model_path)
        self._cache: OrderedDict[str, TenantPolicy] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def for_database(cls, db: Database, capacity: int = 16) -> PolicyEngine:
        """An engine over `db` with the configured workflow and model (CLI, tests, benchmarks)."""
        from service.config import load_config
        from service.workflows import load_workflow

        settings = load_config()
        workflow = load_workflow(Path(settings["POLICY_DIR"]) / "workflow.toml")
        return cls(db, workflow, Path(settings["MODEL_PATH"]), capacity)

    # -- decisions ---------------------------------------------------------------------------

    def decide(
        self,
        tenant: str,
        role: str,
        area: str,
        phase: str,
        action: str,
        *,
        version: int,
        conn: Connection | None = None,
    ) -> Decision:
        """Decide one request against the tenant's policy at `version` (read by the caller)."""
        area_def = self.validate(role=role, action=action, area=area, phase=phase)
        policy = self.policy(tenant, version, conn)
        cell = (role, area, phase, action)
        allowed = cell in policy.cells
        return Decision(
            allowed=allowed,
            tenant=tenant,
            role=role,
            area=area,
            phase=phase,
            action=action,
            policy_version=policy.version,
            rule=(tenant, *cell) if allowed else None,
            reason=explain(policy, area_def, cell, allowed),
        )

    def permitted(
        self,
        tenant: str,
        role: str,
        area: str,
        phase: str,
        *,
        version: int,
        conn: Connection | None = None,
    ) -> list[str]:
        """The actions `role` may take at this phase, in the definition's order."""
        self.validate(role=role, action=self.workflow.actions[0], area=area, phase=phase)
        cells = self.policy(tenant, version, conn).cells
        return [a for a in self.workflow.actions if (role, area, phase, a) in cells]

    def validate(self, *, role: str, action: str, area: str, phase: str) -> Area:
        """Refuse unknown identifiers with a 400 naming the field; returns the area."""
        if role not in self.workflow.role_ids:
            raise InvalidRequest(f"unknown role {role!r}", field="role")
        if action not in self.workflow.actions:
            raise InvalidRequest(f"unknown action {action!r}", field="action")
        area_def = self.workflow.area_by_id.get(area)
        if area_def is None:
            raise InvalidRequest(f"unknown area {area!r}", field="area")
        if area_def.phase(phase) is None:
            raise InvalidRequest(f"unknown phase {phase!r} of area {area!r}", field="phase")
        return area_def

    def policy(self, tenant: str, version: int, conn: Connection | None = None) -> TenantPolicy:
        """The tenant's compiled policy, reloaded when the store's version differs from ours.

        A miss reads on `conn` when given (so a caller inside a transaction needs no second
        connection), else in a read transaction of its own.
        """
        with self._lock:
            cached = self._cache.get(tenant)
            if cached is not None and cached.version == version:
                self._cache.move_to_end(tenant)
                return cached
        if conn is None:
            with self.db.read() as own:
                loaded = load_tenant(own, tenant)
        else:
            loaded = load_tenant(conn, tenant)
        with self._lock:
            self._cache[tenant] = loaded
            self._cache.move_to_end(tenant)
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return loaded

    def cached_tenants(self) -> list[str]:
        """Tenants resident in this process, least recently used first."""
        with self._lock:
            return list(self._cache)

    def forget(self, tenant: str) -> None:
        """Drop a tenant from the cache (after this process wrote its policy)."""
        with self._lock:
            self._cache.pop(tenant, None)

    # -- writes ------------------------------------------------------------------------------

    def create_tenant(self, conn: Connection, tenant: str, rows: Iterable[Cell], actor: str) -> int:
        """Create a tenant with the given cells at version 1 (Conflict if it exists)."""
        if not is_identifier(tenant):
            raise InvalidRequest(f"invalid tenant {tenant!r}: use [a-z][a-z0-9_]*", field="tenant")
        if current_version(conn, tenant) is not None:
            raise Conflict(f"tenant {tenant!r} already exists", field="tenant")
        policy_store.insert_tenant(conn, tenant, actor)
        policy_store.insert_cells(conn, tenant, set(rows))
        return 1

    def replace(
        self,
        conn: Connection,
        tenant: str,
        cells: Iterable[Cell],
        *,
        actor: str,
        area: str | None = None,
        expected_version: int | None = None,
    ) -> WriteResult:
        """Replace a tenant's rows (or one area's) in the caller's transaction, bumping the version.

        Refuses with Conflict when `expected_version` is given and the store holds another one,
        so an edit made from a stale form never overwrites a newer one. Audits every changed cell.
        """
        version = policy_store.lock_version(conn, tenant)
        if expected_version is not None and expected_version != version:
            raise Conflict(
                f"the policy of {tenant!r} changed (version {expected_version} -> {version}) "
                "since it was loaded; reload and apply your change again",
                field="version",
            )
        new = {c for c in cells if area is None or c[1] == area}
        old = set(tenant_cells(conn, tenant, area))
        changes = tuple(
            CellChange(c, c in old, c in new) for c in sorted(old ^ new, key=self._cell_order)
        )
        if not changes:
            return WriteResult(version)
        version = policy_store.bump(conn, tenant, version, actor)
        policy_store.delete_cells(conn, tenant, old - new)
        policy_store.insert_cells(conn, tenant, new - old)
        policy_store.audit(conn, tenant, version, actor, changes)
        events.on_policy_change(conn, tenant, version, _external_views(changes))
        self.forget(tenant)
        return WriteResult(version, changes)

    def _cell_order(self, cell: Cell) -> tuple[int, int, int, int]:
        """Display order of a cell: area, phase, role and action as the definition lists them."""
        role, area, phase, action = cell
        areas = [a.id for a in self.workflow.areas]
        area_def = self.workflow.area_by_id.get(area)
        roles = [r.id for r in self.workflow.roles]
        return (
            areas.index(area) if area in areas else len(areas),
            area_def.index(phase) if area_def and area_def.phase(phase) else 99,
            roles.index(role) if role in roles else len(roles),
            self.workflow.actions.index(action) if action in self.workflow.actions else 99,
        )


def _external_views(changes: Sequence[CellChange]) -> list[tuple[str, str, bool]]:
    """(area, phase, visible now) for each phase whose external-systems view cell changed."""
    return [
        (c.cell[1], c.cell[2], c.after)
        for c in changes
        if c.cell[0] == events.EXTERNAL and c.cell[3] == "view"
    ]


def explain(policy: TenantPolicy, area: Area, cell: Cell, allowed: bool) -> str:
    """A plain sentence: why this was allowed, or why not and where the role would be allowed."""
    role, area_id, phase_id, action = cell
    phase = area.phase(phase_id)
    label = phase.label if phase else phase_id
    where = f"{area_id} in phase {phase_id} ({label})"
    if allowed:
        return f"Allowed: {role} may {action} {where} by tenant {policy.tenant}'s policy."
    denied = f"Denied: {role} may not {action} {where}"
    if action == "advance" and area.is_final(phase_id):
        return f"{denied}: it is the final phase, which nothing advances."
    phases = [p for p in area.phases if (role, area_id, p.id, action) in policy.cells]
    if not phases:
        return (
            f"{denied}; tenant {policy.tenant}'s policy lets {role} {action} {area_id} in no phase."
        )
    return f"{denied}; {role} may {action} {area_id} {_span(area, phases)}."


def _span(area: Area, phases: Sequence[Phase]) -> str:
    """'from phase X' when the phases run to the end of the area, else 'only in phase X, Y'."""
    ids = [p.id for p in phases]
    all_ids = [p.id for p in area.phases]
    start = all_ids.index(ids[0])
    if ids == all_ids[start:] and len(ids) > 1 or ids == all_ids[-1:]:
        first = area.phases[start]
        return f"from phase {first.id} ({first.label}) on"
    return "only in phase " + ", ".join(ids)


def load_tenant(conn: Connection, tenant: str) -> TenantPolicy:
    """Read a tenant's version, then its rows, through the tenant-leading index only.

    Version first: if a write lands in between we label newer rows with an older version,
    which costs one more reload later, never a stale answer kept for good.
    """
    version = require_version(conn, tenant)
    return TenantPolicy(tenant, version, frozenset(tenant_cells(conn, tenant)))


def _row(values: Sequence[str]) -> Row:
    tenant, role, area, phase, action = values
    return (tenant, role, area, phase, action)
