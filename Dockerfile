# One image, five daemons. The UI is built with a Node that satisfies
# web-ui/package.json's engines (Debian bookworm's nodejs is 18, too old for
# Vite 8); Rust builds the daemons; the runtime is slim and runs them as uid
# 10001 (scripts/docker-entrypoint.sh hands it the data dir first).
FROM node:22-bookworm-slim AS ui
WORKDIR /src/web-ui
COPY web-ui/package.json web-ui/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web-ui/ ./
RUN npm run build

FROM rust:1.95-bookworm AS build
# cmake: the opus crate builds libopus (mediad's Opus for browser calls).
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --bins --workspace

FROM debian:bookworm-slim
# espeak-ng: mediad speaks voicemail greetings with it.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl espeak-ng \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /app gosip \
    && mkdir -p /app/data && chown gosip /app/data
WORKDIR /app
COPY --from=build /src/target/release/sipd /src/target/release/mediad /src/target/release/twiliod \
     /src/target/release/notifyd /src/target/release/webd /usr/local/bin/
COPY --from=ui /src/web-ui/dist /app/web
COPY scripts/docker-entrypoint.sh /usr/local/bin/gosip-entrypoint
ENV GOSIP_DATA_DIR=/app/data GOSIP_WEB_DIR=/app/web
VOLUME /app/data
# Starts as root only to give a host bind mount (./data, owned by whoever
# created it) to uid 10001 once; the daemon itself never runs as root.
ENTRYPOINT ["gosip-entrypoint"]
