# Margin Watcher in a container: `watcher run` as a non-root user, its SQLite database on a volume, /health as the
# health check. README, "Running the daemon":
#   docker build -t margin-watcher .
#   docker run -d --name margin-watcher --restart on-failure -v margin-watcher:/data \
#     -v "$PWD/my.toml:/config/config.toml:ro" --env-file secrets.env -p 127.0.0.1:8765:8765 margin-watcher
# Inside the container the API must bind 0.0.0.0 to be reachable through -p, and the watcher refuses a non-loopback
# bind without a token: in my.toml set [api] host = "0.0.0.0" and token = { env = "MW_API_TOKEN" }, and put
# MW_API_TOKEN in secrets.env; the health check sends it. (Without -p, the default loopback bind needs no token.)

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY abis ./abis
COPY protocols ./protocols
COPY watcher ./watcher
RUN python -m venv /opt/margin-watcher && /opt/margin-watcher/bin/pip install /src

FROM python:3.11-slim
ENV PATH=/opt/margin-watcher/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MARGIN_WATCHER_DB=/data/watcher.db
COPY --from=build /opt/margin-watcher /opt/margin-watcher
# a fixed uid, so a bind-mounted /data can be chowned to it on the host
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin watcher \
    && mkdir -p /data /config \
    && chown watcher:watcher /data
# MARGIN_WATCHER_DB puts the database here, whatever the config's storage.path says
VOLUME ["/data"]
EXPOSE 8765
USER watcher
WORKDIR /data
# slim has no curl; 200 from /health is healthy (503: the database cannot be read). Another api.port: change 8765.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; t = os.environ.get('MW_API_TOKEN'); u.urlopen(u.Request('http://127.0.0.1:8765/health', headers={'Authorization': 'Bearer ' + t} if t else {}), timeout=4)"]
ENTRYPOINT ["watcher"]
CMD ["run", "--config", "/config/config.toml"]
