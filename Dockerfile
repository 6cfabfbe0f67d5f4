# The `weft` binary: `weft server` by default; `weft worker` and every other
# command work the same way (`docker run IMAGE worker`, `docker run IMAGE run …`).
#
#   docker build -t weft .
#   docker run -e WEFT_DB=postgres://… -p 8080:8080 weft
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# rust-toolchain.toml names the wasm32-wasip2 target the built-in connectors
# need; rustup adds it on the first cargo call.
RUN cargo build --release -p weft && cp target/release/weft /usr/local/bin/weft

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /var/lib/weft weft
COPY --from=build /usr/local/bin/weft /usr/local/bin/weft
USER weft
WORKDIR /var/lib/weft
ENV WEFT_LISTEN=0.0.0.0:8080 \
    WEFT_CACHE_DIR=/var/lib/weft/cache
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --retries=20 CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
ENTRYPOINT ["weft"]
CMD ["server"]
