"""Budgets for the generated fuzz suites (hypothesis): fixed seeds, a CI size and a slow size.

A fuzz test takes `examples` from `fuzz_budgets(ci, slow)` and hands its property to
`run_fuzz`. The CI suite runs the small budget; `-m slow` runs the ten-times one. Runs
are derandomized (the same cases every time, as every random test here) and keep no
example database, so CI and a developer see the same cases.
"""
import pytest
from hypothesis import HealthCheck, given, settings


def fuzz_budgets(ci: int, slow: int | None = None):
    """pytest params for a fuzz test's number of cases: `ci` in CI, `slow` (10x) under -m slow."""
    slow = slow or 10 * ci
    return [pytest.param(ci, id=f"ci{ci}"), pytest.param(slow, id=f"slow{slow}", marks=pytest.mark.slow)]


def run_fuzz(examples: int, strategy, check):
    """Run check(case) on `examples` cases drawn from `strategy`; any exception fails the test."""
    test = settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))(given(strategy)(check))
    test()
