"""The architecture's import rules, checked on the source (see DESIGN.md, STYLE.md).

Layers import only downward, and each third-party engine has one home: PyNaCl in
crypto/, plyvel in store/, libp2p in network/, typer/rich/textual in the CLI.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "p2pmarket"

# third-party root module -> the only places (relative to the package) allowed to import it
ENGINES = {
    "nacl": ("crypto/",),
    "plyvel": ("store/",),
    "libp2p": ("network/",),
    "typer": ("cli.py", "tui/"),
    "rich": ("cli.py", "tui/"),
    "textual": ("tui/",),
}
PURE = ("records.py", "text.py", "money.py", "errors.py", "trade.py", "crypto/")
UPPER = ("p2pmarket.node", "p2pmarket.cli", "p2pmarket.store", "p2pmarket.network", "p2pmarket.rpc")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _modules() -> list[tuple[str, set[str]]]:
    return [
        (path.relative_to(PACKAGE).as_posix(), _imports(path))
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_each_engine_is_imported_only_by_its_layer(engine: str) -> None:
    offenders = [
        name
        for name, imports in _modules()
        if any(i == engine or i.startswith(engine + ".") for i in imports)
        and not name.startswith(ENGINES[engine])
    ]
    assert offenders == []


def test_pure_layers_import_no_io_layer() -> None:
    offenders = [
        (name, sorted(i for i in imports if i.startswith(UPPER)))
        for name, imports in _modules()
        if name.startswith(PURE) and any(i.startswith(UPPER) for i in imports)
    ]
    assert offenders == []


def test_store_and_network_do_not_import_each_other() -> None:
    for name, imports in _modules():
        if name.startswith("store/"):
            assert not any(i.startswith("p2pmarket.network") for i in imports), name
        if name.startswith("network/"):
            assert not any(i.startswith("p2pmarket.store") for i in imports), name


def test_offline_search_loads_neither_libp2p_nor_trio_nor_rich_nor_libsodium(
    tmp_path: Path,
) -> None:
    from p2pmarket.node import init_home

    init_home(tmp_path / "home", None)
    probe = (
        "import sys, json\n"
        "from p2pmarket.cli import main\n"
        "try:\n"
        f"    main(['--home', {str(tmp_path / 'home')!r}, 'search', 'sepeda'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules"
        " if m.split('.')[0] in ('libp2p', 'trio', 'rich', 'textual')"
        " or m.startswith('nacl.bindings'))))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "P2PMARKET_PASSPHRASE"}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert json.loads(out.splitlines()[-1]) == []
