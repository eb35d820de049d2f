"""The README is the operator's reference: it must name every setting the code reads."""

from __future__ import annotations

from hitl.settings import Settings

from .support import ROOT


def test_readme_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [
        f"HITL_{name.upper()}" for name in Settings.model_fields if f"`HITL_{name.upper()}`" not in readme
    ]
    assert not missing, f"README lacks {missing}"


def test_readme_quick_start_is_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick_start.strip().splitlines()]
    assert commands == ["make run", "make test"]
