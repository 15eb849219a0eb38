"""Each stage script runs the `lttools` of the repository it lies in, also when another
clone's `lttools` is importable first (a virtual environment shared by two clones holds an
editable install of one of them)."""
import os
import shutil
import subprocess
import sys

import pytest

from pipeline_helpers import ROOT

SCRIPTS = sorted(p.name for p in (ROOT / "stages").glob("[a-z]*.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_stage_script_imports_its_own_repository(script, tmp_path):
    clone = tmp_path / "clone"
    for folder in ("stages", "lttools"):
        shutil.copytree(ROOT / folder, clone / folder, ignore=shutil.ignore_patterns("__pycache__"))
    with open(clone / "lttools" / "__init__.py", "a") as f:
        f.write('\nraise SystemExit("the lttools of the clone")\n')
    # this checkout's lttools importable first, as the other clone's editable install would be
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, str(clone / "stages" / script), "--help"], cwd=clone,
                         env=env, capture_output=True, text=True)
    assert "the lttools of the clone" in out.stderr, (out.returncode, out.stdout[:300])
