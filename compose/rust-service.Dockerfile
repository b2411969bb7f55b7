# pay-server, pay-consumer, pay-settlement and pay-acquirer: one Dockerfile, the SERVICE build argument picks the binary.
#
# Stages, in the order the classic builder runs them (it builds every stage up to the target, so the
# stage that needs no Rust toolchain comes before the ones that do):
#   runtime  - the small image both ship in: Debian slim, a non-root user, a HEALTHCHECK on /ready
#   prebuilt - runtime + a binary built on the host (`payctl up --runtime docker --prebuilt DIR`, CI)
#   chef     - the Rust image with cargo-chef
#   planner  - the dependency recipe of the workspace (changes only when a Cargo.toml/Cargo.lock does)
#   builder  - dependencies compiled from the recipe in their own layer (cached across source changes),
#              then the binaries; SERVICE is not read here, so the services share it
#   release  - runtime + the one binary from `builder`, nothing else: no sources, no target/ (the
#              default target: `docker build`, `docker compose`)
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-bookworm

FROM ${RUNTIME_IMAGE} AS runtime
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin payctl \
    # pay-acquirer's data (a named volume copies this directory's owner when it is first mounted).
    && mkdir -p /var/lib/acquirer && chown 10001 /var/lib/acquirer
COPY compose/healthcheck.sh /usr/local/bin/healthcheck
# Listen on every interface inside the container; payctl and the compose file publish the port.
ENV APP_LISTEN=0.0.0.0:8080
USER 10001
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 CMD ["/usr/local/bin/healthcheck"]
ENTRYPOINT ["/usr/local/bin/service"]

FROM runtime AS prebuilt
ARG SERVICE=pay-server
USER root
# compose/prebuilt/ holds only a README in the repository; payctl puts the host-built binary there in
# the build context it sends (after checking its glibc needs against this image's glibc).
COPY compose/prebuilt/ /opt/payctl/
RUN ln -sf "/opt/payctl/${SERVICE}" /usr/local/bin/service
USER 10001

FROM ${RUST_IMAGE} AS chef
RUN cargo install cargo-chef --locked --version 0.1.71
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Every dependency of the two services (librdkafka's C build included) in this layer: rebuilt only
# when the recipe (a Cargo.toml or Cargo.lock) changes, not when a source file does. The same packages
# and flags as the build below, or their features differ and the build compiles every dependency again.
RUN cargo chef cook --release --locked --recipe-path recipe.json -p pay-server -p pay-consumer -p pay-settlement -p pay-acquirer
COPY . .
# The commit the binaries report (build/git_commit.rs; the context has no .git). payctl passes it;
# declared here so that a new commit does not invalidate the dependency layer above.
ARG PAYCTL_GIT_COMMIT=
RUN cargo build --release --locked -p pay-server -p pay-consumer -p pay-settlement -p pay-acquirer \
    && mkdir /out && cp target/release/pay-server target/release/pay-consumer target/release/pay-settlement \
       target/release/pay-acquirer /out/

FROM runtime AS release
ARG SERVICE=pay-server
COPY --from=builder /out/${SERVICE} /usr/local/bin/service
