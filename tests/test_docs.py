"""The README and the pages under docs/: a short README that links out, and no broken relative link.

Every relative link of README.md and of every markdown page under docs/ must name a file or folder of the
repository, and its #anchor a heading of that page, as GitHub renders it (its heading slugs). Links to other
sites are not checked (no network).
"""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").rglob("*.md"))]

# [text](target) and ![alt](target), an optional "title" after the target; <a href="..."> and <img src="...">.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"<(?:a|img)\s[^>]*?(?:href|src)=\"([^\"]*)\"", re.IGNORECASE)
HTML_ANCHOR = re.compile(r"<a\s[^>]*?(?:name|id)=\"([^\"]*)\"", re.IGNORECASE)
FENCE = re.compile(r"^\s*(```|~~~)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")


def prose(text: str, keep_code: bool = False) -> list[tuple[int, str]]:
    """(line number, line) of the text outside fenced code blocks, inline code spans blanked out unless keep_code."""
    out, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if match:
            fence = None if fence == match.group(1) else (fence or match.group(1))
            continue
        if fence is None:
            out.append((number, line if keep_code else re.sub(r"(`+)(.+?)\1", lambda m: " " * len(m.group(0)), line)))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text in lower case, punctuation dropped, each space a hyphen.

    >>> slug("What `--trials 50` buys, and why the default grid has three learning rates")
    'what---trials-50-buys-and-why-the-default-grid-has-three-learning-rates'
    >>> slug("For the runner: `plan_round`")
    'for-the-runner-plan_round'
    >>> slug("Intervals about new test images: coverage against a known population")
    'intervals-about-new-test-images-coverage-against-a-known-population'
    >>> slug("**Bold** and [a link](x.md) × 2")
    'bold-and-a-link--2'
    """
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link or image: its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"(?<!\w)_+|_+(?!\w)", "", text)  # _emphasis_, not snake_case
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every #anchor a page has: its headings' slugs (a repeated one gets -1, -2, ...) and explicit HTML anchors."""
    seen: dict[str, int] = {}
    found = set()
    text = page.read_text(encoding="utf-8")
    for _, line in prose(text, keep_code=True):  # a heading's slug keeps its code's text
        match = re.match(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(HTML_ANCHOR.findall(line))
    return found


def links(page: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link of a page, outside code."""
    found = []
    for number, line in prose(page.read_text(encoding="utf-8")):
        found += [(number, target) for target in LINK.findall(line) + HTML_LINK.findall(line)]
    return found


def broken_links(page: Path, root: Path = REPO) -> list[str]:
    """What is wrong with each relative link of a page: a missing file, a path outside the repository, an unknown anchor."""
    problems = []
    for number, target in links(page):
        if not target or SCHEME.match(target):
            continue  # another site (not checked) or an empty link
        path_part, _, anchor = target.partition("#")
        where = f"{page.relative_to(root)}:{number}: {target}"
        resolved = (page.parent / path_part).resolve() if path_part else page
        if root.resolve() not in (resolved, *resolved.parents):
            problems.append(f"{where} (outside the repository)")
        elif not resolved.exists():
            problems.append(f"{where} (no such file)")
        elif anchor:
            if resolved.suffix.lower() != ".md" or resolved.is_dir():
                problems.append(f"{where} (an anchor into a file that is not a markdown page)")
            elif anchor not in anchors(resolved):
                problems.append(f"{where} (no heading with this anchor in {resolved.relative_to(root.resolve())})")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_the_checker_finds_broken_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## What `--trials 50` buys\n\ntext\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\n## Quick start\n\n"
        "[ok](docs/page.md) [ok](docs/page.md#what---trials-50-buys) [ok](#quick-start) [ok](docs/)\n"
        "[site](https://example.org/x#y) `[in code](missing.md)`\n"
        "```\n[in a fence](missing.md)\n```\n"
        "[gone](docs/missing.md) [bad anchor](docs/page.md#what-trials-50-buys) [here](#nowhere)\n"
        "![figure](docs/figure.png) [out](../elsewhere.md)\n"
    )
    problems = broken_links(readme, tmp_path)
    assert [p.split(": ", 1)[1].split(" (")[0] for p in problems] == [
        "docs/missing.md",
        "docs/page.md#what-trials-50-buys",
        "#nowhere",
        "docs/figure.png",
        "../elsewhere.md",
    ]


def test_repeated_headings_get_numbered_anchors(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Notes\n\n## Speed\n\n```\n# not a heading\n```\n\n## Speed\n")
    assert anchors(page) == {"notes", "speed", "speed-1"}


def test_readme_is_short_and_links_every_docs_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    linked = {target.partition("#")[0] for _, target in links(README)}
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f"docs/{page.name}" in linked, f"the README does not link {page.name}"


def test_readme_keeps_the_commands():
    text = README.read_text(encoding="utf-8")
    for command in ("```\nmake study\n```", "```\nmake test\n```", ".venv/bin/python -m study.run --trials 50"):
        assert command in text
    assert "`make test` is the test command" in text


@pytest.mark.parametrize("page", sorted((REPO / "docs").glob("*.md")), ids=lambda p: p.name)
def test_each_docs_page_says_what_it_is_for(page):
    """A title, then a paragraph of one or two sentences before anything else."""
    lines = page.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# ") and lines[1] == ""
    intro = " ".join(lines[2 : lines.index("", 2)])
    assert intro and not intro.startswith(("#", "|", "```", "-"))
    assert 1 <= len(re.findall(r"[.!?](?:\s|$)", intro)) <= 2, intro
