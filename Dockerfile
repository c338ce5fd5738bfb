# The example programs (edge-gateway, edge-sensors) for docker-compose.yml.
# Build stage: the Swift toolchain and libmosquitto's headers; the Swift runtime is linked statically.
FROM swift:6.3-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmosquitto-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN swift build -c release --static-swift-stdlib --product edge-gateway \
    && swift build -c release --static-swift-stdlib --product edge-sensors \
    && cp .build/release/edge-gateway .build/release/edge-sensors /usr/local/bin/

# Run stage: libmosquitto, and bash + openssl for the one-shot `certs` service (scripts/make-certs.sh).
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmosquitto1 openssl ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/edge-gateway /usr/local/bin/edge-sensors /usr/local/bin/
USER nobody
