"""The documentation stays true: the README is a short front door whose links resolve, the configuration
table (docs/configuration.md) and the one Settings object name the same variables, and every `hgq`
command the README or docs/ shows exists."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices

from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README_PATH = ROOT / "README.md"
README = README_PATH.read_text()
DOCS = sorted((ROOT / "docs").glob("*.md"))
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
EXPECTED_DOCS = {"architecture.md", "configuration.md", "http-api.md", "models.md", "scaling.md", "monitoring.md",
                 "benchmarks.md"}
MAX_README_LINES = 150

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)


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
    assert "## Configuration\n" in CONFIGURATION, "docs/configuration.md lost its `## Configuration` heading"
    table = CONFIGURATION.split("## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}


def test_every_documented_variable_is_a_setting() -> None:
    documented, known = _documented(), _env_names()
    assert len(documented) > 40
    assert sorted(documented - set(known)) == []


def test_every_setting_is_documented() -> None:
    documented = _documented()
    undocumented = sorted({field for env, field in _env_names().items() if env in documented} ^ set(Settings.model_fields))
    assert undocumented == [], f"Settings fields missing from docs/configuration.md's table: {undocumented}"


def test_every_hgq_command_the_docs_show_exists() -> None:
    import click
    from click.testing import CliRunner

    from planner_service.cli import main

    pattern = re.compile(r"(?:`|\.venv/bin/)hgq ([a-z][a-z-]*)(?: ([a-z][a-z0-9-]*))?")
    assert {"ask", "up", "worker", "eval", "models"} <= {cmd for cmd, _ in pattern.findall(README)}
    shown: dict[tuple[str, str], str] = {}
    for path in [README_PATH, *DOCS]:
        for cmd, word in pattern.findall(path.read_text()):
            shown.setdefault((cmd, word), path.relative_to(ROOT).as_posix())
    ctx = click.Context(main)
    for (cmd, word), where in sorted(shown.items()):
        command = main.get_command(ctx, cmd)
        assert command is not None, f"{where} shows `hgq {cmd}`, which does not exist"
        args = [cmd]
        if isinstance(command, click.Group) and word:
            assert command.get_command(ctx, word) is not None, f"{where} shows `hgq {cmd} {word}`, which does not exist"
            args.append(word)
        result = CliRunner().invoke(main, [*args, "--help"])
        assert result.exit_code == 0, f"{where} shows `hgq {' '.join(args)}`, whose --help fails: {result.output}"


def test_readme_is_a_short_front_door() -> None:
    lines = len(README.splitlines())
    assert lines < MAX_README_LINES, f"README.md has {lines} lines; move detail into docs/"


def test_the_readme_links_every_docs_file() -> None:
    assert {path.name for path in DOCS} >= EXPECTED_DOCS
    linked = {(README_PATH.parent / target.split("#", 1)[0]).resolve() for target in _LINK.findall(README)}
    unlinked = [path.relative_to(ROOT).as_posix() for path in DOCS if path.resolve() not in linked]
    assert unlinked == [], f"README.md's Documentation list misses {unlinked}"


def _anchors(path: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation other than '-' dropped, spaces -> '-'."""
    text = _FENCE.sub("", path.read_text())
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_every_relative_link_resolves() -> None:
    broken = []
    for path in [README_PATH, *DOCS]:
        for target in _LINK.findall(_FENCE.sub("", path.read_text())):
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
                continue  # http:, https:, mailto: ...
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(ROOT).as_posix()} -> {target}"
            if not dest.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{where} (no such heading)")
    assert broken == [], f"broken links: {broken}"
