# syntax=docker/dockerfile:1
# contacts-api: build with `docker build -t contacts-api .`, or run with `docker compose up --build`.

ARG RUST_VERSION=1.95

# ---- build ----
FROM rust:${RUST_VERSION}-slim-bookworm AS builder
# diesel's postgres backend links libpq.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app

# Dependencies first, against placeholder sources, so this layer is reused until Cargo.toml,
# Cargo.lock or build.rs change.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir -p src migrations \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src migrations \
        target/release/contacts-api* \
        target/release/deps/contacts_api-* \
        target/release/deps/libcontacts_api-* \
        target/release/.fingerprint/contacts-api-*

# The crate itself; migrations are embedded into the binary at compile time.
COPY migrations ./migrations
COPY src ./src
# COPY keeps the context's modification times, which may predate the placeholder build.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && strip target/release/contacts-api

# ---- run ----
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app
COPY --from=builder /app/target/release/contacts-api /usr/local/bin/contacts-api
USER 10001:10001
ENV BIND_ADDR=0.0.0.0:8080 \
    RUST_LOG=info
EXPOSE 8080
# No HEALTHCHECK: the slim image has no HTTP client. Probe GET /healthz (liveness) and
# GET /readyz (readiness) from the orchestrator.
ENTRYPOINT ["/usr/local/bin/contacts-api"]
CMD ["serve"]
