"""The wheel (pyproject.toml's [tool.setuptools]): it holds every package, the templates, the
stylesheet and the migrations, and building it warns about no package left out or kept as data."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_code_templates_and_static_files_and_builds_without_warnings(
    tmp_path: Path,
) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    log = build.stdout + build.stderr
    assert "would be ignored" not in log and "is absent from the `packages`" not in log
    [wheel] = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "service").rglob("*")
        if p.suffix in {".py", ".html", ".css", ".mako"} and "__pycache__" not in p.parts
    }
    assert sources - names == set()
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]
