# AmazonSender production image: gunicorn serving wsgi:app with gunicorn.conf.py.
#
#   docker build -t amazonsender .
#   docker run --rm --env-file .env amazonsender python -m amazonsender db upgrade
#   docker run -d --name amazonsender --env-file .env -p 127.0.0.1:3000:3000 \
#       --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges amazonsender
#
# Production mode only: no embedded Postgres, no .eml outbox. The container
# refuses to start and lists every missing or malformed setting. It writes
# only to /tmp (the workers' metrics and heartbeat files), so it runs with a
# read-only root file system.
#
# The base image. Pin it by digest, so that a build never takes a changed
# image under the same tag: look the digest up where Docker Hub is reachable,
#   docker buildx imagetools inspect python:3.11-slim     (its "Digest:" line)
# then build with --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:<digest>,
# or write that here and let Dependabot or Renovate keep it current. It is not
# pinned in this file because it was written without access to Docker Hub: a
# digest copied from anywhere else could not be checked.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    APP_ENV=production \
    PORT=3000

# The service runs as this user (with a home directory for tools that want
# one); the code itself stays owned by root.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app

WORKDIR /app

# Production dependencies only (requirements-dev.txt is for `make run` and tests).
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY amazonsender/ ./amazonsender/
COPY sql/ ./sql/
COPY wsgi.py gunicorn.conf.py ./

USER app

EXPOSE 3000

# slim has no curl: ask /healthz with Python. A 503 (database unreachable) or
# no answer makes urlopen raise, so the check fails.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"]

# gunicorn reads ./gunicorn.conf.py (bind 0.0.0.0:$PORT, gthread workers).
# Leave BIND unset here: Docker forwards the published port to the
# container's own address, which a 127.0.0.1 bind would not answer on.
CMD ["gunicorn", "wsgi:app"]
