import numpy as np
import pytest

from lttools.data.longtail import class_groups, profile_counts, split_long_tailed
from lttools.errors import LTError


def cifar100_labels(per_class=500):
    # the real file interleaves classes; order within a class is file order
    rng = np.random.RandomState(0)
    return rng.permutation(np.repeat(np.arange(100), per_class))


@pytest.mark.parametrize("ir,size,groups", [(100, 10847, (35, 35, 30)), (50, 12608, (41, 41, 18)),
                                            (10, 19573, (69, 31, 0))])
def test_cifar100_lt_sizes_and_groups(ir, size, groups):
    labels = cifar100_labels()
    train, val = split_long_tailed(labels, 100, ir, 500, val_per_class=0)
    assert len(train) == size and len(val) == 0
    counts = np.bincount(labels[train], minlength=100)
    assert counts[0] == 500 and counts.sum() == size
    g = class_groups(counts)
    assert tuple(len(g[k]) for k in ("many", "medium", "few")) == groups


def test_first_selection_takes_file_order_and_validation_is_the_tail():
    labels = cifar100_labels()
    train, val = split_long_tailed(labels, 100, 100, 500, val_per_class=20)
    for c in (0, 1, 99):
        ix = np.flatnonzero(labels == c)
        np.testing.assert_array_equal(val[labels[val] == c], ix[-20:])
        n_c = int(500 * 0.01 ** (c / 99))
        np.testing.assert_array_equal(train[labels[train] == c], ix[:min(n_c, 480)])
    assert np.bincount(labels[train], minlength=100)[0] == 480
    assert np.bincount(labels[val], minlength=100).tolist() == [20] * 100
    assert not set(train) & set(val)


def test_val_zero_reproduces_paper_subset_and_val_only_trims_largest_class():
    labels = cifar100_labels()
    a, _ = split_long_tailed(labels, 100, 100, 500, val_per_class=0)
    b, _ = split_long_tailed(labels, 100, 100, 500, val_per_class=20)
    ca, cb = np.bincount(labels[a], minlength=100), np.bincount(labels[b], minlength=100)
    assert (ca - cb).tolist() == [20] + [0] * 99


def test_shuffle_selection_is_seeded_and_differs_from_first():
    labels = cifar100_labels()
    s0, _ = split_long_tailed(labels, 100, 100, 500, 20, "shuffle", seed=0)
    s0b, _ = split_long_tailed(labels, 100, 100, 500, 20, "shuffle", seed=0)
    s1, _ = split_long_tailed(labels, 100, 100, 500, 20, "shuffle", seed=1)
    f, _ = split_long_tailed(labels, 100, 100, 500, 20, "first")
    np.testing.assert_array_equal(s0, s0b)
    assert set(s0) != set(s1) and set(s0) != set(f)
    assert len(s0) == len(f)


def test_profile_matches_formula():
    counts = profile_counts(10, 500, 100)
    assert counts.tolist() == [500, 299, 179, 107, 64, 38, 23, 13, 8, 5]


@pytest.mark.parametrize("kwargs,needle", [
    (dict(imb_ratio=0.5), "data.imb_ratio"),
    (dict(n_max=501), "data.max_per_class"),
    (dict(selection="random"), "data.selection"),
    (dict(val_per_class=500), "data.val_per_class"),
])
def test_bad_split_params_name_the_param(kwargs, needle):
    args = dict(labels=cifar100_labels(), num_classes=100, imb_ratio=100, n_max=500,
                val_per_class=0)
    args.update(kwargs)
    with pytest.raises(LTError, match=needle):
        split_long_tailed(**args)
