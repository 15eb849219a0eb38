"""The one exception type that stage CLIs turn into a readable message and exit code 2."""


class LTError(Exception):
    """A user-facing error: the message says what is wrong and how to fix it."""


def unknown_name(kind: str, name: str, valid: "list[str] | tuple[str, ...]") -> LTError:
    return LTError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(valid))}")


def check_range(name: str, value: float, low: float | None = None, high: float | None = None,
                low_inclusive: bool = True, high_inclusive: bool = True) -> None:
    """Raise LTError naming the parameter and its valid range when value lies outside it."""
    ok = True
    if low is not None:
        ok &= value >= low if low_inclusive else value > low
    if high is not None:
        ok &= value <= high if high_inclusive else value < high
    if not ok:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        interval = ("[" if low_inclusive and low is not None else "(") + f"{lo}, {hi}" + (
            "]" if high_inclusive and high is not None else ")")
        raise LTError(f"{name} = {value} is out of range; valid range: {interval}")
