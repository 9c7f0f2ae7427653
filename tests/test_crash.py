"""A server process killed in the middle of a policy save leaves the store as it was: the rows,
the version and the audit are all from before (the save is one transaction), and the next
process to open the store answers from the previous matrix."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import func, select

from service.config import load_config
from service.db import Database
from service.models import PolicyChange
from service.policies import PolicyEngine
from service.policies.store import current_version, tenant_cells

SAVER = textwrap.dedent(
    """
    import sys
    from service import policy_changes
    from service.config import load_config
    from service.db import Database
    from service.policies import PolicyEngine
    db = Database(sys.argv[1])
    engine = PolicyEngine.from_settings(db, load_config())
    with db.write() as conn:
        policy_changes.save(conn, engine, "default", set(), actor="doomed", area="behaviour")
        print("written", flush=True)
        sys.stdin.readline()  # killed here, before the commit
    """
)


def _kill_mid_save(url: str) -> None:
    """Run a save in another process and SIGKILL it after its writes, before its commit."""
    with subprocess.Popen(
        [sys.executable, "-c", SAVER, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None and child.stdout.readline().strip() == "written"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_process_killed_while_saving_leaves_the_store_consistent(
    request: pytest.FixtureRequest, backend: str
) -> None:
    url: str = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    db = Database(url)
    with db.read() as conn:
        before = tenant_cells(conn, "default")
    _kill_mid_save(url)
    with db.read() as conn:
        assert tenant_cells(conn, "default") == before
        assert current_version(conn, "default") == 1
        assert conn.execute(select(func.count()).select_from(PolicyChange)).scalar_one() == 0
    engine = PolicyEngine.from_settings(db, load_config())
    assert engine.decide(
        "default", "mentor", "behaviour", "group_registration", "edit", version=1
    ).allowed
    db.dispose()
