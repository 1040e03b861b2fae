# vodkms: one image, one binary; the command picks the server.
#   docker build -t vodkms .
#   docker run vodkms kms serve --listen 0.0.0.0:8200      (see docker-compose.yml)

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY kms/Cargo.toml kms/Cargo.toml
COPY broker/Cargo.toml broker/Cargo.toml
COPY hls/Cargo.toml hls/Cargo.toml
RUN mkdir -p src kms/src broker/src hls/src \
 && echo 'fn main() {}' > src/main.rs \
 && for c in kms broker hls; do echo '' > $c/src/lib.rs; done \
 && cargo build --release --locked --bin vodkms \
 && rm -rf src kms/src broker/src hls/src
COPY . .
# Make sure the real sources are newer than the placeholder build.
RUN touch src/main.rs kms/src/lib.rs broker/src/lib.rs hls/src/lib.rs \
 && cargo build --release --locked --bin vodkms \
 && cp target/release/vodkms /vodkms

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin vodkms
COPY --from=build /vodkms /usr/local/bin/vodkms
USER 10001:10001
EXPOSE 8200 8300
ENTRYPOINT ["/usr/local/bin/vodkms"]
CMD ["kms", "serve", "--listen", "0.0.0.0:8200"]
