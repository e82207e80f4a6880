"""``python -m fuzz`` (``make fuzz``): fuzz every decoder of outside bytes, print a table.

Exits 1 if any decoder let an exception other than its allowed ones escape, and
prints each distinct hole (exception, where, the input) under the table. A run is
reproducible from its printed seed: ``python -m fuzz --seed N``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from fuzz.runner import SLOW, Result, run
from fuzz.targets import all_targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    parser.add_argument("--cases", type=int, default=100_000, help="seeded mutations per decoder")
    parser.add_argument(
        "--hypothesis", type=int, default=3_000, help="hypothesis examples per decoder"
    )
    parser.add_argument("--seed", type=int, default=None, help="the mutations' seed")
    parser.add_argument("--only", default="", help="decoders whose name contains this")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    targets = [t for t in all_targets() if args.only in t.name]
    print(f"fuzzing {len(targets)} decoders: {args.hypothesis:,} hypothesis examples and "
          f"{args.cases:,} seeded mutations each (seed {seed})", flush=True)  # fmt: skip
    header = f"{'decoder':<28} {'cases':>9} {'hypothesis':>10} {'refused':>9} "
    header += f"{'unhandled':>9} {'time s':>7} {'slowest ms':>10}"
    print(header)
    print("-" * len(header), flush=True)
    results: list[Result] = []
    start = time.perf_counter()
    for target in targets:
        result = run(target, hypothesis_cases=args.hypothesis, mutation_cases=args.cases, seed=seed)
        results.append(result)
        print(
            f"{result.name:<28} {result.cases:>9,} {result.hypothesis_cases:>10,} "
            f"{result.refused:>9,} {result.unhandled:>9,} {result.seconds:>7.1f} "
            f"{result.slowest * 1000:>10.1f}",
            flush=True,
        )
    total = sum(r.cases for r in results)
    unhandled = sum(r.unhandled for r in results)
    print("-" * len(header))
    print(f"{'all':<28} {total:>9,} {'':>10} {'':>9} {unhandled:>9,} "
          f"{time.perf_counter() - start:>7.1f}")  # fmt: skip
    for result in results:
        for failure in result.failures.values():
            print(
                f"\n{result.name}: {failure.where}: {failure.message}\n  input: {failure.example}"
            )
    slow = [r.name for r in results if r.slowest > SLOW]
    if slow:
        print(f"\ncases slower than {SLOW} s: {', '.join(slow)}")
    return 1 if unhandled else 0


if __name__ == "__main__":
    sys.exit(main())
