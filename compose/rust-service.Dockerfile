# pay-server and pay-consumer: one Dockerfile, the SERVICE build argument picks the binary.
#
# Stages, in the order the classic builder runs them (it builds every stage up to the target, so the
# stage that needs no Rust toolchain comes before the one that does):
#   runtime  - the small image both ship in: Debian slim, a non-root user, a HEALTHCHECK on /ready
#   prebuilt - runtime + a binary built on the host (`payctl up --runtime docker --prebuilt DIR`, CI)
#   build    - compiles the workspace in the Rust image
#   release  - runtime + the binary from `build` (the default target: `docker build`, `docker compose`)
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-bookworm

FROM ${RUNTIME_IMAGE} AS runtime
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin payctl
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
# the build context it sends.
COPY compose/prebuilt/ /opt/payctl/
RUN ln -sf "/opt/payctl/${SERVICE}" /usr/local/bin/service
USER 10001

FROM ${RUST_IMAGE} AS build
ARG SERVICE=pay-server
# The commit the binary reports (build/git_commit.rs; the context has no .git). payctl passes it.
ARG PAYCTL_GIT_COMMIT=
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p "${SERVICE}" && cp "target/release/${SERVICE}" /service

FROM runtime AS release
COPY --from=build /service /usr/local/bin/service
