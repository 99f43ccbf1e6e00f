# One image, five daemons. Build stage: Rust + Node; runtime: slim, non-root.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cd web-ui && npm ci --no-audit --no-fund && npm run build
RUN cargo build --release --bins --workspace

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /app gosip \
    && mkdir -p /app/data && chown gosip /app/data
WORKDIR /app
COPY --from=build /src/target/release/sipd /src/target/release/mediad /src/target/release/twiliod \
     /src/target/release/notifyd /src/target/release/webd /usr/local/bin/
COPY --from=build /src/web-ui/dist /app/web
USER gosip
ENV GOSIP_DATA_DIR=/app/data GOSIP_WEB_DIR=/app/web
VOLUME /app/data
