"""Imported first by every stage script: the `lttools` of the repository the script lies in
comes first on sys.path. A virtual environment shared by two clones holds an editable install
of one of them; without this, the other clone's stages would run that clone's code."""
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if sys.path[:1] != [ROOT]:
    sys.path.insert(0, ROOT)
