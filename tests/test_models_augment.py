import pytest
import torch

from lttools.data.augment import CropFlip, apply_crop_flip, draw_crop_flip, random_crop_flip
from lttools.errors import LTError
from lttools.models import create_backbone
from lttools.backbone.batches import epoch_batches


@pytest.mark.parametrize("arch,dim", [("resnet32", 64), ("resnet34", 512)])
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_backbone_shapes(arch, dim, channels, size):
    m = create_backbone(arch, 7, channels).eval()
    x = torch.randint(0, 256, (2, channels, size, size), dtype=torch.uint8)
    assert m.features(x).shape == (2, dim) and m(x).shape == (2, 7)
    assert m.feature_dim == dim and m.arch_name == arch


def test_resnet32_is_the_small_ldam_network():
    n = sum(p.numel() for p in create_backbone("resnet32", 100, 3).parameters())
    assert 0.45e6 < n < 0.48e6


def test_unknown_arch_lists_names():
    with pytest.raises(LTError, match="resnet32, resnet34"):
        create_backbone("vit", 10, 3)


def test_crop_without_pad_or_flip_is_identity():
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(random_crop_flip(x, 0, torch.Generator().manual_seed(0), flip=False), x)


def test_crop_is_a_window_of_the_padded_image_and_seeded():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6) + 1
    g = torch.Generator().manual_seed(3)
    out = random_crop_flip(x, 2, g, flip=False)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, a:a + 6, b:b + 6] for a in range(5) for b in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    again = random_crop_flip(x, 2, torch.Generator().manual_seed(3), flip=False)
    assert torch.equal(out, again)


def test_flip_flips_about_half():
    x = torch.arange(64 * 4, dtype=torch.float32).view(64, 1, 1, 4)
    out = random_crop_flip(x, 0, torch.Generator().manual_seed(0), flip=True)
    flipped = (out == x.flip(3)).all(dim=(1, 2, 3))
    same = (out == x).all(dim=(1, 2, 3))
    assert bool((flipped | same).all()) and 15 < int(flipped.sum()) < 49


def test_epoch_of_draws_equals_drawing_batch_by_batch():
    """The training loop draws an epoch's crops and flips at once; the result must be what
    drawing them batch by batch gives (same generator stream, same images)."""
    x = torch.arange(5 * 3 * 6 * 6, dtype=torch.float32).reshape(5, 3, 6, 6)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    one_by_one = [random_crop_flip(x[:3], 2, g1), random_crop_flip(x[3:], 2, g1)]
    draws = CropFlip.cat([draw_crop_flip(3, 2, g2), draw_crop_flip(2, 2, g2)])
    at_once = [apply_crop_flip(x[:3], 2, draws[0:3]), apply_crop_flip(x[3:], 2, draws[3:5])]
    for a, b in zip(one_by_one, at_once):
        assert torch.equal(a, b)
    assert torch.equal(g1.get_state(), g2.get_state())


def test_epoch_batches_cut_for_equal_shards_and_skip_singletons():
    assert epoch_batches(10, 4) == [(0, 4), (4, 4), (8, 2)]
    assert epoch_batches(9, 4) == [(0, 4), (4, 4)]  # a batch of one image is skipped
    assert epoch_batches(11, 4, world_size=2) == [(0, 4), (4, 4), (8, 2)]
    assert epoch_batches(7, 4, world_size=4) == [(0, 4)]
