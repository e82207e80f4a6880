"""Running one target: hypothesis cases, then seeded mutations; counting what escaped.

Every case calls the decoder once. An exception in the target's ``allowed`` set is
a refusal (the decoder did its job); any other is *unhandled* and is kept, with the
input that raised it, for the report. A case slower than :data:`SLOW` is noted too:
a decoder that a peer can make spin is a hole of another kind.
"""

from __future__ import annotations

import random
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st

from fuzz.mutate import Mutator, hypothesis_documents, hypothesis_inputs, text_strategy
from fuzz.targets import Target

SLOW = 0.5  # seconds: one case slower than this is reported


@dataclass
class Failure:
    where: str  # exception type and the innermost frame: one line per distinct hole
    message: str
    example: str  # repr of the input, cut short


@dataclass
class Result:
    name: str
    hypothesis_cases: int = 0
    mutation_cases: int = 0
    refused: int = 0
    unhandled: int = 0
    seconds: float = 0.0
    slowest: float = 0.0
    failures: dict[str, Failure] = field(default_factory=dict)

    @property
    def cases(self) -> int:
        return self.hypothesis_cases + self.mutation_cases


def _check(target: Target, value: Any, result: Result) -> None:
    start = time.perf_counter()
    try:
        target.call(value)
    except target.allowed:
        result.refused += 1
    except Exception as exc:  # what the fuzzer is here to find
        result.unhandled += 1
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{type(exc).__name__} at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
        if where not in result.failures:
            result.failures[where] = Failure(where, str(exc)[:200], _shown(value))
    spent = time.perf_counter() - start
    result.slowest = max(result.slowest, spent)


def _shown(value: Any) -> str:
    try:
        return repr(value)[:400]
    except RecursionError:
        return f"a {type(value).__name__} nested too deep to show"


def strategy(target: Target) -> st.SearchStrategy[Any]:
    if target.kind == "object":
        return hypothesis_documents(target.docs)
    if target.kind == "text":
        return text_strategy([d.decode() for d in target.docs], target.words)
    return hypothesis_inputs(target.docs, target.encode)


def run(target: Target, *, hypothesis_cases: int, mutation_cases: int, seed: int) -> Result:
    """Run ``target``: hypothesis draws its cases itself (not derandomized), then a
    ``random.Random(seed)`` mutator makes the bulk."""
    result = Result(target.name)
    start = time.perf_counter()
    if hypothesis_cases:

        @settings(
            max_examples=hypothesis_cases,
            deadline=None,
            database=None,
            derandomize=False,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
        )
        @given(strategy(target))
        def case(value: Any) -> None:
            result.hypothesis_cases += 1
            _check(target, value, result)

        case()
    mutator = Mutator(target.docs, target.encode, random.Random(f"{seed}:{target.name}"))
    make = mutator.document if target.kind == "object" else mutator.case
    for _ in range(mutation_cases):
        _check(target, make(), result)
    result.mutation_cases = mutation_cases
    result.seconds = time.perf_counter() - start
    return result
