# Build stage: compile the server in release mode.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The pages and the browser client are compiled into the binary.
COPY web ./web
COPY clients/js/rendezvous.js ./clients/js/rendezvous.js
COPY benches ./benches
# The load generator and the matchbox client tests are members of the
# workspace: cargo reads their manifests even though only the server is built.
COPY bench ./bench
COPY tests-matchbox ./tests-matchbox
RUN cargo build --release --bin rendezvous

# Run stage: the binary (web pages included), nothing else. For HTTPS, mount
# a certificate and set RENDEZVOUS_TLS_CERT and RENDEZVOUS_TLS_KEY.
FROM debian:bookworm-slim
RUN useradd --system --home /app rendezvous
WORKDIR /app
COPY --from=build /src/target/release/rendezvous /usr/local/bin/rendezvous
USER rendezvous
ENV RENDEZVOUS_LISTEN=0.0.0.0:8080 \
    RENDEZVOUS_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q '200 OK' <&3"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/rendezvous"]
