"""The short fuzzing pass that every test run makes: each decoder of outside bytes
gets 40 hypothesis examples and 1,000 seeded mutations, and must refuse every bad
one with our own error. ``make fuzz`` runs the long pass (100,000 per decoder)."""

from __future__ import annotations

import pytest

from fuzz.runner import run
from fuzz.targets import Target, all_targets

TARGETS = all_targets()


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_a_decoder_refuses_every_mutated_input_with_our_own_error(target: Target) -> None:
    result = run(target, hypothesis_cases=40, mutation_cases=1_000, seed=13)
    holes = "\n".join(
        f"{f.where}: {f.message}\n  input: {f.example}" for f in result.failures.values()
    )
    assert result.unhandled == 0, holes
    assert result.cases == 1_040


def test_every_decoder_is_fuzzed() -> None:
    """A new decoder of outside bytes needs a target in fuzz/targets.py."""
    names = {t.name for t in TARGETS}
    assert len(names) == len(TARGETS) >= 23
    assert {"trade.unpack_move", "envelope.letter", "sync_wire.frames", "rpc.request"} <= names
