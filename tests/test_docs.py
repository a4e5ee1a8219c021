"""Every relative link in the docs resolves, and README.md stays a front door.

A link resolves when its file exists relative to the linking file and its
`#anchor`, if any, names a heading of the target under GitHub's rules: the
heading's text lowercased, punctuation other than hyphens and underscores
dropped, spaces turned into hyphens, and `-1`, `-2`, ... added to repeats.
"""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README_MAX_LINES = 300

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)"
)
_REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
_HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, mailto:, ...


def markdown_files():
    """README.md, CONTRIBUTING.md and every page of docs/."""
    return [
        REPO / "README.md",
        REPO / "CONTRIBUTING.md",
        *sorted(REPO.glob("docs/*.md")),
    ]


def _prose_lines(text):
    """(line number, line) outside fenced code blocks."""
    in_fence = None
    for number, line in enumerate(text.splitlines(), 1):
        fence = _FENCE.match(line)
        if fence:
            if in_fence is None:
                in_fence = fence.group(1)
            elif fence.group(1) == in_fence:
                in_fence = None
            continue
        if in_fence is None:
            yield number, line


def slug(heading):
    """GitHub's anchor for a heading's text."""
    text = _CODE_SPAN.sub(lambda match: match.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    """Every anchor a Markdown file defines: its headings' slugs, HTML anchors."""
    seen = {}
    found = set()
    for _, line in _prose_lines(path.read_text()):
        found.update(_HTML_ANCHOR.findall(line))
        heading = _HEADING.match(line)
        if not heading:
            continue
        base = slug(heading.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path):
    """(line number, target) of every link in a Markdown file, code left out."""
    for number, line in _prose_lines(path.read_text()):
        prose = _CODE_SPAN.sub("", line)
        for match in _INLINE_LINK.finditer(prose):
            yield number, match.group(1)
        reference = _REFERENCE_LINK.match(prose)
        if reference:
            yield number, reference.group(1)


def broken_links(path):
    """What is wrong with each relative link of `path`, one string per link."""
    problems = []
    for number, target in links(path):
        if not target or _EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.name}:{number}: {target}"
        if not linked.exists():
            problems.append(f"{where}: no such file {linked}")
        elif anchor:
            if linked.is_dir() or linked.suffix.lower() != ".md":
                problems.append(f"{where}: an anchor into a non-Markdown file")
            elif anchor not in anchors(linked):
                known = ", ".join(sorted(anchors(linked)))
                problems.append(f"{where}: no heading #{anchor}; known: {known}")
    return problems


@pytest.mark.parametrize(
    "path", markdown_files(), ids=lambda path: str(path.relative_to(REPO))
)
def test_every_relative_link_resolves(path):
    assert path.is_file()
    problems = broken_links(path)
    assert not problems, "\n".join(problems)


_FENCE_LINE = re.compile(r"^\s*(```|~~~)(.*)$")


def fence_problems(text):
    """Code fences that do not close where they look as if they close: a
    fence line with an info string (```python) inside an open block is
    shown as text of that block, and a block left open swallows the rest."""
    problems, opened = [], None
    for number, line in enumerate(text.splitlines(), 1):
        match = _FENCE_LINE.match(line)
        if not match:
            continue
        info = match.group(2).strip().strip("`~")
        if opened is None:
            opened = number
        elif info:
            problems.append(
                f"line {number}: {line.strip()!r} inside the block opened at line "
                f"{opened} (a closing fence has no info string)"
            )
        else:
            opened = None
    if opened is not None:
        problems.append(f"the block opened at line {opened} is never closed")
    return problems


@pytest.mark.parametrize(
    "path", markdown_files(), ids=lambda path: str(path.relative_to(REPO))
)
def test_code_blocks_close_where_they_look_closed(path):
    problems = fence_problems(path.read_text())
    assert not problems, f"{path.name}: " + "; ".join(problems)


def test_the_fence_check_finds_stray_fences():
    good = "text\n```python\nx = 1\n```\n\n```\nplain\n```\n"
    assert fence_problems(good) == []
    stray = "```python\n\n```python\nx = 1\n```\n"
    assert fence_problems(stray) == [
        "line 3: '```python' inside the block opened at line 1 (a closing fence "
        "has no info string)"
    ]
    assert fence_problems("```sh\nls\n") == [
        "the block opened at line 1 is never closed"
    ]


def test_the_docs_have_pages():
    pages = {path.name for path in REPO.glob("docs/*.md")}
    assert "README.md" in pages and len(pages) > 1


def test_the_docs_index_links_every_page():
    index = REPO / "docs" / "README.md"
    linked = {Path(target.partition("#")[0]).name for _, target in links(index)}
    pages = {path.name for path in REPO.glob("docs/*.md")} - {"README.md"}
    assert pages <= linked, f"docs/README.md does not link {sorted(pages - linked)}"


def test_readme_is_a_front_door():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) < README_MAX_LINES, (
        f"README.md has {len(lines)} lines; keep it under {README_MAX_LINES} "
        "and move the details into docs/"
    )


def test_slug_follows_github():
    assert slug("Tuning loss weights") == "tuning-loss-weights"
    assert slug("Why not `val_loss`") == "why-not-val_loss"
    assert slug("`keras-mtl serve`") == "keras-mtl-serve"
    assert slug("Several models, versions, labels, batching, metrics") == (
        "several-models-versions-labels-batching-metrics"
    )
    assert slug("Serving: keras-mtl serve (REST, gRPC) vs in-process") == (
        "serving-keras-mtl-serve-rest-grpc-vs-in-process"
    )


def test_the_link_checker_finds_broken_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text(
        "# A page\n\n## Same name\n\n## Same name\n\n```\n# not a heading\n```\n"
    )
    (tmp_path / "README.md").write_text(
        "# Front\n\n## Local part\n\n"
        "[fine](docs/page.md) [fine](docs/page.md#a-page) [fine](#local-part)\n"
        "[fine](docs/page.md#same-name-1) [skipped](https://example.com/x.md)\n"
        "[skipped](mailto:someone@example.com) `[in code](nowhere.md)`\n"
        "[gone](docs/missing.md)\n"
        "[bad anchor](docs/page.md#no-such-heading)\n"
        "[not a heading](docs/page.md#not-a-heading)\n"
        "[bad local anchor](#nowhere)\n"
        "\n```md\n[in a code block](nowhere.md)\n```\n"
        "[ref]: docs/also-missing.md\n"
    )
    problems = broken_links(tmp_path / "README.md")
    assert [problem.split(": ")[1] for problem in problems] == [
        "docs/missing.md",
        "docs/page.md#no-such-heading",
        "docs/page.md#not-a-heading",
        "#nowhere",
        "docs/also-missing.md",
    ]
    assert "no such file" in problems[0]
    assert "no heading #no-such-heading" in problems[1]
