"""Your own images, end to end with `dvc repro`: a torchvision backbone at a small image size
on a folder tree (validation carved from train) and on list files (packed images); images of
mixed sizes and modes (RGB, grayscale, RGBA, palette, CMYK)."""
import json

import pytest

from fixtures import make_image_folder, make_image_lists
from lttools.features.store import open_store
from pipeline_helpers import check_metric_values, doc_recipe, dvc, make_repo, run_lines

pytestmark = pytest.mark.slow
# One epoch of four batches leaves BatchNorm's running statistics far from the weights' scale:
# at lr 0.05 the eval-mode features reach 1e19 and a re-trained head diverges; at 1e-3 they
# stay near 10.
FAST_BACKBONE = {"arch": "resnet18", "epochs": 1, "batch_size": 16, "lr": 1e-3, "workers": 2}
FEATURES = {"views": 1, "workers": 2, "batch_size": 32}


@pytest.mark.parametrize("layout", ["image_folder", "image_list"])
def test_repro_on_image_files(tmp_path, layout):
    repo = tmp_path / "repo"
    if layout == "image_folder":
        make_image_folder(repo / "data/images", train=(30, 15, 8, 5), test=6)
        data = {"dataset": "image_folder", "root": "data/images", "longtail": "given",
                "val_per_class": 2, "image_size": 32}
    else:
        make_image_lists(repo / "data/images", repo / "data/lists", train=(30, 30, 30, 30),
                         test=6, val=3)
        data = {"dataset": "image_list", "root": "data/images", "longtail": "exponential",
                "imb_ratio": 10, "max_per_class": 30, "train_list": "data/lists/train.txt",
                "val_list": "data/lists/val.txt", "test_list": "data/lists/test.txt",
                "image_size": 32, "pack": True}
    make_repo(repo, {"data": data, "backbone": FAST_BACKBONE, "features": FEATURES},
              methods=["ce", "los", "crt"])
    out = dvc(repo, "repro")
    assert "manifest sha256" in out
    for key in ("ce", "los", "crt"):
        check_metric_values(key, json.loads((repo / f"metrics/methods/{key}.json").read_text()))
    store = open_store(repo / "data/features/0/features.h5")
    assert store.feature_dim == 512 and store.attrs["arch"] == "resnet18"
    if layout == "image_folder":
        assert json.loads(store.attrs["class_names"]) == ["c0", "c1", "c2", "c3"]
        per_class = json.loads((repo / "metrics/plots/per_class/ce.json").read_text())
        assert [row["name"] for row in per_class] == ["c0", "c1", "c2", "c3"]
        assert store.class_counts.tolist() == [28, 13, 6, 3]  # 2 per class kept for validation
    else:
        assert (repo / "data/prepared/images.h5").exists()
        assert store.class_counts.tolist() == [30, 13, 6, 3]  # int(30 * 0.1 ** (c / 3))
        assert len(store.labels["val"]) == 12  # the given validation list
    assert json.loads(dvc(repo, "status", "--json")) == {}
    if layout == "image_folder":
        images_edited_in_place(repo)


def images_edited_in_place(repo):
    """docs/own-data.md: DVC does not hash the images, so an image edited in place needs the
    page's line, as written: it re-runs the later stages when the manifest changed, and only
    prepare_data when nothing did."""
    line = doc_recipe("own-data.md", "images changed")
    ran = lambda out: [s for s in ("prepare_data", "train_backbone@0", "extract_features@0")  # noqa: E731
                       if f"Running stage '{s}'" in out]
    assert ran(run_lines(repo, line)[0].stdout) == ["prepare_data"]  # nothing changed
    image = next((repo / "data/images/train/c0").iterdir())
    from PIL import Image

    Image.new("RGB", (20, 12), (255, 0, 0)).save(image, format=Image.open(image).format)
    assert ran(run_lines(repo, line)[0].stdout) == ["prepare_data", "train_backbone@0",
                                                     "extract_features@0"]
    assert json.loads(dvc(repo, "status", "--json")) == {}
