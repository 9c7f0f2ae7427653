"""Check policy files before they reach the service: model.conf, workflow.toml and policy CSVs.

Pure functions, no Flask and no database: each check takes a file's text and returns Problems,
each with a stable code (CODES, documented in README.md), a 1-based line and column,
and a message saying what is wrong and what to write instead. Reading a file is a check too: a
file that cannot be read, is not UTF-8, holds a NUL byte or is too large is a Problem, never an
exception. casbin is imported here only to parse model.conf exactly as the service will.

One module per concept: codes and problems (what is reported and how it is printed), sources
(bytes to text), model, definition (with structure, workflow_rules and toml_positions), rows
(CSV syntax), policy (rows against the definition, with transition_rules), files (paths to a
CheckResult) and canonical (the text `export` writes and the changes `import` and `diff` print).
"""

from service.checker.canonical import Change, cell_changes, display_order, policy_text
from service.checker.codes import CODES
from service.checker.definition import check_definition_text
from service.checker.files import (
    CheckResult,
    Kind,
    PolicyFiles,
    check_files,
    collect,
    file_kind,
)
from service.checker.model import EFFECT, FIELDS, check_model_text
from service.checker.policy import check_policy_text, policy_problems
from service.checker.problems import FORMATS, Format, Problem, render
from service.checker.rows import (
    ACTION,
    AREA,
    CANONICAL_ROW,
    PHASE,
    ROLE,
    TENANT,
    PolicyLine,
    parse_policy_text,
    row_text,
)
from service.checker.sources import (
    MAX_BYTES,
    decode_source,
    is_blank_or_comment,
    numbered_lines,
    read_source,
)
from service.checker.workflow_rules import ACTION_LISTS, ACTIONS, REOPEN
from service.workflows import Cell, Row

__all__ = [
    "ACTION",
    "ACTIONS",
    "ACTION_LISTS",
    "AREA",
    "CANONICAL_ROW",
    "CODES",
    "EFFECT",
    "FIELDS",
    "FORMATS",
    "MAX_BYTES",
    "PHASE",
    "REOPEN",
    "ROLE",
    "TENANT",
    "Cell",
    "Change",
    "CheckResult",
    "Format",
    "Kind",
    "PolicyFiles",
    "PolicyLine",
    "Problem",
    "Row",
    "cell_changes",
    "check_definition_text",
    "check_files",
    "check_model_text",
    "check_policy_text",
    "collect",
    "decode_source",
    "display_order",
    "file_kind",
    "is_blank_or_comment",
    "numbered_lines",
    "parse_policy_text",
    "policy_problems",
    "policy_text",
    "read_source",
    "render",
    "row_text",
]
