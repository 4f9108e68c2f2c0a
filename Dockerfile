# One image for every crs-alert service (worker, scheduler, migrate; api later).
# The service is chosen by the compose `command`, e.g. ["crs-alert", "worker"].
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first (pinned == in pyproject.toml; requirements.lock, when present, pins the
# transitive ones), so source edits do not reinstall them.
COPY pyproject.toml README.md* requirements.lock* ./
COPY worker ./worker
RUN if [ -f requirements.lock ]; then \
        pip install --constraint requirements.lock . ; \
    else \
        pip install . ; \
    fi \
    && rm -rf /root/.cache

COPY config ./config
COPY docker/entrypoint.sh /usr/local/bin/crs-entrypoint

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin crs \
    && mkdir -p /app/var \
    && chown crs /app/var \
    && chmod 0755 /usr/local/bin/crs-entrypoint

USER crs

ENTRYPOINT ["/usr/local/bin/crs-entrypoint"]
CMD ["crs-alert", "--help"]
