"""The leaderboard as a Markdown table (also embedded in the HTML report)."""
from __future__ import annotations

import numpy as np

from lttools.pooled import backbones_needed
from lttools.report.load import MethodResult, ranked
from lttools.report.significance import Significance
from lttools.report.tables import markdown_table

NO_VALIDATION = ("**No validation split** (data.val_per_class = 0): no epoch or grid point was "
                 "selected; every number is the last epoch of the one setting given.")
COLUMNS = ("rank", "method", "test bal. acc", "interval", "vs best", "vs ce", "last epoch",
           "Many", "Medium", "Few", "LoMa mean (spread)", "RSD", "ECE", "‖w‖ max/min", "selected")


def pm(r: MethodResult, name: str) -> str:
    mean, std = r.get(f"{name}_mean"), r.get(f"{name}_std")
    if mean is None:
        return "—"
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


def bounds(interval: tuple[float, float] | None) -> str:
    return "—" if interval is None else f"[{interval[0]:.2f}, {interval[1]:.2f}]"


def with_interval(r: MethodResult, name: str, sig: Significance | None, statistic: str) -> str:
    cell = pm(r, name)
    interval = sig.interval(r.key, statistic) if sig is not None else None
    return cell if cell == "—" or interval is None else f"{cell} {bounds(interval)}"


def versus_best(r: MethodResult, sig: Significance | None) -> str:
    if sig is None or r.key not in sig.boot.results:
        return "—"
    if r.key == sig.best:
        return "best"
    return sig.vs_best[r.key].against_best()


def versus_reference(r: MethodResult, sig: Significance | None) -> str:
    if sig is None or sig.reference is None or r.key not in sig.boot.results:
        return "—"
    if r.key == sig.reference:
        return "reference"
    return sig.vs_reference[r.key].against_reference()


def selected(r: MethodResult) -> str:
    parts = [f"{k}={r.get(f'selected_{k}_mean'):g}" for k in r.details.get("grid_keys", [])
             if r.get(f"selected_{k}_mean") is not None]
    epoch, epochs = r.get("selected_epoch_mean"), int(r.get("epochs") or 0)
    if r.get("selected_on_validation") == 0:
        parts.append("no validation split: last epoch, nothing selected")
    elif epochs == 0:
        parts.append("post-hoc on the stage-1 head")
    elif epoch is not None:
        parts.append(f"epoch {epoch:.1f}/{epochs}")
    return ", ".join(parts) or "—"


ACROSS = ("per backbone", "P(> best)", "P(> ce)", "first / top 3",
          "noise: images / backbones / seeds")


def share(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def across_cells(r: MethodResult, sig: Significance) -> list[str]:
    """With several backbones: each backbone's mean, P(A > B) against the best and the
    reference over paired runs, rank stability and the noise shares (lttools/pooled.py)."""
    a = sig.across.get(r.key)
    if a is None:
        return ["—"] * len(ACROSS)
    return [" / ".join(f"{x:.2f}" for x in a.per_backbone), share(a.p_beats_best),
            share(a.p_beats_reference), f"{a.first:.0%} / {a.top3:.0%}",
            f"{a.noise.images:.0%} / {a.noise.backbones:.0%} / {a.noise.seeds:.0%}"]


def needed_words(sig: Significance) -> str:
    """How many backbones a 1- and a 0.5-point gap need, at the spread measured here."""
    if not sig.pair_spread:
        return ""
    n1, n05 = (backbones_needed(sig.pair_spread, gap, sig.settings.alpha) for gap in (1.0, 0.5))
    count = lambda n: "more than 10,000" if n is None else str(n)  # noqa: E731
    return (f" Between two methods the per-backbone difference varies by "
            f"{sig.pair_spread:.2f} points (standard deviation, median over the pairs): at that "
            f"spread a paired test finds a 1-point gap with 80 % power from {count(n1)} "
            f"backbones, a 0.5-point gap from {count(n05)}.")


def several(sig: Significance | None) -> bool:
    return sig is not None and sig.backbones > 1


def rows(results: list[MethodResult], sig: Significance | None = None) -> list[list[str]]:
    out = []
    for i, r in enumerate(ranked(results), start=1):
        loma = r.get("test_loma_mean_mean")
        loma_sd = r.get("test_loma_std_mean")
        loma_cell = "—" if loma is None else f"{loma:.2f} ({loma_sd:.2f})"
        name = r.key if r.details.get("method", r.key) == r.key else \
            f"{r.key} ({r.details['method']})"
        interval = sig.interval(r.key) if sig is not None else None
        out.append([str(i), name, pm(r, "test_bacc"), bounds(interval), versus_best(r, sig),
                    versus_reference(r, sig), *(across_cells(r, sig) if several(sig) else []),
                    pm(r, "last_test_bacc"),
                    *(with_interval(r, f"test_{g}", sig, g) for g in ("many", "medium", "few")),
                    loma_cell, pm(r, "test_rsd_mean"), pm(r, "test_ece"),
                    pm(r, "test_wnorm_ratio"), selected(r)])
    return out


def header(sig: Significance | None) -> list[str]:
    level = f"{sig.settings.level:.0%} " if sig is not None else ""
    ref = sig.reference if sig is not None and sig.reference else "ce"
    columns = list(COLUMNS)
    if several(sig):
        at = columns.index("vs ce") + 1
        columns[at:at] = ACROSS
    return [f"{level}interval" if c == "interval" else
            c.replace("ce", ref) if c in ("vs ce", "P(> ce)") else c for c in columns]


def subset_words(data: dict) -> list[str]:
    """The data subset as it was used: the imbalance ratio rounded, and the validation split a
    given one (a folder or list) or the last val_per_class images of each class."""
    words = [f"imb_ratio {data['imb_ratio']:.4g}"] if "imb_ratio" in data else []
    words += [f"max_per_class {data['max_per_class']}"] if "max_per_class" in data else []
    if data.get("validation") == "given":
        words.append("validation split given")
    elif "val_per_class" in data:
        words.append(f"val_per_class {data['val_per_class']}")
    return words + ([f"selection {data['selection']}"] if "selection" in data else [])


def _stores(r: MethodResult) -> list[dict]:
    """The provenance of every feature store a method was trained on (one per replicate)."""
    return r.details.get("replicate_provenance") or [r.details["provenance"]]


def backbone_lines(results: list[MethodResult]) -> list[str]:
    """What the methods were ranked on, from their recorded provenance; a warning when they
    were not all trained on the same backbones and features."""
    ranked_ = [r for r in ranked(results) if r.details.get("provenance")]
    if not ranked_:
        return []
    seen = {tuple((p["backbone"].get("checkpoint_sha256"), p.get("features_sha256"))
                  for p in _stores(r)) for r in ranked_}
    prov = ranked_[0].details["provenance"]
    bb, data, ver = prov["backbone"], prov.get("data", {}), prov.get("versions", {})
    subset = ", ".join(subset_words(data))
    stores = _stores(ranked_[0])
    checkpoints = ", ".join((p["backbone"].get("checkpoint_sha256") or
                             "none (imported features)")[:16] for p in stores)
    features = ", ".join(p.get("features_sha256", "")[:16] for p in stores)
    what = "Backbone" if len(stores) == 1 else \
        f"{len(stores)} backbone replicates (seeds {', '.join(str(p.get('replicate')) for p in stores)})"
    lines = [f"{what}: {bb.get('arch')} ({bb.get('feature_dim')}-d features) on "
             f"{data.get('dataset')} ({subset}); checkpoint sha256 {checkpoints}, "
             f"features sha256 {features}; lttools {ver.get('lttools')}, torch "
             f"{ver.get('torch')}."]
    if len(seen) > 1:
        lines.append("**Warning: these methods were not all trained on the same backbones and "
                     f"features ({len(seen)} different sets); re-run `dvc repro` before "
                     "comparing them.**")
    return lines


def problems(results: list[MethodResult]) -> list[tuple[str, str]]:
    return [(r.key, r.problem) for r in results if r.problem is not None]


def uncertainty_lines(results: list[MethodResult], sig: Significance | None) -> list[str]:
    """How the intervals and tests were computed, in one line; which methods have none."""
    if sig is None:
        return ["No intervals: no method has stored test predictions (re-run `dvc repro`)."] \
            if ranked(results) else []
    holds = ("They hold the test images and the stage-2 seeds of this one backbone only, not "
             "stage 1's own noise, the largest on the default data: for that, train backbone "
             "replicates (`replicates.seeds: [0, 1, 2]`, docs/how-sure.md).")
    if several(sig):
        shares = [a.noise for a in sig.across.values()]
        med = {k: float(np.median([getattr(n, k) for n in shares]))
               for k in ("images", "backbones", "seeds")}
        holds = (f"They hold {sig.backbones} backbone replicates as well as the test images and "
                 "the stage-2 seeds: the spread across backbones with Student's t on "
                 f"{sig.backbones - 1} degrees of freedom. Per backbone: each backbone's mean "
                 "over seeds; P(> best) / P(> ce): the share of paired runs (same backbone and "
                 "seed) the method wins; first / top 3: on how many backbones it ranks so. "
                 "Noise: the shares of the pooled mean's variance from the test images, the "
                 f"backbones and the stage-2 seeds; median over methods {med['images']:.0%} / "
                 f"{med['backbones']:.0%} / {med['seeds']:.0%}.{needed_words(sig)}")
    lines = [f"Intervals and tests: {sig.description()} Many / Medium / Few cells give their "
             f"interval in brackets. {holds}"]
    lines += [f"No interval for **{k}**: {why}" for k, why in sig.left_out.items()]
    return lines


def stage1_line(backbones: dict[int, dict]) -> str:
    """The stage-1 heads' own test balanced accuracy, per backbone replicate."""
    accs = {s: b["test_bacc"] for s, b in sorted(backbones.items())
            if isinstance(b.get("test_bacc"), (int, float))}
    if not accs:
        return ""
    if len(accs) == 1:
        return f"Stage-1 head, no re-training: test balanced accuracy {next(iter(accs.values())):.2f}%."
    return (f"Stage-1 heads, no re-training: test balanced accuracy "
            f"{' / '.join(f'{a:.2f}' for a in accs.values())}% on backbones "
            f"{' / '.join(map(str, accs))} (mean {np.mean(list(accs.values())):.2f}).")


def markdown(results: list[MethodResult], backbones: dict[int, dict] | None = None,
             sig: Significance | None = None) -> str:
    """`backbones`: each replicate's stage-1 summary, by seed."""
    seeds = {int(r.get("num_seeds") or 0) for r in ranked(results)}
    count = max([int(r.get("num_backbones") or 1) for r in ranked(results)] or [1])
    on = "one frozen backbone" if count == 1 else \
        f"{count} frozen backbone replicates (stage 1 trained with {count} seeds)"
    runs = f"{'/'.join(map(str, sorted(seeds))) or 'no'} seeds"
    if count > 1:
        runs = f"{count} backbones x {runs}"
    lines = ["# Leaderboard", "",
             f"Classifier re-training on {on}. Test balanced accuracy (%) at the "
             "grid point and epoch chosen on the balanced validation split, mean ± std over "
             f"{runs}; 'last epoch' is the same "
             "without epoch selection. Many / Medium / Few: more than 100 / 20-100 / fewer than "
             "20 training images; — marks an empty group. LoMa: logits magnitude, mean across "
             "classes (std across classes); RSD: regularised std; ECE: calibration error (%); "
             "‖w‖ max/min: largest over smallest class-weight norm.", ""]
    origin = backbone_lines(results) + uncertainty_lines(results, sig)
    for line in origin:
        lines += [line, ""]
    if any(r.get("selected_on_validation") == 0 for r in ranked(results)):
        lines += [NO_VALIDATION, ""]
    lines += markdown_table(header(sig), rows(results, sig))
    stage1 = stage1_line(backbones or {})
    if stage1:
        lines += ["", stage1]
    bad = problems(results)
    if bad:
        lines += ["", "Not ranked:", ""] + [f"- **{k}**: {why}" for k, why in bad]
    return "\n".join(lines) + "\n"
