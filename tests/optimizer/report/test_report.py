"""The report end to end: a twin-filled store → an HTML file that needs no network, opened
in real headless Chromium, where every plot must have rendered."""

from __future__ import annotations

import re
from pathlib import Path

from tests.optimizer.report.chromium import chromium, distinct_colours, full_page_png, png_size
from tests.optimizer.report.conftest import fill_store, twin_engine
from wattwise.optimizer.report.html import NO_CAPS, NO_COOLING, NO_FLEET_DATA, NO_MODELS
from wattwise.optimizer.report.write import write_report
from wattwise.optimizer.service.engine import Engine

EXPECTED_PLOTS = {"fleet-power", "power-model-nvidia-h100-80gb-hbm3", "caps", "cooling"}
RESOURCE_REFERENCE = re.compile(r"""(src|href|url|@import)\s*[=(]?\s*["']?\s*(https?:)?//""", re.I)

PLOTS_JS = """
return Array.from(document.querySelectorAll('figure.plot svg, figure.plot img')).map(e => {
  const box = e.getBoundingClientRect();
  const decoded = e.tagName.toLowerCase() !== 'img' || (e.complete && e.naturalWidth > 0);
  return {name: e.getAttribute('data-plot'), width: box.width, height: box.height, decoded};
});
"""


def test_report_is_self_contained_and_every_plot_renders_in_chromium(
    engine: Engine, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    write_report(engine, 3600.0, out)
    page = out.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    assert not RESOURCE_REFERENCE.search(page)
    assert "<script" not in page and "<link" not in page
    # The page says nothing it cannot know: the store does not say its data is real.
    assert " real " not in page and "need n)" not in page

    with chromium(tmp_path / "profile") as browser:
        browser.get(out.as_uri())
        plots = browser.execute_script(PLOTS_JS)
        fetched = browser.execute_script("return performance.getEntriesByType('resource').length")
        plot_pngs = [e.screenshot_as_png for e in browser.find_elements("css selector", "svg")]
        page_png = full_page_png(browser)
    (tmp_path / "report.png").write_bytes(page_png)

    assert {p["name"] for p in plots} == EXPECTED_PLOTS
    assert all(p["width"] > 300 and p["height"] > 150 and p["decoded"] for p in plots), plots
    assert fetched == 0, "the page fetched resources"
    # A plot that failed to draw is blank or one flat colour; a drawn one has axes, text,
    # lines and fills in many anti-aliased shades.
    assert len(plot_pngs) == len(EXPECTED_PLOTS)
    assert all(distinct_colours(png) > 50 for png in plot_pngs)
    width, height = png_size(page_png)
    assert width >= 1000 and height > 2000, "the screenshot is not of the whole page"
    assert distinct_colours(page_png) > 200


def test_report_without_cooling_data_says_so_instead_of_an_empty_plot(tmp_path: Path) -> None:
    gpus_only = fill_store(tmp_path / "gpus.sqlite", keep=lambda r: r.measurement == "gpu")
    out = tmp_path / "report.html"
    for engine in twin_engine(gpus_only):
        write_report(engine, 3600.0, out)
    page = out.read_text(encoding="utf-8")
    assert NO_COOLING in page
    assert 'data-plot="cooling"' not in page
    assert 'data-plot="fleet-power"' in page and 'data-plot="caps"' in page
    assert 'Node energy over the window (BMC)</th><td class="num">n/a' in page


def test_report_of_an_empty_store_explains_every_section_in_words(tmp_path: Path) -> None:
    empty = fill_store(tmp_path / "empty.sqlite", keep=lambda r: False)
    out = tmp_path / "report.html"
    for engine in twin_engine(empty):
        write_report(engine, 3600.0, out)
    page = out.read_text(encoding="utf-8")
    assert "<svg" not in page
    for words in (NO_FLEET_DATA, NO_MODELS, NO_CAPS, NO_COOLING):
        assert words in page
