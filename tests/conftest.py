"""Make the helper modules in tests/ importable as plain modules, and schedule tests for
pytest-xdist (``make test`` runs two workers)."""

import sys
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

SLURM_SCOPE = "slurm"
# modules that start the session's SLURM cluster (one per machine: its daemons, its munge)
SLURM_MODULES = frozenset(
    p.relative_to(TESTS.parent).as_posix()
    for p in TESTS.rglob("test_*.py")
    if 'pytest_plugins = ["slurm_cluster"]' in p.read_text(encoding="utf-8")
)
# The longest scopes start first and side by side: each worker takes two scopes at the start
# (the SLURM tests and test_pipeline on one, test_gpu_check on the other), then the rest as
# they free up.
FIRST = (SLURM_SCOPE, "tests/tools/test_gpu_check.py", "tests/integration/test_pipeline.py")


def _scope(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    return SLURM_SCOPE if module in SLURM_MODULES else module


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # a stable order, the same on every worker (xdist checks that they collected alike)
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(_scope(item.nodeid), len(FIRST)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Whole modules per worker, so a module-scoped fixture (test_pipeline's pipeline run) is
    built once, and every SLURM module on the same worker. (xdist's own ``loadgroup`` marks do
    not take effect with pytest 9.2, whose node ids xdist can no longer rewrite.)"""
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # keep FIRST's order, not "most tests first"

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _scope(nodeid)

    return ModuleScheduling(config, log)
