"""Cold start: how long `p2pmarket search` takes as a fresh process.

Most of a one-shot CLI command is interpreter start-up and imports, so the
baselines are what any program built on the same engines must pay: importing
plyvel, PyNaCl and msgpack, and importing typer alone. The commands run
round-robin, so drift in machine load hits each of them alike; the first round is
a discarded warm-up (it fills the OS cache with .pyc files).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

from bench.config import Sizes
from bench.data import dataset
from bench.results import Row, Section, verdict
from bench.stats import median, ms
from bench.stores import our_home

TARGET: Final = 0.350
TARGET_RATIO: Final = 2.0
FORBIDDEN: Final = ("libp2p", "trio", "rich", "nacl.bindings")

_PROBE: Final = """
import json, sys
from p2pmarket.cli import main
try:
    main(["--home", sys.argv[1], "search", "x"])
except SystemExit:
    pass
roots = sys.argv[2:]
print(json.dumps(sorted(m for m in sys.modules
                        if any(m == r or m.startswith(r + ".") for r in roots))))
"""


def _env() -> dict[str, str]:
    """The user's environment minus anything that would point the CLI elsewhere."""
    return {
        k: v for k, v in os.environ.items() if k not in ("P2PMARKET_PASSPHRASE", "P2PMARKET_HOME")
    }


def _time_once(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(), check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{argv} failed: {done.stderr.decode(errors='replace')}")
    return elapsed


def loaded_forbidden(home: Path) -> list[str]:
    """Which of :data:`FORBIDDEN` a CLI search leaves in ``sys.modules``."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(home), *FORBIDDEN],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    ).stdout
    found: list[str] = json.loads(out.splitlines()[-1])
    return found


def run(sizes: Sizes, data_dir: Path) -> Section:
    ds = dataset(min(sizes.search), sizes.seed, data_dir)
    home = our_home(ds, data_dir).path
    cli = Path(sys.executable).with_name("p2pmarket")
    if not cli.exists():
        raise RuntimeError(f"{cli} is missing: install the project (`make`) first")
    commands = {
        "search": [str(cli), "--home", str(home), "search", "sepeda"],
        "engines": [sys.executable, "-c", "import plyvel, nacl, msgpack"],
        "typer": [sys.executable, "-c", "import typer"],
        "python": [sys.executable, "-c", "pass"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(sizes.coldstart_runs + 1):
        for name, argv in commands.items():
            elapsed = _time_once(argv)
            if round_:
                times[name].append(elapsed)
    search, engines, typer_, python = (median(times[n]) for n in commands)
    ratio = search / engines
    section = Section(f"Cold start (median of {sizes.coldstart_runs} runs)")
    section.rows.append(
        Row(
            f"`p2pmarket --home H search sepeda` ({ds.count:,} listings)",
            f"{ms(search)} ({ratio:.1f}x baseline, {search / typer_:.1f}x `import typer`)",
            f"`python -c 'import plyvel, nacl, msgpack'`: {ms(engines)};"
            f" `import typer`: {ms(typer_)}",
            f"≤ {ms(TARGET)} and ≤ {TARGET_RATIO:.0f}x baseline",
            verdict(search <= TARGET and ratio <= TARGET_RATIO),
        )
    )
    forbidden = loaded_forbidden(home)
    section.rows.append(
        Row(
            "modules loaded by a CLI search",
            ", ".join(forbidden) if forbidden else "none of them",
            "—",
            f"none of {', '.join(FORBIDDEN)}",
            verdict(not forbidden),
        )
    )
    section.details.append(
        f"Bare interpreter (`python -c pass`): {ms(python)}. Above that, the search"
        f" command costs {ms(search - python)}, the engines {ms(engines - python)}"
        f" and typer alone {ms(typer_ - python)}."
    )
    return section
