"""How each group of ``wattwise`` sub-commands is built, so that all read alike."""

from __future__ import annotations

from typing import Any

import typer


def command_group(**options: Any) -> typer.Typer:
    """A Typer app for a group of ``wattwise`` sub-commands (``options`` go to Typer).

    Help is plain text, as the top-level command's is: Typer's rich markup would read a
    help text's ``[budgets]`` or ``[--scope …]`` as a style and drop it, and rich costs
    about 0.1 s to import. No shell-completion options: they would install completion
    for the group alone, under a program name that is not ``wattwise``.
    """
    return typer.Typer(rich_markup_mode=None, add_completion=False, **options)
