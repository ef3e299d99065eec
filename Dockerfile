# Dispatch container image.
#
#   docker build -t dispatch:latest \
#     --build-arg VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)" \
#     --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
#
# Stages: `chef` (toolchain + cargo-chef from crates.io), `planner` (the
# dependency recipe), `builder` (dependencies first, cached while Cargo.toml
# and Cargo.lock do not change, then our code), `runtime` (Debian slim, glibc,
# CA certificates for Stripe, nothing else; TLS is rustls, so no OpenSSL).
# The build downloads from crates.io and Debian only.
#
# Podman/Buildah: add `--format docker`, or the HEALTHCHECK is dropped (the
# OCI image format has none). Behind a TLS-intercepting proxy the `chef`
# stage needs the proxy's CA to reach crates.io.
#
# Running it: see docs/operations.md. With no configuration at all it starts
# the embedded development setup (SQLite under /app/data, demo data).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM docker.io/library/rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
ARG CARGO_CHEF_VERSION=0.1.76
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}" \
    && rm -rf "${CARGO_HOME}/registry"
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only: this layer is reused until the recipe (manifests and
# lock file) changes.
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin dispatch
COPY . .
RUN cargo build --release --locked --bin dispatch \
    && install -m 0755 target/release/dispatch /usr/local/bin/dispatch \
    && /usr/local/bin/dispatch version

FROM docker.io/library/debian:${DEBIAN_RELEASE}-slim AS runtime
ARG VERSION=unknown
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""
ARG DEBIAN_RELEASE
LABEL org.opencontainers.image.title="dispatch" \
      org.opencontainers.image.description="Order-management backend for online shops: users, catalogue, orders, payments and durable jobs." \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="docker.io/library/debian:${DEBIAN_RELEASE}-slim"

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
    && groupadd --system --gid 10001 dispatch \
    && useradd --system --uid 10001 --gid dispatch --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin dispatch \
    && mkdir -p /app/data \
    && chown dispatch:dispatch /app/data

COPY --from=builder /usr/local/bin/dispatch /usr/local/bin/dispatch

WORKDIR /app
USER 10001:10001

# Listen on every interface inside the container (the binary's default,
# 127.0.0.1, would be unreachable from outside). DATA_DIR (./data = /app/data)
# only matters for the embedded SQLite setup.
ENV BIND_ADDR=0.0.0.0:3000
# mimalloc hands freed memory back to the system 1 s after the free by
# default, and only when it next runs, so a burst of password hashes
# (argon2id, 19 MiB each) stayed resident through the load that followed:
# with 0 the mixed-load peak fell from 133 to 75 MiB (docs/benchmarks.md,
# "Memory"). Read by the allocator at start, so it can only be set here.
ENV MIMALLOC_PURGE_DELAY=0

# 3000: the HTTP API (/metrics there only with METRICS_TOKEN). 9100:
# /metrics of api and worker processes, when METRICS_ADDR=0.0.0.0:9100 is set.
EXPOSE 3000 9100

# `dispatch healthcheck` GETs /health/ready on BIND_ADDR (no curl in the
# image): 0 on 2xx, 1 otherwise. Worker processes have no HTTP API; compose
# points theirs at the metrics address instead.
HEALTHCHECK --interval=15s --timeout=8s --start-period=30s --retries=3 \
    CMD ["dispatch", "healthcheck"]

# dispatch handles SIGTERM itself (graceful shutdown: in-flight requests,
# running jobs); give it more than JOB_SHUTDOWN_GRACE (20s) before SIGKILL.
STOPSIGNAL SIGTERM
ENTRYPOINT ["dispatch"]
CMD ["serve"]
