import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fixtures import make_fashion_mnist  # noqa: E402


@pytest.fixture
def fashion_root(tmp_path):
    return make_fashion_mnist(tmp_path / "fmnist")
