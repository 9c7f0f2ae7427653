"""The workflow definition's rules (service/workflows.py), issue 15: one rule set serves both the
service, which refuses a definition in one line, and the checker, which locates each problem.

Every invalid definition fixture whose shape is sound is refused by the service with exactly the
checker's messages; the shipped definition is accepted by both; the feed's audience is one
audience at most.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from service.checker.definition import check_definition_text
from service.workflows import (
    DefinitionError,
    build_workflow,
    definition_problems,
    load_workflow,
    parse_workflow,
)

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "policy" / "workflow.toml"
RULE_FOLDERS = sorted(
    folder
    for folder in (Path(__file__).parent / "policies" / "invalid").glob("definition_*")
    if re.search(r"WA2(0[3-9]|1[013])$", (folder / "expected.txt").read_text(encoding="utf-8"))
)


def test_the_shipped_definition_keeps_every_rule() -> None:
    data = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    assert definition_problems(build_workflow(data)) == []
    assert parse_workflow(data) == load_workflow(SHIPPED)


@pytest.mark.parametrize("folder", RULE_FOLDERS, ids=lambda f: f.name)
def test_the_service_refuses_a_definition_with_the_checkers_messages(folder: Path) -> None:
    text = (folder / "workflow.toml").read_text(encoding="utf-8")
    located = check_definition_text(text, "workflow.toml")[1]
    expected = [re.sub(r" \(first at line \d+\)$", "", p.message) for p in located]
    with pytest.raises(DefinitionError) as refused:
        load_workflow(folder / "workflow.toml")
    assert str(refused.value) == "; ".join(expected)
    assert "\n" not in str(refused.value)


def test_rule_folders_cover_every_rule_code() -> None:
    codes = {
        line.split()[-1]
        for folder in RULE_FOLDERS
        for line in (folder / "expected.txt").read_text(encoding="utf-8").splitlines()
    }
    assert codes == {f"WA2{n:02}" for n in (*range(3, 12), 13)}


def test_problems_name_the_table_and_key_they_concern() -> None:
    data = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    data["roles"][3]["receives_feed"] = True  # mentor, a staff role
    data["areas"][1]["phases"][0]["responsible"] = "janitor"
    found = definition_problems(build_workflow(data))
    assert [(p.table, p.key, p.code) for p in found] == [
        (("areas", 1, "phases", 0), "responsible", "WA208"),
        (("roles", 3), "receives_feed", "WA213"),
        (("roles", 3), "receives_feed", "WA213"),
    ]
    assert found[2].first == (("roles", 2), "receives_feed")


def test_one_audience_receives_the_feed_or_none() -> None:
    data = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    assert parse_workflow(data).feed_role == "external_system"
    del data["roles"][2]["receives_feed"]
    assert parse_workflow(data).feed_role is None
    data["roles"][0]["receives_feed"] = data["roles"][1]["receives_feed"] = True
    refusal = "^role 'parent': only one role receives the feed; 'learner' does$"
    with pytest.raises(DefinitionError, match=refusal):
        parse_workflow(data)
