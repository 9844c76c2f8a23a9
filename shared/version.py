"""hgq's version: the one source (pyproject.toml reads it; `hgq --version` and the API print it)."""

VERSION = "0.1.0"
