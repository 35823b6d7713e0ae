# syntax=docker/dockerfile:1.7
# The url-shortener image: a cached dependency layer (cargo-chef), a release
# build, and a distroless final stage running as a non-root user.
#   docker build -t url-shortener .
#   docker run url-shortener            # serve (the default)
#   docker run url-shortener migrate    # apply migrations and exit
# Size (docs/deployment.md#the-image): the binary, stripped, measured 5.5 MB
# (5,478,360 bytes; 29.3 MB unstripped with the profile's line tables); the
# image is estimated at about 30 MB unpacked (distroless/cc-debian12's Debian
# packages ~25 MB + the binary). build.yml writes the real size, pushed and
# unpacked, to its job summary.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
WORKDIR /app
RUN cargo install cargo-chef --locked --version 0.1.78
# The image's binary is stripped (symbols and the release profile's line
# tables: 29.3 -> 5.5 MB). Panic messages keep their file:line, which is data,
# not debug info. Set for both the cook and the build so the cached
# dependency layer matches. Local `make build` keeps the line tables.
ENV CARGO_PROFILE_RELEASE_STRIP=true

# The dependency graph alone: changes only when a Cargo.toml or the lock file does.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
# Dependencies: this layer is reused until the recipe changes.
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin url-shortener
COPY . .
RUN cargo build --release --locked --bin url-shortener \
    && cp target/release/url-shortener /usr/local/bin/url-shortener

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG VERSION=dev
LABEL org.opencontainers.image.title="url-shortener" \
      org.opencontainers.image.description="URL-shortener API on hyper, PostgreSQL and Valkey" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=builder /usr/local/bin/url-shortener /usr/local/bin/url-shortener
# 65532 is distroless's "nonroot"; numeric so Kubernetes' runAsNonRoot can check it.
USER 65532:65532
EXPOSE 5000 9100
ENTRYPOINT ["/usr/local/bin/url-shortener"]
CMD ["serve"]
