"""Deciding with casbin's model: each tenant's rows compiled for membership tests and cached by
version; the pure `validate` and `decide` every decision goes through.

model.conf is checked when the engine starts (model.py): its matcher is exact equality on all
five fields with a some-allow effect, so a request is allowed exactly when it equals one of the
tenant's rows. Each loaded tenant is therefore compiled into a frozenset and a decision is one
membership test instead of casbin's per-call matcher evaluation (which re-parses the matcher and
scans every row); tests/test_policies.py proves both give the same answer for every cell. A
process that writes a tenant's policy (policy_changes.py) forgets its cached copy.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from service.db import Database
from service.errors import InvalidRequest
from service.policies import store
from service.policies.model import load_model
from service.workflows import (
    ADVANCE,
    Area,
    Cell,
    Phase,
    Row,
    Workflow,
    load_workflow,
)


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
    """One tenant's rows at one version, compiled for membership tests. A policy never changes
    (a write makes a new version, so a new TenantPolicy): `decided` remembers each cell's
    Decision, reason sentence included, the first time `decide` makes it. Only cells that
    `validate` accepted reach it, so it holds at most the definition's cells."""

    tenant: str
    version: int
    cells: frozenset[Cell]
    decided: dict[Cell, Decision] = field(default_factory=dict, compare=False, repr=False)


class PolicyEngine:
    """Per-process policy state: the model, the workflow and a bounded cache of tenant policies."""

    def __init__(self, db: Database, workflow: Workflow, model_path: Path, capacity: int) -> None:
        self.db = db
        self.workflow = workflow
        self.model_path = model_path
        self.capacity = capacity
        load_model(model_path)
        self._cache: OrderedDict[str, TenantPolicy] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, db: Database, settings: Mapping[str, Any]) -> PolicyEngine:
        """An engine over `db` with the definition, model and cache size the settings name."""
        workflow = load_workflow(Path(settings["POLICY_DIR"]) / "workflow.toml")
        return cls(db, workflow, Path(settings["MODEL_PATH"]), settings["POLICY_CACHE_TENANTS"])

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
        area_def = validate(self.workflow, role=role, action=action, area=area, phase=phase)
        return decide(self.policy(tenant, version, conn), area_def, (role, area, phase, action))

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


def validate(workflow: Workflow, *, role: str, action: str, area: str, phase: str) -> Area:
    """Refuse identifiers the definition does not know with a 400 naming the field; the area."""
    if role not in workflow.role_ids:
        raise InvalidRequest(f"unknown role {role!r}", field="role")
    if action not in workflow.actions:
        raise InvalidRequest(f"unknown action {action!r}", field="action")
    area_def = workflow.area_by_id.get(area)
    if area_def is None:
        raise InvalidRequest(f"unknown area {area!r}", field="area")
    if area_def.phase(phase) is None:
        raise InvalidRequest(f"unknown phase {phase!r} of area {area!r}", field="phase")
    return area_def


def decide(policy: TenantPolicy, area: Area, cell: Cell) -> Decision:
    """The answer to one valid (role, area, phase, action) question under a tenant's policy:
    pure, the one place a decision is made (the API, the CLI's `test` and the benchmarks).
    Made once per policy and cell (TenantPolicy.decided): a batch asks the same cells again."""
    decision = policy.decided.get(cell)
    if decision is None:
        decision = policy.decided.setdefault(cell, _decided(policy, area, cell))
    return decision


def _decided(policy: TenantPolicy, area: Area, cell: Cell) -> Decision:
    """The decision and its reason, as `decide` remembers it."""
    allowed = cell in policy.cells
    role, area_id, phase, action = cell
    return Decision(
        allowed=allowed,
        tenant=policy.tenant,
        role=role,
        area=area_id,
        phase=phase,
        action=action,
        policy_version=policy.version,
        rule=(policy.tenant, *cell) if allowed else None,
        reason=explain(policy, area, cell, allowed),
    )


def explain(policy: TenantPolicy, area: Area, cell: Cell, allowed: bool) -> str:
    """A plain sentence: why this was allowed, or why not and where the role would be allowed."""
    role, area_id, phase_id, action = cell
    phase = area.phase(phase_id)
    label = phase.label if phase else phase_id
    where = f"{area_id} in phase {phase_id} ({label})"
    if allowed:
        return f"Allowed: {role} may {action} {where} by tenant {policy.tenant}'s policy."
    denied = f"Denied: {role} may not {action} {where}"
    if action == ADVANCE and area.is_final(phase_id):
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
    version = store.require_version(conn, tenant)
    return TenantPolicy(tenant, version, frozenset(store.tenant_cells(conn, tenant)))
