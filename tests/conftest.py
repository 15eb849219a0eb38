import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# stage scripts run in-process (runpy) find their stages/_this_repo.py as `python stages/x.py` would
sys.path.append(str(Path(__file__).parents[1] / "stages"))

from fixtures import make_fashion_mnist  # noqa: E402


@pytest.fixture
def fashion_root(tmp_path):
    return make_fashion_mnist(tmp_path / "fmnist")


@pytest.fixture
def dvc_dir(tmp_path):
    """tmp_path as a DVC repository without git: where stage scripts may run."""
    from dvc.repo import Repo

    Repo.init(tmp_path, no_scm=True).close()
    return tmp_path
