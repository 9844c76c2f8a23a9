"""The README stays true: its configuration table and the one Settings object name the same variables."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices

from shared.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _env_names() -> dict[str, str]:
    """Every environment variable Settings reads -> its field."""
    prefix = Settings.model_config.get("env_prefix", "")
    names: dict[str, str] = {}
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, str):
            names[alias.upper()] = field_name
        elif isinstance(alias, AliasChoices):
            names.update({str(choice).upper(): field_name for choice in alias.choices})
        else:
            names[f"{prefix}{field_name}".upper()] = field_name
    return names


def _documented() -> set[str]:
    table = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}


def test_every_documented_variable_is_a_setting() -> None:
    documented, known = _documented(), _env_names()
    assert len(documented) > 40
    assert sorted(documented - set(known)) == []


def test_every_setting_is_documented() -> None:
    documented = _documented()
    undocumented = sorted({field for env, field in _env_names().items() if env in documented} ^ set(Settings.model_fields))
    assert undocumented == [], f"Settings fields missing from the README's configuration table: {undocumented}"


def test_every_hgq_command_the_readme_shows_exists() -> None:
    from click.testing import CliRunner

    from planner_service.cli import main

    shown = set(re.findall(r"(?:`|\.venv/bin/)hgq ([a-z][a-z-]*)", README))
    assert {"ask", "up", "worker", "eval", "models"} <= shown
    for command in sorted(shown):
        result = CliRunner().invoke(main, [command, "--help"])
        assert result.exit_code == 0, f"README shows `hgq {command}`, which does not exist: {result.output}"
