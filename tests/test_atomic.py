import hashlib

import pytest
import torch

from lttools.atomic import atomic_path, save_torch, write_json


def test_same_tensors_give_the_same_bytes(tmp_path):
    state = {"w": torch.arange(6.0).view(2, 3)}
    save_torch(tmp_path / "a.pt", state)
    save_torch(tmp_path / "a2" / "a.pt", state)
    digests = {hashlib.sha256(p.read_bytes()).hexdigest()
               for p in (tmp_path / "a.pt", tmp_path / "a2" / "a.pt")}
    assert len(digests) == 1
    assert torch.equal(torch.load(tmp_path / "a.pt", weights_only=True)["w"], state["w"])


def test_failure_leaves_neither_target_nor_temporary(tmp_path):
    write_json(tmp_path / "m.json", {"old": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "m.json") as tmp:
            tmp.write_text('{"half": ')
            raise RuntimeError("crash mid-write")
    assert (tmp_path / "m.json").read_text().strip().startswith('{\n  "old": 1')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]
