"""The documentation stays navigable: every markdown link in README.md and docs/ reaches a file (and,
for a markdown target, a heading), the results index fits on one screen, README.md stays a guide of
at most 20 KB, and no Python file cites a repository path that does not exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT

README_MAX_BYTES = 20_000
RESULTS_INDEX_MAX_LINES = 80

FENCE = re.compile(r"^(```|~~~).*?^\1", re.DOTALL | re.MULTILINE)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
# a cited document: a markdown path with a folder part, an upper-case *.md name (DESIGN.md), or any
# file under docs/ (output paths such as results/x.json or checkpoints/x.pt are not citations)
CITED = re.compile(
    r"(?<![\w./-])(/?(?:[\w.-]+/)+[\w.-]+\.md|[A-Z][A-Z0-9_]*\.md|docs/[\w./-]*[\w-])(?![\w/-])"
)


def tracked(pattern: str) -> list[Path]:
    """Files under version control (or, outside a git checkout, on disk) that match ``pattern``."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", pattern],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return sorted(ROOT / name for name in out if (ROOT / name).is_file())
    except (OSError, subprocess.CalledProcessError):
        return sorted(p for p in ROOT.glob(f"**/{pattern}") if ".venv" not in p.parts)


MARKDOWN = [ROOT / "README.md", *tracked("docs/*.md"), *tracked("docs/**/*.md")]
MARKDOWN = sorted(set(MARKDOWN))
PYTHON = [p for p in tracked("*.py") if p != Path(__file__).resolve()]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]{2,}|`", "", heading).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of the markdown file at ``path`` (repeats get GitHub's -1, -2 suffixes)."""
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text())):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(path: Path) -> list[str]:
    """The links of the markdown file at ``path`` whose file (or heading) does not exist."""
    bad = []
    for target in LINK.findall(FENCE.sub("", path.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            bad.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    return bad


def test_the_pages_exist():
    assert (ROOT / "docs" / "results" / "README.md").is_file()
    assert len(MARKDOWN) >= 5, MARKDOWN
    assert PYTHON, "no Python files found"


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_markdown_links_reach_their_targets(path: Path):
    assert broken_links(path) == []


def test_results_index_fits_on_one_screen():
    lines = (ROOT / "docs" / "results" / "README.md").read_text().splitlines()
    assert len(lines) <= RESULTS_INDEX_MAX_LINES, f"{len(lines)} lines > {RESULTS_INDEX_MAX_LINES}"


def test_readme_is_a_guide_not_a_results_page():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes > {README_MAX_BYTES}"


def test_python_files_cite_only_existing_repository_paths():
    missing = []
    for path in PYTHON:
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            for cited in CITED.findall(line):
                if cited.startswith("/") or not (ROOT / cited).exists():
                    missing.append(f"{path.relative_to(ROOT)}:{lineno}: {cited}")
    assert missing == []


def test_the_checks_catch_what_they_should(tmp_path: Path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Title\n\n## A `code` heading, with: punctuation\n")
    page.write_text(
        "[ok](other.md#a-code-heading-with-punctuation) [web](https://example.org/x.md)\n"
        "[gone](missing.md) [bad anchor](other.md#nope)\n```\n[in code](ignored.md)\n```\n"
    )
    tmp_root = ROOT
    try:
        globals()["ROOT"] = tmp_path
        bad = broken_links(page)
    finally:
        globals()["ROOT"] = tmp_root
    assert len(bad) == 2 and bad[0].startswith("missing.md") and bad[1].startswith("other.md#nope"), bad
    assert CITED.findall("see DESIGN.md and docs/results/x.md, not out.md or f'{a}.md'") == [
        "DESIGN.md",
        "docs/results/x.md",
    ]
    assert CITED.findall("Follows /work/shared/methods/sheet.md;") == ["/work/shared/methods/sheet.md"]
    assert CITED.findall("writes results/x.json and docs/img/y.png") == ["docs/img/y.png"]
