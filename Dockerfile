# One image for every service; the command chooses which one runs:
#
#   docker run -p 8000:8000 IMAGE                 the gateway (default; reads PORT itself)
#   docker run IMAGE python -m asr_worker         likewise llm_worker, tts_worker
#   docker run -p 8000:8000 IMAGE voice-agent up  everything in one process
#
# Used by compose.yaml (local) and render.yaml / render.free.yaml (Render, runtime: docker).
# The gateway takes PORT from the environment (Render injects it), so the command needs
# no "${PORT}": an exec-form CMD would never expand it anyway.

# --- builder: compilers, dependencies in a venv, the project as a wheel ---------------
FROM python:3.11-slim AS builder

# Compilers only for dependencies that ship no wheel for the target platform (most do).
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies first: this layer is rebuilt when pyproject.toml changes, not on code edits.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(deps))" > requirements.txt \
    && pip install -r requirements.txt

# Then the code (only the packages that pyproject.toml ships), built into a wheel.
COPY README.md ./
COPY shared ./shared
COPY gateway ./gateway
COPY asr_worker ./asr_worker
COPY llm_worker ./llm_worker
COPY tts_worker ./tts_worker
RUN pip wheel --no-deps --wheel-dir /dist .

# --- runtime: no compilers, non-root ------------------------------------------------
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH \
    HOST=0.0.0.0 \
    PORT=8000

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app

# Same base image and path in both stages, so the venv copies over as is (cached layer).
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /dist /tmp/dist
RUN pip install --no-deps /tmp/dist/*.whl && rm -rf /tmp/dist

USER app
WORKDIR /home/app
EXPOSE 8000

# No HEALTHCHECK here: workers run from this image too and serve no HTTP. The gateway's
# check (/health) is declared in compose.yaml and render.yaml.
CMD ["python", "-m", "gateway"]
