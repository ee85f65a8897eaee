# The dynds service image: API (`dynds serve`) and worker (`dynds worker`) alike.
#   docker build -t dynds .
# torch comes from PyPI's default index (CPU+CUDA wheels for linux/x86_64); the worker service in
# docker-compose.yml reserves an NVIDIA GPU, which needs the NVIDIA container toolkit on the host.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DYNDS_HOME=/var/lib/dynds

# git: the reproducibility record reads the revision when the source is a checkout (it is not here: null).
RUN apt-get update \
    && apt-get install -y --no-install-recommends git curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /srv/dynds
# Dependencies first, in a layer of their own, so a source change does not reinstall torch: the list is
# pyproject.toml's [project].dependencies and its `service` extra, read here with tomllib (no second list
# to keep in step), installed with the exact releases of constraints.txt.
COPY pyproject.toml constraints.txt ./
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + p["optional-dependencies"]["service"]))' \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
# Then the sources, installed without touching the dependencies; the import check fails the build if a
# module the service loads (the Redis transport's included) is missing, from the installed copy (cwd /).
COPY README.md ./
COPY dynds ./dynds
COPY dynds_core ./dynds_core
COPY app ./app
COPY worker ./worker
COPY frontend ./frontend
RUN pip install --no-deps . \
    && cd / && python -c "import dynds.cli, app.main, worker.celery_app, worker.runner, kombu.transport.redis"
# The example specs, e.g. `docker compose exec api dynds train examples/synthetic.yaml`.
COPY examples ./examples

RUN useradd --system --create-home --home-dir /var/lib/dynds dynds
USER dynds
EXPOSE 8000
# Health checks live in docker-compose.yml: the same image runs the API and the (HTTP-less) worker.
CMD ["dynds", "serve", "--host", "0.0.0.0", "--port", "8000"]
