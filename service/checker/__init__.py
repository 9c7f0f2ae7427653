"""Check policy files before they reach the service: model.conf, workflow.toml and policy CSVs.

Pure functions, no Flask and no database: each check takes a file's text and returns Problems,
each with a stable code (CODES, documented in README.md), a 1-based line and column,
and a message saying what is wrong and what to write instead. Reading a file is a check too: a
file that cannot be read, is not UTF-8, holds a NUL byte or is too large is a Problem, never an
exception. model.conf's rules are the seam's (service/policies/model.py): the checker reports them.

One module per concept: codes and problems (what is reported and how it is printed), sources
(bytes to text), definition (with structure and toml_positions; the definition's rules are
service.workflows'), rows (CSV syntax), policy (rows against the definition, with findings, which
locates the policy rules of service.policy_rules at the rows), files (paths to a CheckResult) and
canonical (the text `export` writes and the lines `import` and `diff` print).
"""
