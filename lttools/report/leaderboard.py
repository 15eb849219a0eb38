"""The leaderboard as a Markdown table (also embedded in the HTML report)."""
from __future__ import annotations

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
                    versus_reference(r, sig), pm(r, "last_test_bacc"),
                    *(with_interval(r, f"test_{g}", sig, g) for g in ("many", "medium", "few")),
                    loma_cell, pm(r, "test_rsd_mean"), pm(r, "test_ece"),
                    pm(r, "test_wnorm_ratio"), selected(r)])
    return out


def header(sig: Significance | None) -> list[str]:
    level = f"{sig.settings.level:.0%} " if sig is not None else ""
    ref = sig.reference if sig is not None and sig.reference else "ce"
    return [f"{level}interval" if c == "interval" else f"vs {ref}" if c == "vs ce" else c
            for c in COLUMNS]


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


def backbone_lines(results: list[MethodResult]) -> list[str]:
    """What the methods were ranked on, from their recorded provenance; a warning when they
    were not all trained on the same backbone and features."""
    ranked_ = [r for r in ranked(results) if r.details.get("provenance")]
    if not ranked_:
        return []
    seen = {(r.details["provenance"]["backbone"].get("checkpoint_sha256"),
             r.details["provenance"].get("features_sha256")) for r in ranked_}
    prov = ranked_[0].details["provenance"]
    bb, data, ver = prov["backbone"], prov.get("data", {}), prov.get("versions", {})
    subset = ", ".join(subset_words(data))
    ckpt = bb.get("checkpoint_sha256") or "none (imported features)"
    lines = [f"Backbone: {bb.get('arch')} ({bb.get('feature_dim')}-d features) on "
             f"{data.get('dataset')} ({subset}); checkpoint sha256 {ckpt[:16]}, features sha256 "
             f"{prov.get('features_sha256', '')[:16]}; lttools {ver.get('lttools')}, torch "
             f"{ver.get('torch')}."]
    if len(seen) > 1:
        lines.append("**Warning: these methods were not all trained on the same backbone and "
                     f"features ({len(seen)} different ones); re-run `dvc repro` before "
                     "comparing them.**")
    return lines


def problems(results: list[MethodResult]) -> list[tuple[str, str]]:
    return [(r.key, r.problem) for r in results if r.problem is not None]


def uncertainty_lines(results: list[MethodResult], sig: Significance | None) -> list[str]:
    """How the intervals and tests were computed, in one line; which methods have none."""
    if sig is None:
        return ["No intervals: no method has stored test predictions (re-run `dvc repro`)."] \
            if ranked(results) else []
    lines = [f"Intervals and tests: {sig.description()} Many / Medium / Few cells give their "
             "interval in brackets. They hold the test images and the stage-2 seeds of this "
             "one backbone, not stage 1's own noise: for that, train backbone replicates and "
             "pool them (`lttools compare --pool`, docs/how-sure.md)."]
    lines += [f"No interval for **{k}**: {why}" for k, why in sig.left_out.items()]
    return lines


def markdown(results: list[MethodResult], backbone: dict | None = None,
             sig: Significance | None = None) -> str:
    seeds = {int(r.get("num_seeds") or 0) for r in ranked(results)}
    lines = ["# Leaderboard", "",
             "Classifier re-training on one frozen backbone. Test balanced accuracy (%) at the "
             "grid point and epoch chosen on the balanced validation split, mean ± std over "
             f"{'/'.join(map(str, sorted(seeds))) or 'no'} seeds; 'last epoch' is the same "
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
    if backbone:
        acc = backbone.get("test_bacc")
        if isinstance(acc, (int, float)):
            lines += ["", f"Stage-1 head, no re-training: test balanced accuracy {acc:.2f}%."]
    bad = problems(results)
    if bad:
        lines += ["", "Not ranked:", ""] + [f"- **{k}**: {why}" for k, why in bad]
    return "\n".join(lines) + "\n"
