# forestwatch operational image: runs the daily update (discover -> update states ->
# refresh reports) on the project folder mounted at /data. See README "Operations".
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    NUMBA_CACHE_DIR=/data/.numba-cache

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install -e .
COPY Snakefile ./
COPY rules ./rules
COPY scripts ./scripts
COPY config ./config
COPY envs ./envs
COPY profiles ./profiles

# /data holds config/, resources/ and results/ of the deployment (the working directory)
WORKDIR /data
ENTRYPOINT ["forestwatch", "daily"]
CMD ["--config", "config/config.yaml", "--cores", "2"]
