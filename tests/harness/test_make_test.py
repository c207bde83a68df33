"""`make test` runs every test folder: the unit folders on every core, the rest after."""

from __future__ import annotations

import re

from hscale_testkit import ROOT


def make_list(name: str) -> set[str]:
    text = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{name}\s*=\s*(.+)$", text, re.MULTILINE)
    assert match, f"{name} is not set in the Makefile"
    return set(match.group(1).split())


def test_every_test_folder_is_in_exactly_one_of_the_two_runs() -> None:
    unit, stack = make_list("UNIT_TESTS"), make_list("STACK_TESTS")
    folders = {f"tests/{d.name}" for d in (ROOT / "tests").iterdir() if any(d.glob("test_*.py"))}
    assert unit | stack == folders
    assert not unit & stack
