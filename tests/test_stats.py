"""Intervals and paired tests (lttools/stats.py): calibrated by simulation, where the truth is
known, and checked piece by piece against direct computation."""
import numpy as np
import pytest
from scipy.stats import norm

from lttools.errors import LTError
from lttools.stats import STATISTICS, Settings, adjust, bootstrap, class_order, group_weights, \
    holm, image_resamples

CLASSES, PER_CLASS, SEEDS = 10, 100, 3
TRAIN_COUNTS = np.full(CLASSES, 200)  # every class Many: the groups are not under test here


def simulate(rng, shift=0.02, gap=0.0, jitter=0.0):
    """Two methods on one test sample of 10 classes x 100 images, 3 seeds each. Image i is
    right when its difficulty u_i is below the class's threshold; a seed moves each class's
    threshold (accuracy shift ~ N(0, `shift`): a seed's head favours some classes), `jitter`
    adds seed-by-image disagreement. Method b's true accuracy is a's + `gap` in every class.
    True balanced accuracy: the mean of the class accuracies p_c (+ gap)."""
    labels = np.repeat(np.arange(CLASSES), PER_CLASS)
    p = rng.uniform(0.6, 0.9, CLASSES)
    u = rng.normal(size=len(labels))
    correct = {}
    for name, g in (("a", 0.0), ("b", gap)):
        thr = norm.ppf(np.clip(p + g + rng.normal(0, shift, (SEEDS, CLASSES)), 1e-3, 1 - 1e-3))
        noisy = (u + jitter * rng.normal(size=(SEEDS, len(labels)))) / np.sqrt(1 + jitter ** 2)
        correct[name] = noisy < thr[:, labels]
    return correct, labels, 100 * p.mean(), 100 * (p.mean() + gap)


def rates(reps: int, draw, settings) -> tuple[float, float, float]:
    """Share of repetitions where the paired test of b against a rejects at 0.05, and where
    each method's 95 % interval covers its true balanced accuracy. draw() -> (correct, labels,
    truth_a, truth_b); settings(r) -> the Settings of repetition r."""
    reject = cover_a = cover_b = 0
    for r in range(reps):
        correct, labels, truth_a, truth_b = draw()
        boot = bootstrap(correct, labels, TRAIN_COUNTS, (100, 20), settings(r))
        reject += boot.difference("b", "a")[1] < 0.05
        lo, hi = boot.interval("a")
        cover_a += lo <= truth_a <= hi
        lo, hi = boot.interval("b")
        cover_b += lo <= truth_b <= hi
    return reject / reps, cover_a / reps, cover_b / reps


def calibration(reps: int, seeds: str, gap: float = 0.0, jitter: float = 0.0, seed: int = 7):
    rng = np.random.default_rng(seed)
    return rates(reps, lambda: simulate(rng, gap=gap, jitter=jitter),
                 lambda r: Settings(resamples=500, seed=r, seeds=seeds))


# 400 repetitions: a rate of 5 % is measured to +-1.1 % (one standard error), 95 % likewise.
REPS = 400


def test_false_positive_rate_and_coverage_under_seed_effects():
    """The issue's setting: a per-seed per-class shift of 2 points, the same true accuracy."""
    fpr, cover_a, cover_b = calibration(REPS, "include")
    assert 0.02 <= fpr <= 0.09, fpr  # 6.7 % over 1,000 repetitions (bench/uncertainty.py)
    assert 0.915 <= cover_a <= 0.985 and 0.915 <= cover_b <= 0.985, (cover_a, cover_b)


def test_ignoring_the_seeds_is_what_goes_wrong():
    """The same data with the seeds' variance left out (a bootstrap over images only): the
    paired test rejects a true null far more often than 5 %: the simulation has teeth."""
    fpr, _, _ = calibration(REPS // 2, "ignore")
    assert fpr > 0.2, fpr


def test_calibrated_with_seed_by_image_disagreement_too():
    fpr, cover_a, _ = calibration(REPS // 2, "include", jitter=0.5, seed=11)
    assert 0.015 <= fpr <= 0.10, fpr
    assert 0.9 <= cover_a <= 0.99, cover_a


def test_a_real_gap_is_found_and_covered():
    """Method b better by 4 points in every class: the test finds it nearly always, and both
    intervals cover their own truths about 95 % of the time."""
    power, cover_a, cover_b = calibration(REPS // 2, "include", gap=0.04, seed=3)
    assert power > 0.8, power
    assert 0.9 <= cover_a <= 0.99 and 0.9 <= cover_b <= 0.99, (cover_a, cover_b)


def test_estimates_are_the_seed_mean_of_balanced_accuracy_per_group():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, 500)
    train_counts = np.array([300, 150, 60, 30, 10, 5])  # Many 2, Medium 2, Few 2
    correct = rng.random((4, 500)) < 0.7
    boot = bootstrap({"m": correct}, labels, train_counts, (100, 20), Settings(resamples=100))
    per_class = np.stack([[correct[s, labels == c].mean() for c in range(6)] for s in range(4)])
    want = {"bacc": per_class.mean(1), "many": per_class[:, :2].mean(1),
            "medium": per_class[:, 2:4].mean(1), "few": per_class[:, 4:].mean(1)}
    for statistic, values in want.items():
        assert boot.estimate("m", statistic) == pytest.approx(100 * values.mean(), abs=1e-9)


def test_resamples_keep_each_class_size_and_are_reproducible():
    labels = np.array([2, 0, 1, 1, 0, 2, 2, 2, 1, 0, 0, 0])
    a = np.concatenate(list(image_resamples(labels, 300, seed=5)))
    assert a.shape == (300, len(labels))
    in_order = labels[class_order(labels)]
    assert (np.diff(in_order) >= 0).all()
    for c in range(3):
        assert (a[:, in_order == c].sum(1) == (labels == c).sum()).all()
        assert (a[:, in_order == c] > 0).any(0).all()  # every image of the class is drawn
    assert (a == np.concatenate(list(image_resamples(labels, 300, seed=5)))).all()
    assert not (a == np.concatenate(list(image_resamples(labels, 300, seed=6)))).all()


def test_resamples_do_not_depend_on_the_block_size(monkeypatch):
    import lttools.stats as stats

    labels = np.repeat(np.arange(4), 25)
    whole = np.concatenate(list(image_resamples(labels, 50, seed=1)))
    monkeypatch.setattr(stats, "WEIGHT_BLOCK", 7 * len(labels))
    blocks = list(image_resamples(labels, 50, seed=1))
    assert len(blocks) > 1 and (np.concatenate(blocks) == whole).all()


def test_empty_group_is_unavailable():
    labels = np.repeat(np.arange(3), 10)
    w = group_weights(labels, np.array([500, 400, 300]), (100, 20))  # all Many
    assert w.shape == (len(STATISTICS), 30)
    assert w[0].sum() == pytest.approx(1) and w[1].sum() == pytest.approx(1)
    assert not w[2].any() and not w[3].any()


def test_identical_results_do_not_differ():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(5), 20)
    c = rng.random((3, 100)) < 0.6
    boot = bootstrap({"a": c, "b": c.copy()}, labels, np.full(5, 50), (100, 20),
                     Settings(resamples=200))
    assert boot.difference("a", "b") == (0.0, 1.0)


def test_holm_and_benjamini_hochberg():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm by hand: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, then running maximum
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH by hand: sorted p * 4 / rank, then running minimum from the largest
    assert adjust(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert adjust([], "holm") == []


@pytest.mark.parametrize("section, words", [
    ({"resamples": 10}, "uncertainty.resamples = 10"),
    ({"level": 95}, "uncertainty.level = 95"),
    ({"seed": -1}, "uncertainty.seed = -1"),
    ({"seeds": "resample"}, "uncertainty.seeds = 'resample'"),
    ({"correction": "bonferroni"}, "uncertainty.correction = 'bonferroni'"),
    ({"margin": -0.5}, "uncertainty.margin = -0.5"),
    ({"margin": "half"}, "uncertainty.margin = 'half'"),
    ({"alpha": 0.05}, "unknown key(s) under `uncertainty:`"),
])
def test_bad_settings_say_what_is_wrong(section, words):
    with pytest.raises(LTError, match=None) as exc:
        Settings.from_params(section)
    assert words in str(exc.value)


def near_the_bound(rng, lowest: float, per_class: int = 30, shift: float = 0.01):
    """A new user's small test set (30 images per class, as an own image folder gives) and
    class accuracies from `lowest` up to 100 %; the last three classes are Few."""
    labels = np.repeat(np.arange(CLASSES), per_class)
    p = rng.uniform(lowest, 1.0, CLASSES)
    thr = norm.ppf(np.clip(p + rng.normal(0, shift, (SEEDS, CLASSES)), 1e-4, 1 - 1e-4))
    return {"a": rng.normal(size=len(labels)) < thr[:, labels]}, labels, p


SKEWED = np.array([500, 300, 200, 120, 90, 60, 30, 15, 10, 5])  # Many 3, Medium 4, Few 3


@pytest.mark.parametrize("lowest", [0.9, 0.97])
def test_intervals_near_100_percent_stay_inside_and_cover(lowest):
    """Classes right on nearly every image: the intervals stay inside [0, 100], none has zero
    width, and they cover the truth about 95 % of the time (est +- t se: 63 % for Few at
    0.97, with zero-width intervals, measured while writing this test)."""
    rng = np.random.default_rng(5)
    reps, cover = 200, {"bacc": 0, "few": 0}
    for r in range(reps):
        correct, labels, p = near_the_bound(rng, lowest)
        boot = bootstrap(correct, labels, SKEWED, (100, 20), Settings(resamples=300, seed=r))
        for g, truth in (("bacc", p.mean()), ("few", p[SKEWED < 20].mean())):
            lo, hi = boot.interval("a", g)
            assert 0 <= lo < hi <= 100, (g, lo, hi)
            cover[g] += lo <= 100 * truth <= hi
    for g, hits in cover.items():
        assert 0.91 <= hits / reps <= 0.99, (g, hits / reps)


def test_a_class_right_everywhere_still_has_width():
    """Every seed right on every image: the interval is not a point; its upper end is 100 and
    its lower end is Wilson's for the test images at hand. One Few class at 100 % while the
    others are not adds width over leaving it out."""
    labels = np.repeat(np.arange(CLASSES), 30)
    perfect = bootstrap({"a": np.ones((SEEDS, len(labels)), bool)}, labels, SKEWED, (100, 20),
                        Settings(resamples=200))
    for g in STATISTICS:
        lo, hi = perfect.interval("a", g)
        assert hi == 100 and 90 < lo < 100, (g, lo, hi)
    lo_all, _ = perfect.interval("a", "bacc")
    lo_few, _ = perfect.interval("a", "few")
    assert lo_few < lo_all  # 90 Few images are less sure than 300

    rng = np.random.default_rng(2)
    c = rng.random((SEEDS, len(labels))) < 0.8
    c[:, labels == 9] = True  # a Few class right everywhere
    boot = bootstrap({"a": c}, labels, SKEWED, (100, 20), Settings(resamples=500))
    se_only = boot._spread(["a"], [1.0], STATISTICS.index("few"))[0]
    lo, hi = boot.interval("a", "few")
    assert (hi - lo) / 2 > 1.0001 * se_only * 1.96  # the class at 100 % adds its floor


def test_the_issue_case_over_100_is_now_inside():
    """Few classes at 97-100 % and seeds that disagree: est + t se (2 degrees of freedom)
    passes 100, as cb_reweight's 101.91 did; the interval stays below."""
    labels = np.repeat(np.arange(CLASSES), 30)
    rng = np.random.default_rng(0)
    rates = np.array([[1.0, 1.0, 1.0], [0.9, 0.93, 1.0], [1.0, 1.0, 1.0]])  # seed x Few class
    c = rng.random((SEEDS, len(labels))) < 0.85
    for j, k in enumerate((7, 8, 9)):
        for s in range(SEEDS):
            c[s, labels == k] = np.arange(30) < round(30 * rates[s, j])
    boot = bootstrap({"a": c}, labels, SKEWED, (100, 20), Settings(resamples=500))
    g = STATISTICS.index("few")
    se, df = boot._spread(["a"], [1.0], g)
    from scipy.stats import t as student_t
    assert boot.estimate("a", "few") + se * student_t.ppf(0.975, df) > 100  # the old bound
    lo, hi = boot.interval("a", "few")
    assert 0 < lo < boot.estimate("a", "few") < hi <= 100


# Backbone replicates. The simulation's truth: method a's class accuracies p_c, b's p_c + gap.
# A backbone shifts every class for every method (shared), and each method differently
# (method x backbone interaction); a seed shifts classes within a backbone; the test images
# are one sample, shared by every backbone, each backbone finding other images hard too.
BACKBONE_SHIFT, INTERACTION, SEED_SHIFT, IMAGE_MIX = 0.03, 0.025, 0.006, 0.5


def simulate_backbones(rng, backbones: int, gap: float = 0.0):
    labels = np.repeat(np.arange(CLASSES), PER_CLASS)
    p = rng.uniform(0.6, 0.85, CLASSES)
    u = rng.normal(size=len(labels))
    shared = rng.normal(0, BACKBONE_SHIFT, (backbones, CLASSES))
    hard = (u + IMAGE_MIX * rng.normal(size=(backbones, len(labels)))) / np.sqrt(1 + IMAGE_MIX ** 2)
    correct = {}
    for name, g in (("a", 0.0), ("b", gap)):
        mine = rng.normal(0, INTERACTION, (backbones, CLASSES))
        seeds = rng.normal(0, SEED_SHIFT, (backbones, SEEDS, CLASSES))
        acc = np.clip(p + g + shared[:, None] + mine[:, None] + seeds, 1e-3, 1 - 1e-3)
        correct[name] = hard[:, None, :] < norm.ppf(acc)[:, :, labels]  # [B, S, N]
    return correct, labels, 100 * p.mean(), 100 * (p.mean() + gap)


def backbone_calibration(reps: int, backbones: int, gap: float = 0.0, seed: int = 0,
                         flatten: bool = False):
    """Rejection rate of the paired test at 0.05 and both intervals' coverage; `flatten`
    treats the B x S runs as independent seeds of one backbone (what goes wrong)."""
    rng = np.random.default_rng(seed)

    def draw():
        correct, labels, truth_a, truth_b = simulate_backbones(rng, backbones, gap)
        if flatten:
            correct = {k: v.reshape(-1, v.shape[-1]) for k, v in correct.items()}
        return correct, labels, truth_a, truth_b
    return rates(reps, draw, lambda r: Settings(resamples=300, seed=r))


@pytest.mark.parametrize("backbones", [3, 5])
def test_backbone_replicates_are_calibrated(backbones):
    """Backbones x stage-2 seeds x test images: the paired test's false-positive rate and the
    intervals' coverage at B = 3 and 5 (bench/uncertainty.py: the same with more
    repetitions). Bounds: +-2.5 standard errors of 400 repetitions around 5 % and 95 %."""
    fpr, cover_a, cover_b = backbone_calibration(400, backbones, seed=backbones)
    assert fpr <= 0.08, fpr
    assert 0.915 <= cover_a <= 0.985 and 0.915 <= cover_b <= 0.985, (cover_a, cover_b)


def test_backbones_taken_for_seeds_is_what_goes_wrong():
    """The same runs with the backbones ignored (9 seeds of one backbone): the interaction
    between method and backbone is taken for a difference far more often than 5 % (16.5 %
    measured)."""
    fpr, _, _ = backbone_calibration(200, 3, seed=1, flatten=True)
    assert fpr > 0.1, fpr


def test_a_two_point_gap_with_five_backbones_is_usually_found():
    """78.5 % measured with 5 backbones (38 % with 3: a 2-point gap needs more than 3 when a
    method moves by 0.8 points from backbone to backbone)."""
    power, cover_a, cover_b = backbone_calibration(200, 5, gap=0.02, seed=4)
    assert power > 0.5, power
    assert 0.9 <= cover_a <= 0.99 and 0.9 <= cover_b <= 0.99, (cover_a, cover_b)


def test_equivalent_is_not_the_same_as_no_significant_difference():
    """A tiny gap measured precisely is equivalent (its 90 % interval inside +-0.5); the same
    gap on a few noisy images is only 'not significant'; margin 0 judges nothing."""
    rng = np.random.default_rng(3)
    big = np.repeat(np.arange(10), 2000)
    base = np.repeat(rng.random((1, len(big))) < 0.8, 3, 0)  # seeds that agree
    flip = base.copy()
    flip[:, :40] = ~flip[:, :40]  # 0.2 points apart at most
    boot = bootstrap({"a": base, "b": flip}, big, TRAIN_COUNTS, (100, 20), Settings(resamples=300))
    assert boot.equivalent("a", "b")
    small = np.repeat(np.arange(10), 20)
    noisy = {"a": rng.random((3, 200)) < 0.8, "b": rng.random((3, 200)) < 0.8}
    boot = bootstrap(noisy, small, TRAIN_COUNTS, (100, 20), Settings(resamples=300))
    assert boot.difference("a", "b")[1] > 0.05 and not boot.equivalent("a", "b")
    off = bootstrap({"a": base, "b": flip}, big, TRAIN_COUNTS, (100, 20),
                    Settings(resamples=300, margin=0))
    assert not off.equivalent("a", "b")
