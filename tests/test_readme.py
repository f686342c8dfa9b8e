"""The README and the pages of docs/ state the pipeline's results, and nothing else: every table in them names the
Markdown table it comes from (the first ``results/...md`` path of the paragraph before it), and each of its rows is a
row of that file, verbatim. The README stays a front door (at most 300 lines, linking every docs page), and no
relative link of these pages points at a file or heading that is not there."""
from __future__ import annotations

import re
from pathlib import Path

from workflow_helpers import REPO_ROOT

SOURCE = re.compile(r"`(results/[^`]+\.md)`")
# [text](target) and ![alt](target), with an optional "title"; the text holds no brackets in these pages
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
README_MAX_LINES = 300


def pages(root: Path) -> list[Path]:
    """The README and the docs pages it fronts (docs/dev holds working notes, not the project's documentation)."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def readme_tables(text: str) -> list[tuple[int, list[str], str | None]]:
    """(line number, rows, the file the paragraph before the table names) per Markdown table of ``text``."""
    lines, found, index = text.splitlines(), [], 0
    while index < len(lines):
        if not lines[index].startswith("|"):
            index += 1
            continue
        end = index
        while end < len(lines) and lines[end].startswith("|"):
            end += 1
        last = index - 1  # the paragraph before the table: back over blank lines, then to the blank line above it
        while last >= 0 and not lines[last].strip():
            last -= 1
        first = last
        while first > 0 and lines[first - 1].strip():
            first -= 1
        sources = SOURCE.findall("\n".join(lines[first:last + 1])) if last >= 0 else []
        found.append((index + 1, lines[index:end], sources[0] if sources else None))
        index = end
    return found


def untraced_rows(text: str, root: Path) -> list[str]:
    """What in ``text``'s tables does not come from the file the table names, one message per table."""
    problems = []
    for line, rows, source in readme_tables(text):
        if source is None:
            problems.append(f"line {line}: a table that names no results/...md file it comes from")
            continue
        written = set((root / source).read_text().splitlines()) if (root / source).exists() else set()
        missing = [row for row in rows if row not in written]
        if missing:
            problems.append(f"line {line}: {len(missing)} rows not in {source}, e.g. {missing[0]}")
    return problems


def prose(text: str) -> list[tuple[int, str]]:
    """(line number, line) of ``text`` outside fenced code blocks: a `# comment` in a block is no heading, and a
    link-like string in a block no link."""
    kept, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            kept.append((number, line))
    return kept


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives ``text``'s headings: lower case, punctuation dropped, spaces as hyphens, and a
    heading met again numbered (-1, -2, ...)."""
    found: set[str] = set()
    for _, line in prose(text):
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
        candidate, count = slug, 0
        while candidate in found:
            count += 1
            candidate = f"{slug}-{count}"
        found.add(candidate)
    return found


def broken_links(page: Path, root: Path) -> list[str]:
    """Each relative link or image of ``page`` whose file (or heading, after #) does not exist, one message each."""
    problems = []
    for number, line in prose(page.read_text()):
        for target in LINK.findall(line):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not this repository's to check
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(root)}:{number}: {target}"
            if not file.is_file() or not file.resolve().is_relative_to(root.resolve()):
                problems.append(f"{where}: no such file")
            elif anchor and (file.suffix != ".md" or anchor not in anchors(file.read_text())):
                problems.append(f"{where}: no heading #{anchor} in {file.relative_to(root.resolve())}")
    return problems


def unlinked_pages(root: Path) -> list[str]:
    """The docs pages (repository-relative) that the README links to nowhere."""
    readme = root / "README.md"
    linked = {(root / target.partition("#")[0]).resolve()
              for _, line in prose(readme.read_text()) for target in LINK.findall(line)}
    return [str(page.relative_to(root)) for page in pages(root)[1:] if page.resolve() not in linked]


def test_every_table_of_the_readme_and_docs_is_rows_of_the_table_file_it_names():
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme_tables(readme)) >= 1, "the README shows its headline results table"
    problems = [f"{page.relative_to(REPO_ROOT)}: {problem}"
                for page in pages(REPO_ROOT) for problem in untraced_rows(page.read_text(), REPO_ROOT)]
    assert problems == []


def test_the_readme_fits_on_a_few_screens_and_links_every_docs_page():
    lines = len((REPO_ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}): move detail to docs/"
    assert len(pages(REPO_ROOT)) > 1, "docs/ holds the README's detail"
    assert unlinked_pages(REPO_ROOT) == []


def test_every_relative_link_of_the_readme_and_docs_points_to_a_file_and_heading_that_exist():
    assert [problem for page in pages(REPO_ROOT) for problem in broken_links(page, REPO_ROOT)] == []


def test_a_number_typed_by_hand_or_a_table_without_its_source_is_found(tmp_path):
    (tmp_path / "results/x").mkdir(parents=True)
    (tmp_path / "results/x/t.md").write_text("| a | b |\n|---|---|\n| 1 | 2 |\n")
    cited = "**Results** (`results/x/t.md`).\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    assert untraced_rows(cited, tmp_path) == []
    assert untraced_rows(cited.replace("| 1 | 2 |", "| 1 | 3 |"), tmp_path) == [
        "line 3: 1 rows not in results/x/t.md, e.g. | 1 | 3 |"]
    assert untraced_rows("Typed in.\n\n| a | b |\n|---|---|\n", tmp_path) == [
        "line 3: a table that names no results/...md file it comes from"]


def test_a_broken_link_and_an_unlinked_docs_page_are_found(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "fig.png").write_bytes(b"")
    (tmp_path / "docs/a.md").write_text("# A page\n\n## Some: section\n\n[Back](../README.md), [up](#a-page).\n")
    (tmp_path / "docs/b.md").write_text("# B\n\n![gone](fig.png)\n")  # relative to docs/: there is no docs/fig.png
    (tmp_path / "README.md").write_text(
        "# R\n\n![f](fig.png) [a](docs/a.md#some-section) [web](https://example.org/x.md)\n\n"
        "```\n[in a code block](nowhere.md)\n```\n\n[missing](docs/c.md) [bad anchor](docs/a.md#no-such)\n")
    assert broken_links(tmp_path / "docs/a.md", tmp_path) == []
    assert broken_links(tmp_path / "docs/b.md", tmp_path) == ["docs/b.md:3: fig.png: no such file"]
    assert broken_links(tmp_path / "README.md", tmp_path) == [
        "README.md:9: docs/c.md: no such file",
        "README.md:9: docs/a.md#no-such: no heading #no-such in docs/a.md"]
    assert unlinked_pages(tmp_path) == ["docs/b.md"]
