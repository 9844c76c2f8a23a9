# The two commands of the README: `make run` (the main job) and `make test`.
PY := .venv/bin/python
REQUEST ?= Transcribe examples/meeting.wav, summarise it and read the summary aloud.

.PHONY: setup run test bench up lint
setup:
	@bash scripts/setup.sh

run: setup
	.venv/bin/hgq ask "$(REQUEST)" --file examples/meeting.wav

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/dag_bench.py

up: setup
	.venv/bin/hgq up

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy
