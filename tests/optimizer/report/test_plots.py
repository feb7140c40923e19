"""The figures as markup: inline-able SVG that references nothing outside the page."""

from __future__ import annotations

import re

from matplotlib.figure import Figure

from wattwise.optimizer.report.plots import caps_svg, to_svg


def _figure() -> Figure:
    fig = Figure(figsize=(3, 2))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], marker="o")
    return fig


def test_svg_has_no_prologue_namespace_or_metadata_urls() -> None:
    svg = to_svg(_figure(), "demo")
    assert svg.startswith('<svg data-plot="demo" ')
    assert "http" not in svg and "<?xml" not in svg and "<metadata" not in svg


def test_two_figures_on_one_page_share_no_element_ids() -> None:
    # identical figures are the worst case: unsalted, their clip paths and markers collide
    ids_a = set(re.findall(r'id="([^"]+)"', to_svg(_figure(), "a")))
    ids_b = set(re.findall(r'id="([^"]+)"', to_svg(_figure(), "b")))
    assert ids_a and ids_b and not ids_a & ids_b


def test_caps_plot_is_absent_when_every_gpu_was_refused() -> None:
    assert caps_svg(()) is None


def test_every_reference_inside_a_figure_still_finds_its_element() -> None:
    svg = to_svg(_figure(), "a")
    ids = set(re.findall(r'\bid="([^"]+)"', svg))
    referenced = set(re.findall(r'(?:url\(#|href="#)([^")]+)', svg))
    assert referenced and referenced <= ids
