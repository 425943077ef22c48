"""The tests of tests/test_slurm.py with `--executor local` (submitit's LocalExecutor: a process on this machine).
A file of its own so that pytest-xdist (--dist loadfile) runs it beside the SLURM ones."""
import pytest

from test_slurm import *  # noqa: F401,F403  (the tests; their `executor` fixture is replaced below)

del test_shipped_demo_pipelines_match_demo_plan  # noqa: F821  (no executor: collected once, in test_slurm.py)
pytestmark = pytest.mark.e2e


@pytest.fixture
def executor():
    return "local"
