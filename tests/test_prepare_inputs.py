"""Images and list files as users have them: each bad one ends in `error: ...` naming the file
(and its list line), exit code 2 and nothing written, through the prepare_data stage itself;
each odd but valid one gives the right data."""
import os
import runpy
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from fixtures import make_image_folder, make_image_lists, write_image
from lttools.data.decode import load_crop
from lttools.data.prepare import prepare
from lttools.data.prepared import DataConfig

ROOT = Path(__file__).resolve().parents[1]
OUT = Path("data/prepared/dataset.h5")


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A working directory with data/lists/ (list files must live there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def lists_data(repo, **kw):
    """Images under imgs/images/{train,val,test}/c<k>/ and their list files; the data params."""
    lists = make_image_lists(repo / "imgs", repo / "data/lists", train=(5, 4), test=2, val=2)
    params = {"dataset": "image_list", "root": "imgs", "longtail": "given", "image_size": 16,
              "num_classes": 2, **{f"{s}_list": f"data/lists/{s}.txt" for s in lists}, **kw}
    return lists, params


def folder_params(**kw):
    return {"dataset": "image_folder", "root": "imgs", "longtail": "given", "image_size": 16,
            "val_per_class": 1, **kw}


def run_stage(repo, data: dict, capsys) -> tuple[int, str]:
    """prepare_data as `dvc repro` runs it: exit code and stderr."""
    (repo / "params.yaml").write_text(yaml.safe_dump({"data": data}))
    argv = ["prepare_data.py", "--quiet", "--out", str(OUT)]
    old, os.sys.argv = os.sys.argv, argv
    try:
        with pytest.raises(SystemExit) as exit_:
            runpy.run_path(str(ROOT / "stages/prepare_data.py"), run_name="__main__")
    finally:
        os.sys.argv = old
    return exit_.value.code, capsys.readouterr().err


def refused(repo, data, capsys, *needles: str) -> str:
    code, err = run_stage(repo, data, capsys)
    assert code == 2, err
    assert err.startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    written = list((repo / OUT.parent).iterdir()) if (repo / OUT.parent).exists() else []
    assert written == [], written  # nothing, not even a temporary file
    return err


def rewrite_line(path: Path, number: int, new: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = new
    path.write_text("\n".join(lines) + "\n")


def first_path(path: Path, number: int = 1) -> str:
    return path.read_text().splitlines()[number - 1].rsplit(None, 1)[0]


def png_header_only(path: Path, width: int, height: int) -> None:
    """A valid 1 x 1 PNG whose header claims width x height (a decompression bomb's header)."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes of fields
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))


# -- refused, each with its message -----------------------------------------------------------

@pytest.mark.parametrize("side", [20_000, 12_000])  # over PIL's 2x limit (it raises) / 1x (warns)
def test_an_image_over_the_pixel_limit(repo, capsys, side):
    lists, data = lists_data(repo)
    png_header_only(repo / "imgs" / "big.png", side, side)
    rewrite_line(lists["train"], 2, "big.png 0")
    refused(repo, data, capsys, "data/lists/train.txt:2", "big.png",
            f"{side:,} x {side:,} = {side * side:,} pixels, over data.max_image_pixels = "
            "89,478,485", "raise data.max_image_pixels")


def test_the_pixel_limit_is_a_param(repo, capsys):
    lists, data = lists_data(repo, max_image_pixels=100)
    refused(repo, data, capsys, "data/lists/train.txt:1", "over data.max_image_pixels = 100")


@pytest.mark.parametrize("label", ["--1", "²", "1.0", "0x1"])
def test_a_label_that_is_not_an_integer(repo, capsys, label):
    lists, data = lists_data(repo)
    rewrite_line(lists["train"], 3, f"{first_path(lists['train'], 3)} {label}")
    refused(repo, data, capsys, "data/lists/train.txt:3", "expected `relative/path label`",
            repr(f"{first_path(lists['train'], 3)} {label}"))


def test_a_list_file_that_is_not_utf8(repo, capsys):
    lists, data = lists_data(repo)
    text = lists["test"].read_text().splitlines()
    text[1] = "images/test/c0/caf\xe9.jpg 0"
    lists["test"].write_bytes("\n".join(text).encode("latin-1"))
    refused(repo, data, capsys, "data/lists/test.txt:2: the line is not UTF-8",
            "save the list file as UTF-8")


def test_a_file_name_that_is_not_utf8(repo, capsys):
    make_image_folder(repo / "imgs", train=(3, 3), test=2)
    good = next((repo / "imgs/train/c1").iterdir())
    os.rename(good, os.path.join(os.fsencode(repo / "imgs/train/c1"), b"bad\xff.png"))
    refused(repo, folder_params(), capsys, "bad\\xff.png", "the file name is not valid UTF-8",
            "rename it")


def test_a_truncated_jpeg(repo, capsys):
    lists, data = lists_data(repo)
    write_image(repo / "imgs/trunc", 0, 0, "RGB", (300, 200))
    blob = (repo / "imgs/trunc.jpg").read_bytes()
    (repo / "imgs/trunc.jpg").write_bytes(blob[:len(blob) // 2])
    rewrite_line(lists["train"], 1, "trunc.jpg 0")
    refused(repo, data, capsys, "data/lists/train.txt:1", "trunc.jpg",
            "is unreadable or not an image", "truncated")


def test_the_same_image_in_train_and_test(repo, capsys):
    lists, data = lists_data(repo)
    leak = first_path(lists["train"], 2)
    rewrite_line(lists["test"], 1, f"{leak} 0")
    refused(repo, data, capsys, "data/lists/test.txt:1", f"{leak} is in the test split and also "
            "in the train split (at data/lists/train.txt:2)", "leaks the evaluation")


def test_the_same_image_in_train_and_val_written_differently(repo, capsys):
    lists, data = lists_data(repo)
    leak = first_path(lists["train"], 1)  # images/train/c0/img0000.jpg
    rewrite_line(lists["val"], 2, leak.replace("/c0/", "/c0/./") + " 0")
    refused(repo, data, capsys, "data/lists/val.txt:2", f"{leak} is in the val split and also "
            "in the train split (at data/lists/train.txt:1)")


@pytest.mark.parametrize("path", ["../outside.jpg", "images/../../outside.jpg", "/etc/x.jpg"])
def test_a_list_path_that_leaves_the_root(repo, capsys, path):
    lists, data = lists_data(repo)
    rewrite_line(lists["train"], 4, f"{path} 0")
    refused(repo, data, capsys, "data/lists/train.txt:4", repr(path),
            "is not inside the image root")


def test_an_empty_class_folder_in_train(repo, capsys):
    make_image_folder(repo / "imgs", train=(3, 3), test=2)
    (repo / "imgs/train/c2").mkdir()
    (repo / "imgs/train/c2/notes.txt").write_text("no images here")
    refused(repo, folder_params(), capsys, "imgs/train/c2 holds no images",
            "remove the folder or fill it")


@pytest.mark.parametrize("mode", ["I", "F"])
def test_a_32_bit_tiff(repo, capsys, mode):
    lists, data = lists_data(repo)
    pixels = np.arange(24 * 16).reshape(16, 24)
    Image.fromarray(pixels.astype(np.int32 if mode == "I" else np.float32), mode).save(
        repo / "imgs/deep.tif")
    rewrite_line(lists["train"], 5, "deep.tif 1")
    refused(repo, data, capsys, "data/lists/train.txt:5", "deep.tif",
            f"(mode {mode}), which have no fixed range", "convert it to 8-bit")


# -- accepted, with the right data ---------------------------------------------------------------

def test_hidden_files_and_folders_are_skipped(repo):
    make_image_folder(repo / "imgs", train=(3, 3), test=2)
    for split in ("train", "test"):
        write_image(repo / f"imgs/{split}/.ipynb_checkpoints/img0000", 0, 0, "RGB", (20, 20))
        write_image(repo / f"imgs/{split}/c0/.hidden/img0000", 0, 0, "RGB", (20, 20))
        (repo / f"imgs/{split}/c1/.DS_Store").write_bytes(b"\0\0\0\1Bud1")
        write_image(repo / f"imgs/{split}/c1/._img0000", 1, 0, "RGB", (20, 20))
    splits = prepare(DataConfig(**folder_params(root=str(repo / "imgs"))))
    assert splits.meta["class_names"] == '["c0", "c1"]'
    assert splits.class_counts.tolist() == [2, 2]
    assert not any("/." in p for s in ("train", "val", "test") for p in splits.paths[s])


def test_a_16_bit_png_is_converted_by_its_top_8_bits(repo):
    lists, data = lists_data(repo)
    deep = (np.arange(20 * 30).reshape(20, 30) * 100).astype(np.uint16)
    Image.fromarray(deep).save(repo / "imgs/deep.png")
    assert Image.open(repo / "imgs/deep.png").mode == "I;16"
    rewrite_line(lists["train"], 5, "deep.png 1")
    splits = prepare(DataConfig(**{**data, "root": str(repo / "imgs")}))
    assert "deep.png" in splits.paths["train"].tolist()
    crop = load_crop(repo / "imgs/deep.png", 16, train=False, rng=None)
    assert crop.dtype == np.uint8 and crop.max() < 255 and crop.max() > 100  # not clipped
    whole = load_crop(repo / "imgs/deep.png", 20, train=False, rng=None)  # 20 x 30 -> 22 x 33
    assert np.all(whole[0] == whole[1]) and np.all(whole[1] == whole[2])  # grey stays grey


def test_spaces_in_a_path_are_kept(repo):
    """The label is after the last whitespace: `a  b.jpg` is not `a b.jpg`."""
    lists, data = lists_data(repo)
    write_image(repo / "imgs/two  spaces", 0, 0, "RGB", (20, 20))
    write_image(repo / "imgs/two spaces", 1, 0, "RGB", (40, 40))
    rewrite_line(lists["train"], 1, "two  spaces.jpg\t0")
    splits = prepare(DataConfig(**{**data, "root": str(repo / "imgs")}))
    i = splits.paths["train"].tolist().index("two  spaces.jpg")
    assert splits.sizes["train"][i] == (repo / "imgs/two  spaces.jpg").stat().st_size


def test_bom_crlf_blank_lines_unicode_names_and_symlinked_folders(repo):
    lists, data = lists_data(repo)
    write_image(repo / "imgs/images/train/c0/café_日本", 0, 0, "RGB", (20, 20))
    lines = lists["train"].read_text().splitlines() + ["images/train/c0/café_日本.jpg 0", "", ""]
    lists["train"].write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8"))
    splits = prepare(DataConfig(**{**data, "root": str(repo / "imgs")}))
    assert splits.paths["train"][0] == first_path(lists["val"]).replace("/val/", "/train/")
    assert "images/train/c0/café_日本.jpg" in splits.paths["train"].tolist()
    assert splits.class_counts.tolist() == [6, 4]

    make_image_folder(repo / "tree", train=(3, 3), test=2)
    os.rename(repo / "tree/train/c1", repo / "c1_elsewhere")
    os.symlink(repo / "c1_elsewhere", repo / "tree/train/c1")
    folder = prepare(DataConfig(**folder_params(root=str(repo / "tree"))))
    assert folder.class_counts.tolist() == [2, 2]
