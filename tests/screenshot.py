"""The pictures of a study's results page in docs/results.md, taken in headless Chromium (Debian's package, driven by
tests/browser.py beside this file): the top of the page (header and tables) and its first learning curves.

    .venv/bin/python tests/screenshot.py results/default/explorer.html docs/explorer-default

writes docs/explorer-default.png and docs/explorer-default-curves.png. Each picture is taken once the page has
drawn its tables and plots (waited for in the page, not guessed)."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from browser import CHROMIUM, in_browser  # beside this file: Python puts a script's folder on its path

READY = ("document.querySelectorAll('table.dataTable').length > 0 && "
         "document.querySelectorAll('.js-plotly-plot').length > 0")


def take(page_file: Path, stem: Path, width: int = 1400, height: int = 1000) -> list[Path]:
    """``stem``.png (the top of the page) and ``stem``-curves.png (its first learning-curve plot in view)."""
    if CHROMIUM is None:
        raise SystemExit("no chromium on PATH: apt-get install chromium")
    if not page_file.exists():
        raise SystemExit(f"{page_file} does not exist: build it with snakemake first")
    top, curves = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + "-curves.png")

    async def steps(page):
        await page.wait_until(READY)
        await page.screenshot(top, width, height)
        await page.evaluate("document.querySelector('[id^=curves-]').scrollIntoView()")
        await page.wait_until("document.querySelector('[id^=curves-]').getBoundingClientRect().top < 50")
        await page.screenshot(curves, width, height)

    stem.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        in_browser(page_file.resolve().as_uri(), Path(profile), steps)
    return [top, curves]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path, help="a study's explorer.html")
    parser.add_argument("stem", type=Path, help="where the pictures go, without .png")
    args = parser.parse_args()
    for path in take(args.page, args.stem):
        print(path)


if __name__ == "__main__":
    main()
