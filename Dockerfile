# Multi-stage: a static musl binary on an empty base with CA certificates. Runs as root (GitHub requires it for
# container actions) and sets no WORKDIR (the runner mounts the workspace as the working directory).
FROM rust:1.95-alpine3.22 AS build
# Build tools only; the final image holds none of them. Versions follow the pinned alpine base.
# hadolint ignore=DL3018
RUN apk add --no-cache musl-dev perl make cmake
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin deploy-action \
    && cp target/release/deploy-action /deploy-action

FROM alpine:3.22 AS certs
# hadolint ignore=DL3018
RUN apk add --no-cache ca-certificates

FROM scratch
COPY --from=certs /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /deploy-action /usr/local/bin/deploy-action
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
ENTRYPOINT ["/usr/local/bin/deploy-action"]
