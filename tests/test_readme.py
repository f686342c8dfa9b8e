"""The README's results are the pipeline's: every table in it names the Markdown table it comes from (the first
``results/...md`` path of the paragraph before it), and each of its rows is a row of that file, verbatim."""
from __future__ import annotations

import re
from pathlib import Path

from workflow_helpers import REPO_ROOT

SOURCE = re.compile(r"`(results/[^`]+\.md)`")


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


def test_every_readme_table_is_rows_of_the_table_file_it_names():
    text = (REPO_ROOT / "README.md").read_text()
    assert len(readme_tables(text)) >= 3, "the README shows its results tables"
    assert untraced_rows(text, REPO_ROOT) == []


def test_a_number_typed_by_hand_or_a_table_without_its_source_is_found(tmp_path):
    (tmp_path / "results/x").mkdir(parents=True)
    (tmp_path / "results/x/t.md").write_text("| a | b |\n|---|---|\n| 1 | 2 |\n")
    cited = "**Results** (`results/x/t.md`).\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    assert untraced_rows(cited, tmp_path) == []
    assert untraced_rows(cited.replace("| 1 | 2 |", "| 1 | 3 |"), tmp_path) == [
        "line 3: 1 rows not in results/x/t.md, e.g. | 1 | 3 |"]
    assert untraced_rows("Typed in.\n\n| a | b |\n|---|---|\n", tmp_path) == [
        "line 3: a table that names no results/...md file it comes from"]
