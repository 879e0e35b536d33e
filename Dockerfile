# Multi-stage: a static musl binary on an empty base with CA certificates. Runs as root (GitHub requires it for
# container actions) and sets no WORKDIR (the runner mounts the workspace as the working directory).
FROM rust:1.95-alpine3.22 AS build
RUN apk add --no-cache musl-dev=1.2.5-r10 perl=5.40.3-r0 make=4.4.1-r3 cmake=3.31.7-r1 clang20=20.1.8-r0
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin deploy-action \
    && cp target/release/deploy-action /deploy-action

FROM alpine:3.22 AS certs
RUN apk add --no-cache ca-certificates=20250911-r0

FROM scratch
COPY --from=certs /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /deploy-action /usr/local/bin/deploy-action
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
ENTRYPOINT ["/usr/local/bin/deploy-action"]
