# forestwatch operational image: runs the daily update (discover -> update states ->
# refresh reports) on the project folder mounted at /data. See README "Operations".
# It also serves the run's WMS (MapServer 8 from Debian behind `forestwatch serve`), see
# README "Publishing":
#   docker run -d --name forestwatch-wms -p 8080:8080 -v /srv/forestwatch:/data \
#     --entrypoint forestwatch forestwatch serve --config config/config.yaml --host 0.0.0.0
#   docker stop forestwatch-wms
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    NUMBA_CACHE_DIR=/data/.numba-cache

WORKDIR /app
# MapServer 8 (mapserv, for `forestwatch serve`), by the project's own install script
COPY deploy/install_mapserver.sh deploy/apt_install.sh ./deploy/
RUN bash deploy/install_mapserver.sh && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install -e .
COPY Snakefile ./
COPY rules ./rules
COPY config ./config
COPY envs ./envs
COPY profiles ./profiles

# /data holds config/, resources/ and results/ of the deployment (the working directory)
WORKDIR /data
EXPOSE 8080
ENTRYPOINT ["forestwatch", "daily"]
CMD ["--config", "config/config.yaml", "--cores", "2"]
