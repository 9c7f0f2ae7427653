"""Where the tables and keys of a TOML text are, since tomllib reports no positions."""

from __future__ import annotations

import re

from service.checker.sources import numbered_lines
from service.workflows import TablePath

ARRAY_HEADER = re.compile(r"\s*\[\[\s*([\w.]+)\s*\]\]")
TABLE_HEADER = re.compile(r"\s*\[\s*([\w.]+)\s*\]")
KEY_LINE = re.compile(r"\s*([\w-]+)\s*=\s*")


class TomlPositions:
    """Line and column of the tables and keys of a TOML text, found by scanning its lines.

    A table is found by counting its [[...]] headers in order (the third [[areas.phases]] after
    the second [[areas]] is ("areas", 1, "phases", 2)).
    """

    def __init__(self, text: str) -> None:
        self.tables: dict[TablePath, int] = {(): 1}
        self.keys: dict[tuple[TablePath, str], tuple[int, int]] = {}
        self._last: dict[str, TablePath] = {}
        self._counts: dict[tuple[TablePath, str], int] = {}
        current: TablePath = ()
        for number, line in numbered_lines(text):
            if header := ARRAY_HEADER.match(line):
                current = self._enter(header[1], number)
                self.tables.setdefault(current, number)
            elif header := TABLE_HEADER.match(line):
                current = ("[table]", header[1])
                self.keys.setdefault(((), header[1].split(".")[0]), (number, 1))
            elif key := KEY_LINE.match(line):
                self.keys.setdefault((current, key[1]), (number, key.end() + 1))

    def _enter(self, name: str, number: int) -> TablePath:
        """The path of the next table of array `name` (e.g. areas.phases under the last area)."""
        head, _, leaf = name.rpartition(".")
        parent = self._last.get(head, ()) if head else ()
        self.keys.setdefault((parent, leaf), (number, 1))
        index = self._counts.get((parent, leaf), 0)
        self._counts[(parent, leaf)] = index + 1
        self._last[name] = (*parent, leaf, index)
        return self._last[name]

    def at(self, table: TablePath, key: str | None = None) -> tuple[int, int]:
        """Position of a table's key, else of its header, else of the parent key holding it."""
        if key is not None and (table, key) in self.keys:
            return self.keys[(table, key)]
        if table in self.tables:
            return (self.tables[table], 1)
        return self.at(table[:-2], str(table[-2])) if len(table) >= 2 else (1, 1)
