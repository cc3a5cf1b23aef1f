# Torghut image: `torghut serve` on port 8181 (argocd/applications/torghut/knative-service.yaml).
# Two stages: the builder turns the source into a wheel and installs it with its pinned runtime
# dependencies into /opt/venv; the runtime stage copies only that venv and runs as non-root.
# The Alembic migrations are package data (torghut/db/migrations), so they ship inside the
# wheel; `serve` brings the schema to head on start.

# Both stages must use the same image: the venv's interpreter is a symlink into it. Pinned by
# digest (a tag moves under you); tests/unit/test_manifests.py checks that every FROM is. The
# digest is the one public registries record for python:3.11-slim-bookworm; it was not pulled
# from the machine that wrote it (no registry access there), so the first image build confirms
# it. Refresh: `docker buildx imagetools inspect python:3.11-slim-bookworm`.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel is built from, so that edits to tests or docs reuse the cached layers.
COPY pyproject.toml README.md ./
COPY src ./src
# The commit the image is built from, for torghut_build_info (`--build-arg GIT_COMMIT=$(git
# rev-parse HEAD)`); package data, so the running process finds it beside its code.
ARG GIT_COMMIT=""
RUN if [ -n "$GIT_COMMIT" ]; then printf '%s\n' "$GIT_COMMIT" > src/torghut/BUILD_COMMIT; fi \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip wheel --no-deps --wheel-dir /dist . \
 && /opt/venv/bin/pip install /dist/torghut-*.whl
# Fail the build, not the first start-up, if package data went missing from the wheel.
RUN /opt/venv/bin/python -c "\
from importlib.resources import files; \
versions = files('torghut.db') / 'migrations' / 'versions'; \
assert (files('torghut.db') / 'migrations' / 'env.py').is_file(), 'alembic env.py missing'; \
assert any(p.name[:1].isdigit() and p.name.endswith('.py') for p in versions.iterdir()), 'migrations missing'; \
assert (files('torghut.trading.llm') / 'prompt_templates' / 'system_v1.txt').is_file(), 'prompt missing'"

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="torghut" \
      org.opencontainers.image.description="Trading service: signals, risk, LLM review through Jangar, broker execution, audit trail"
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TORGHUT_PORT=8181
# A fixed numeric uid/gid, so that Kubernetes' runAsNonRoot can verify it (the manifest
# pins runAsUser 10001 to match).
RUN groupadd --system --gid 10001 torghut \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin torghut \
 && mkdir /app && chown 10001:10001 /app
COPY --from=builder /opt/venv /opt/venv
# Writable for `docker run ... demo` (its SQLite file); in the cluster the root filesystem is
# read-only and DB_DSN points at PostgreSQL.
WORKDIR /app
USER 10001:10001
EXPOSE 8181
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TORGHUT_PORT', '8181'), timeout=3)"]
ENTRYPOINT ["torghut"]
CMD ["serve"]
