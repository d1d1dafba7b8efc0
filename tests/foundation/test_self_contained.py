"""The repository stands alone: no test, bench, script, DAG, doc or config reads or names a path outside it.

A clone in an empty folder must pass its tests, so the specification (docs/spec/) and the benchmark datasets
(bench/data/huim/) live in the repository. Checked statically over every tracked or new, not ignored, text file:
  - relative paths (`../`) climb no higher than the repository root from the file that names them;
  - `Path(__file__).parents[k]` and `ROOT.parent` never reach above the root;
  - no absolute path of a workplace checkout (`/work/...`) or of the team's material beside the repository;
  - Markdown links resolve to files inside the repository.
"""
from __future__ import annotations

import gzip
import re
import subprocess
from pathlib import Path

import pytest

THIS = Path(__file__).resolve()
ROOT = THIS.parents[2]
TEXT_SUFFIXES = {".py", ".sh", ".md", ".sql", ".yml", ".yaml", ".toml", ".ini", ".cfg", ".txt", ".env", ".json",
                 ".html", ".js", ".css", ".rs", ".cnf", ".conf", ""}
# the team's material that sits beside a checkout: never part of a clone
OUTSIDE_NAMES = re.compile(r"shared/(?:spec|datasets|research|hooks)\b|(?<![\w.])/work/|\bROOT\.parent\b")
CLIMB = re.compile(r"(?<![\w.])((?:\.\./)+|(?:\.\.)(?=[\"'`\s)]|$))")
PARENTS = re.compile(r"__file__\)?(?:\.resolve\(\))?\.parents\[(\d+)\]")
MD_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def _files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.split("\n")
    files = []
    for rel in filter(None, out):
        p = ROOT / rel
        if p.is_file() and not p.is_symlink() and p.suffix in TEXT_SUFFIXES and p.stat().st_size < 2_000_000:
            files.append(p)
    return files


FILES = _files()


def _text(p: Path) -> str | None:
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None


def _where(p: Path, text: str, pos: int) -> str:
    return f"{p.relative_to(ROOT)}:{text.count(chr(10), 0, pos) + 1}"


def test_files_are_listed():
    names = {p.relative_to(ROOT).as_posix() for p in FILES}
    assert "docs/spec/database-design.md" in names and "README.md" in names


def test_no_path_names_material_outside_the_repository():
    bad = []
    for p in FILES:
        text = _text(p)
        if text is None or p == THIS:
            continue
        bad += [f"{_where(p, text, m.start())}: {m.group(0)!r}" for m in OUTSIDE_NAMES.finditer(text)]
    assert not bad, "paths outside the repository:\n" + "\n".join(bad)


def test_relative_paths_stay_inside_the_repository():
    bad = []
    for p in FILES:
        text = _text(p)
        if text is None or p == THIS:
            continue
        depth = len(p.relative_to(ROOT).parts) - 1  # how many `..` lead from the file's folder to the root
        for m in CLIMB.finditer(text):
            ups = m.group(1).count("..")
            if ups > depth:
                bad.append(f"{_where(p, text, m.start())}: {ups} x '..' from depth {depth}")
        if p.suffix == ".py":
            for m in PARENTS.finditer(text):
                if int(m.group(1)) > depth:
                    bad.append(f"{_where(p, text, m.start())}: parents[{m.group(1)}] from depth {depth}")
    assert not bad, "relative paths leaving the repository:\n" + "\n".join(bad)


def test_markdown_links_resolve_inside_the_repository():
    bad = []
    for p in FILES:
        if p.suffix != ".md":
            continue
        text = _text(p) or ""
        for m in MD_LINK.finditer(text):
            target = m.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            resolved = (p.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                bad.append(f"{_where(p, text, m.start())}: {target}")
    assert not bad, "Markdown links that do not resolve inside the repository:\n" + "\n".join(bad)


@pytest.mark.parametrize("name", ["bms", "chess", "ecommerce", "foodmart", "mushroom", "retail_synthutil"])
def test_benchmark_datasets_are_in_the_repository(name):
    path = ROOT / "bench" / "data" / "huim" / f"{name}.txt.gz"
    with gzip.open(path, "rt") as f:
        first = f.readline()
    items, tu, utils = first.strip().split(":")
    assert len(items.split()) == len(utils.split()) and int(tu) == sum(map(int, utils.split()))


def test_the_check_catches_an_escape():
    """The patterns above do find what they are meant to (so a green run means something)."""
    assert OUTSIDE_NAMES.search("see ../shared/spec/database-design.md")
    assert OUTSIDE_NAMES.search('DATASETS = ROOT.parent / "x"')
    assert [m.group(1) for m in CLIMB.finditer('open("../../x")')] == ["../../"]
    assert PARENTS.search('Path(__file__).resolve().parents[3] / "x"').group(1) == "3"
