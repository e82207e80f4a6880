"""``python -m bench``: the command line of the benchmark suite."""

from __future__ import annotations

import argparse

from bench.runner import BENCHMARKS, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure p2pmarket against same-run baselines. A full run of every"
        " benchmark rewrites BENCHMARKS.md.",
    )
    parser.add_argument("only", nargs="?", choices=sorted(BENCHMARKS), help="run one benchmark")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes (< 1 minute); BENCHMARKS.md untouched"
    )
    args = parser.parse_args(argv)
    run(quick=args.quick, only=args.only)
    return 0


# Guarded: the spawn start method re-imports this module in every worker.
if __name__ == "__main__":
    raise SystemExit(main())
