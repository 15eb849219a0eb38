"""Image-file datasets: folder trees and list files, presets, the per-file checks, decoding of
every mode, the crops, and the packed image file."""
import dataclasses
import os

import numpy as np
import pytest
import torch
from PIL import Image

from fixtures import make_image_folder, make_image_lists, write_image
from lttools.data import images
from lttools.data.decode import center_box, load_crop, random_resized_box, sample_rng
from lttools.data.loader import ImageFiles
from lttools.data.packed import pack_images, pack_side
from lttools.data.prepare import prepare
from lttools.data.prepared import DataConfig, read_splits, write_splits
from lttools.errors import LTError


def folder_cfg(root, **kw):
    return DataConfig("image_folder", root=str(root), longtail="given", image_size=32, **kw)


def list_cfg(root, lists, **kw):
    """List files named relative to the working directory (they live in data/lists/)."""
    rel = {s: os.path.relpath(p) for s, p in lists.items()}
    return DataConfig("image_list", root=str(root), longtail="given", image_size=32,
                      train_list=rel["train"], val_list=rel.get("val", ""),
                      test_list=rel["test"], **kw)


@pytest.fixture
def in_repo(tmp_path, monkeypatch):
    """List files must live under data/lists/ of the working directory (a DVC dependency)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_folder_layout_classes_sorted_and_validation_carved(tmp_path):
    root = make_image_folder(tmp_path / "imgs", train=(12, 8, 5), test=3)
    splits = prepare(folder_cfg(root, val_per_class=2))
    assert splits.meta["class_names"] == '["c0", "c1", "c2"]'
    assert splits.class_counts.tolist() == [10, 6, 3]
    assert np.bincount(splits.labels["val"]).tolist() == [2, 2, 2]
    assert not set(splits.paths["val"]) & set(splits.paths["train"])
    assert all(p.startswith("train/") for p in splits.paths["val"])  # carved from train
    write_splits(tmp_path / "p.h5", splits)
    back = read_splits(tmp_path / "p.h5")
    assert back.paths["test"].tolist() == splits.paths["test"].tolist()
    assert back.sizes["train"].tolist() == splits.sizes["train"].tolist()


def test_a_given_validation_folder_is_used(tmp_path):
    root = make_image_folder(tmp_path / "imgs", train=(12, 8), test=3, val=4)
    splits = prepare(folder_cfg(root, val_per_class=2))
    assert splits.size("val") == 8 and all(p.startswith("val/") for p in splits.paths["val"])
    assert splits.meta["validation"] == "given"
    assert splits.class_counts.tolist() == [12, 8]


def test_lists_with_the_exponential_profile(in_repo):
    lists = make_image_lists(in_repo / "imgs", in_repo / "data/lists", train=(20, 20, 20), val=2)
    cfg = dataclasses.replace(list_cfg(in_repo / "imgs", lists), longtail="exponential",
                              imb_ratio=4.0, max_per_class=20)
    splits = prepare(cfg)
    assert splits.class_counts.tolist() == [20, 10, 5]
    assert splits.meta["list_sha256"] != "{}"


@pytest.mark.parametrize("damage,needle", [
    ("missing", "does not exist"),
    ("not_an_image", "is unreadable or not an image"),
    ("label", "label 7 of images/train/c0/img0001.jpg is out of range; valid labels: 0..1"),
    ("duplicate", "is listed twice in the train split (also at"),
    ("format", "expected `relative/path label`"),
])
def test_bad_list_entries_name_the_file_and_the_line(in_repo, damage, needle):
    lists = make_image_lists(in_repo / "imgs", in_repo / "data/lists", train=(5, 5), val=None)
    lines = lists["train"].read_text().splitlines()
    if damage == "missing":
        (in_repo / "imgs" / lines[1].split()[0]).unlink()
    elif damage == "not_an_image":
        (in_repo / "imgs" / lines[1].split()[0]).write_bytes(b"this is text, not pixels")
    elif damage == "label":
        lines[1] = lines[1].split()[0] + " 7"
    elif damage == "duplicate":
        lines.append(lines[1])
    else:
        lines[1] = "just-a-path"
    lists["train"].write_text("\n".join(lines) + "\n")
    with pytest.raises(LTError) as err:
        prepare(list_cfg(in_repo / "imgs", lists, num_classes=2))  # the class count is known
    assert needle in str(err.value)
    assert "data/lists/train.txt:2" in str(err.value)


def test_presets_fill_in_the_list_names_and_check_the_known_sizes(in_repo):
    lists_dir = in_repo / "data/lists"
    lists = make_image_lists(in_repo / "imgs", lists_dir, train=(4, 3), val=2)
    for split, name in images.PRESETS["places_lt"].lists.items():
        lists[split].rename(lists_dir / name)
    cfg = DataConfig("image_list", root=str(in_repo / "imgs"), longtail="given",
                     preset="places_lt", lists_dir="data/lists")
    with pytest.raises(LTError) as err:
        prepare(cfg)
    assert ("data.preset = 'places_lt': the list files do not have the known sizes (train: "
            "expected 62,500, found 7; val: expected 7,300, found 4; test: expected 36,500, "
            "found 16)") in str(err.value)
    assert set(images.PRESETS) == {"imagenet_lt", "inat2018", "places_lt"}
    assert images.PRESETS["imagenet_lt"].num_classes == 1000
    assert images.PRESETS["inat2018"].sizes == {"train": 437_513, "test": 24_426}


@pytest.mark.parametrize("params,needle", [
    ({"train_list": "/elsewhere/train.txt", "test_list": "data/lists/t.txt"},
     "lies outside data/lists/"),
    ({"lists_dir": "lists"}, "data.lists_dir = 'lists' lies outside data/lists/"),
    ({"longtail": "flat"}, "data.longtail = 'flat' is not valid"),
    ({"many_above": 10, "few_below": 20}, "data.many_above = 10 is out of range"),
    ({"longtail": "exponential"}, "needs data.imb_ratio and data.max_per_class"),
])
def test_bad_image_params(params, needle):
    cfg = DataConfig("image_list", **{"longtail": "given", **params})
    with pytest.raises(LTError) as err:
        cfg.validate()
    assert needle in str(err.value)


def test_a_class_folder_missing_from_train_is_an_error(tmp_path):
    root = make_image_folder(tmp_path / "imgs", train=(4, 3), test=2)
    write_image(root / "test" / "zebra" / "img0000", 0, 0, "RGB", (20, 20))
    with pytest.raises(LTError, match="zebra is a class the training folder does not have"):
        prepare(folder_cfg(root))


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "CMYK"])
def test_every_mode_decodes_to_rgb_uint8(tmp_path, mode):
    write_image(tmp_path / "x", 2, 1, mode, (40, 30))
    path = next(tmp_path.iterdir())
    for train in (True, False):
        out = load_crop(path, 24, train, sample_rng(0, 0, 1))
        assert out.shape == (3, 24, 24) and out.dtype == np.uint8


def test_eval_crop_is_the_reference_resize_then_centre_crop(tmp_path):
    """Resize the shorter side to S * 256/224, centre-crop S: for a 448 x 256 image at S = 224
    the kept region is the centre 224 x 224 of the original (no scaling)."""
    img = Image.fromarray(np.random.RandomState(0).randint(0, 256, (256, 448, 3), np.uint8))
    img.save(tmp_path / "x.png")
    assert center_box(448, 256, 224) == pytest.approx((112, 16, 336, 240))
    out = load_crop(tmp_path / "x.png", 224, False, None)
    np.testing.assert_array_equal(out, np.asarray(img)[16:240, 112:336].transpose(2, 0, 1))
    flipped = load_crop(tmp_path / "x.png", 224, False, None, flip=True)
    np.testing.assert_array_equal(flipped, out[:, :, ::-1])


def test_random_resized_crop_follows_torchvision_rule():
    rng = np.random.default_rng(0)
    areas, ratios = [], []
    for _ in range(2000):
        left, top, right, bottom = random_resized_box(500, 375, rng)
        assert 0 <= left < right <= 500 and 0 <= top < bottom <= 375
        areas.append((right - left) * (bottom - top) / (500 * 375))
        ratios.append((right - left) / (bottom - top))
    assert 0.07 < min(areas) and max(areas) <= 1.0 and 0.3 < np.mean(areas) < 0.7
    assert min(ratios) > 0.74 and max(ratios) < 1.35
    # a tall image falls back to a centre crop at the nearest allowed ratio when tries fail
    assert random_resized_box(10, 1000, np.random.default_rng(1))[2] - \
        random_resized_box(10, 1000, np.random.default_rng(1))[0] <= 10


def test_reduced_size_decoding_matches_full_decoding(tmp_path):
    """A large JPEG decoded at a reduced scale gives (nearly) the crop torchvision's eval
    transform makes from the full decode."""
    from torchvision import transforms as T

    big = np.kron(np.random.RandomState(3).randint(0, 256, (60, 80, 3)), np.ones((16, 16, 1)))
    Image.fromarray(big.astype(np.uint8)).save(tmp_path / "big.jpg", quality=95)
    reduced = load_crop(tmp_path / "big.jpg", 64, False, None).astype(int)
    np.testing.assert_array_equal(reduced, load_crop(str(tmp_path / "big.jpg"), 64, False, None))
    with Image.open(tmp_path / "big.jpg") as img:  # no draft: torchvision on the full decode
        plain = np.asarray(T.Compose([T.Resize(73), T.CenterCrop(64)])(img.convert("RGB")))
    assert np.abs(reduced - plain.transpose(2, 0, 1).astype(int)).mean() < 6  # 1/8-scale DCT


def test_crops_match_torchvision_pil_transforms_within_rounding(tmp_path):
    """Same boxes as torchvision's PIL path (RandomResizedCrop's resized_crop; Resize +
    CenterCrop), resized by torch's uint8 kernel instead of PIL's: equal up to rounding."""
    from torchvision.transforms import functional as TF

    pixels = np.random.RandomState(4).randint(0, 256, (375, 500, 3)).astype(np.uint8)
    pixels = np.asarray(Image.fromarray(pixels).resize((125, 94)).resize((500, 375)))  # smooth
    Image.fromarray(pixels).save(tmp_path / "x.png")
    img = Image.fromarray(pixels)
    for key in range(5):
        rng = sample_rng(0, 0, key)
        left, top, right, bottom = random_resized_box(500, 375, rng)
        flip = rng.random() < 0.5
        ref = TF.resized_crop(img, top, left, bottom - top, right - left, [96, 96],
                              TF.InterpolationMode.BILINEAR, antialias=True)
        ref = np.asarray(TF.hflip(ref) if flip else ref).transpose(2, 0, 1).astype(int)
        ours = load_crop(tmp_path / "x.png", 96, True, sample_rng(0, 0, key)).astype(int)
        assert np.abs(ours - ref).max() <= 2 and np.abs(ours - ref).mean() < 0.5
    ref = np.asarray(TF.center_crop(TF.resize(img, 110, antialias=True), 96)).transpose(2, 0, 1)
    ours = load_crop(tmp_path / "x.png", 96, False, None)
    assert np.abs(ours.astype(int) - ref).max() <= 2


def test_crops_depend_only_on_the_samples_key(tmp_path):
    root = make_image_folder(tmp_path / "imgs", train=(6, 4), test=2)
    splits = prepare(folder_cfg(root))
    files = ImageFiles(splits, "train", train=True, seed=7)
    a, b = files[(3, 5)][0], files[(3, 5)][0]
    assert torch.equal(a, b) and not torch.equal(a, files[(4, 5)][0])


def test_packed_images_are_read_back(tmp_path):
    root = make_image_folder(tmp_path / "imgs", train=(6, 4), test=2)
    splits = prepare(folder_cfg(root))
    pack_images(splits, tmp_path / "images.h5", workers=2)
    splits.packed = tmp_path / "images.h5"
    files = ImageFiles(splits, "test", train=False)
    x, y = files[3]
    assert x.shape == (3, 32, 32) and int(y) == splits.labels["test"][3]
    assert pack_side(224) == 256
    direct = ImageFiles(prepare(folder_cfg(root)), "test", train=False)[3][0]
    assert (x.float() - direct.float()).abs().mean() < 12  # re-encoded JPEG, same picture


def test_a_file_damaged_after_preparation_is_named(tmp_path):
    root = make_image_folder(tmp_path / "imgs", train=(6, 4), test=2)
    splits = prepare(folder_cfg(root))
    (root / splits.paths["train"][2]).write_bytes(b"\xff\xd8 broken")
    with pytest.raises(LTError, match="train/c0/img0002.* cannot be decoded"):
        ImageFiles(splits, "train", train=True)[(0, 2)]


def test_a_worker_error_reaches_the_user_as_its_message(tmp_path, capsys):
    """A damaged image found inside a DataLoader worker: the stage prints the message, not the
    worker's traceback."""
    from lttools.backbone.evaluate import eval_batches
    from lttools.stage_cli import run

    root = make_image_folder(tmp_path / "imgs", train=(6, 4), test=2)
    splits = prepare(folder_cfg(root))
    (root / splits.paths["test"][1]).write_bytes(b"\xff\xd8 broken")
    with pytest.raises(SystemExit) as exit_:
        run(lambda: list(eval_batches(splits, "test", batch_size=2, workers=1)))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and "cannot be decoded" in err
    assert "Traceback" not in err


def test_gpu_decoding_path_gives_the_cpu_crops(tmp_path):
    """The GPU-decoding path's code run on the CPU (torchvision's decoder there): JPEG crops as
    the PIL path makes them, up to resampling; a PNG decoded by the worker passes through."""
    from lttools.data.gpu_decode import EncodedImageFiles, collate, decode_batch

    root = make_image_folder(tmp_path / "imgs", train=(10, 6), test=2)
    splits = prepare(folder_cfg(root))
    keys = [(3, i) for i in range(8)]
    encoded = EncodedImageFiles(splits, "train", train=True, seed=5)
    payloads, boxes, flips, labels = collate([encoded[k] for k in keys])
    assert (boxes[:, 0] < 0).any() and (boxes[:, 0] >= 0).any()  # PNGs and JPEGs both
    gpu_way = decode_batch(payloads, boxes, flips, 32, torch.device("cpu")).float()
    cpu_way = torch.stack([ImageFiles(splits, "train", train=True, seed=5)[k][0]
                           for k in keys]).float()
    assert (gpu_way - cpu_way).abs().mean() < 4  # the same crops and flips
    assert torch.equal(labels, torch.tensor([int(splits.labels["train"][i]) for _, i in keys]))


def test_gpu_decoding_is_refused_without_cuda(tmp_path):
    from lttools.backbone.config import BackboneConfig
    from lttools.backbone.train import train_backbone

    root = make_image_folder(tmp_path / "imgs", train=(6, 4), test=2)
    with pytest.raises(LTError, match="gpu_decode = true needs CUDA"):
        train_backbone(prepare(folder_cfg(root)), BackboneConfig(epochs=1, arch="resnet18",
                                                                 gpu_decode=True), "cpu", quiet=True)
