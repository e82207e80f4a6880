"""The README's Python examples are part of the specification: they must run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_library_examples() -> None:
    assert len(EXAMPLES) >= 2


def test_readme_examples_run_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for source in EXAMPLES:
        exec(compile(source, str(README), "exec"), {"__name__": "__readme__"})
    assert (tmp_path / "demo-home" / "identity.key").exists()
