"""The front page and the manual stay true: every link between the pages (and to a heading)
resolves, every page is reachable from README, every documented `lttools` and `dvc` command
still parses, every stage it names exists, every `-S` key is a param, every file path it
names exists, and README's abbreviated leaderboard is the committed one's."""
import re
import shlex
from pathlib import Path

import pytest
import yaml

from lttools.cli import build_parser
from lttools.retrain.registry import get_method
from pipeline_helpers import DOCS, ROOT

PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
PATH = re.compile(r"(?<![\w./])((?:bench|stages|presets|examples|tests|lttools|docs)/[\w./-]*\w)")
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
STAGES = set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
IGNORED = {line.strip("/") for line in (ROOT / ".gitignore").read_text().splitlines()}


def name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def prose(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.S)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in prose(page.read_text()).splitlines()
            if re.match(r"#{1,6} ", line)}


def code_lines(page: Path) -> list[str]:
    """Shell lines of the page's bash blocks, continuations joined."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
        lines += [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    return lines


def commands(page: Path, program: str) -> list[list[str]]:
    """Each `program ...` command of the page's bash blocks, as argv after the program."""
    found = []
    for line in code_lines(page):
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        words: list[str] = []
        for token in [*lexer, ";"]:
            if token in ("&&", "||", ";", "|", "&"):
                if words and words[0] == program:
                    found.append(words[1:])
                words = []
            else:
                words.append(token)
    return found


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_links_resolve(page):
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{name(page)}: link to {target}: no such file"
        if anchor:
            assert anchor in anchors(dest), f"{name(page)}: link to {target}: no such heading"


def test_every_page_is_reachable_from_the_front_page():
    linked = {(ROOT / t.partition("#")[0]).resolve()
              for t in LINK.findall((ROOT / "README.md").read_text())}
    assert set(DOCS.glob("*.md")) <= linked


def test_the_front_page_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_documented_lttools_commands_parse(page):
    for argv in commands(page, "lttools"):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            if exc.code != 0:  # --help exits 0
                raise AssertionError(f"{name(page)}: lttools {' '.join(argv)}") from None
        for flag, value in zip(argv, argv[1:]):
            if flag in ("-S", "--set-param"):  # lttools sweep run -S
                check_param(value.split("=", 1)[0])


def check_param(key: str) -> None:
    node, parts = PARAMS, key.split(".")
    if parts[0] == "methods" and len(parts) == 3 and parts[1] in PARAMS["methods"]:
        entry = PARAMS["methods"][parts[1]]
        assert parts[2] in get_method(entry.get("method", parts[1])).all_params(), key
        return
    for part in parts:
        assert isinstance(node, dict) and part in node, f"-S {key}: not in params.yaml"
        node = node[part]


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_documented_dvc_commands_parse_and_name_real_stages_and_params(page):
    from dvc.cli.parser import get_main_parser

    for argv in commands(page, "dvc"):
        try:
            get_main_parser().parse_args(argv)
        except SystemExit:
            raise AssertionError(f"{name(page)}: dvc {' '.join(argv)} does not parse") from None
        if argv[0] == "repro":
            for target in (a for a in argv[1:] if not a.startswith("-")):
                base, _, key = target.partition("@")
                assert base in STAGES, f"{name(page)}: dvc repro {target}: no such stage"
                items = PARAMS["methods"] if base == "retrain" else \
                    [str(s) for s in PARAMS["replicates"]["seeds"]]
                assert not key or key in items, f"{name(page)}: {target}: no such item"
        for flag, value in zip(argv, argv[1:]):
            if flag in ("-S", "--set-param"):
                check_param(value.split("=", 1)[0])


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_named_files_exist(page):
    text = page.read_text()
    spans = re.findall(r"`([^`\n]+)`", prose(text)) + code_lines(page)
    for span in spans:
        for path in PATH.findall(span):
            if any(c in path for c in "<>*{") or path.startswith("docs/") and page.parent == DOCS:
                continue
            assert (ROOT / path).exists() or path in IGNORED, f"{name(page)}: {path}"


def test_the_front_pages_leaderboard_is_the_committed_one():
    board = (ROOT / "metrics/leaderboard.md").read_text()
    readme = (ROOT / "README.md").read_text()
    rows = [r for r in readme.splitlines() if re.match(r"\| \d+ \| \w+ \|", r)]
    assert len(rows) >= 5
    for row in rows:
        assert any(line.startswith(row.rstrip(" |") + " |") for line in board.splitlines()), row
    heads = re.search(r"Stage-1 heads, no re-training: ([\d. /]+\d) on", readme)[1]
    assert f"test balanced accuracy {heads}% on backbones" in board
