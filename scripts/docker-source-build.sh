#!/usr/bin/env bash
# By hand, not in CI (it compiles the whole workspace inside a container: about 20 minutes on 2 cores):
# the project's images built from source — compose/rust-service.Dockerfile's cargo-chef builder, not
# --prebuilt — then the stack on them: up, status, smoke, down --volumes.
#
# No image registry is reachable here, so the Rust image is a stand-in: the Debian base image that
# scripts/docker-test.sh builds, plus this machine's Rust toolchain, C toolchain and CA bundle. Run
# scripts/docker-test.sh once first (it builds the base and the service stand-ins); this script uses the
# engine the docker CLI finds (DOCKER_HOST, the context, or the default socket).
set -euo pipefail
export DOCKER_BUILDKIT=0 # the engine's classic builder, as payctl uses (no buildx here)
cd "$(dirname "$0")/.."

base=payctl-test/base:bookworm
rust=payctl-test/rust:1
docker image inspect "$base" > /dev/null 2>&1 \
  || { echo "no $base: run scripts/docker-test.sh first (it builds the stand-in images)"; exit 1; }
for image in mariadb redis nginx prometheus; do
  docker image inspect "payctl-test/$image:1" > /dev/null 2>&1 \
    || { echo "no payctl-test/$image:1: run scripts/docker-test.sh first"; exit 1; }
done
kafka=$(docker image ls --format '{{.Repository}}:{{.Tag}}' payctl-test/kafka | head -1)
[ -n "$kafka" ] || { echo "no payctl-test/kafka image: run scripts/docker-test.sh first"; exit 1; }

if ! docker image inspect "$rust" > /dev/null 2>&1; then
  echo "building $rust from $base and $(rustc --version)"
  context=$(mktemp -d)
  cp -a "$(rustc --print sysroot)" "$context/toolchain"
  cp /etc/ssl/certs/ca-certificates.crt "$context/"
  cat > "$context/Dockerfile" << DOCKERFILE
FROM $base
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    gcc g++ make perl pkg-config zlib1g-dev libc6-dev ca-certificates && rm -rf /var/lib/apt/lists/*
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY toolchain /usr/local/rust
ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:\$PATH CARGO_HOME=/usr/local/cargo
RUN cargo --version && rustc --version
DOCKERFILE
  docker build -q --network host -t "$rust" "$context"
  rm -rf "$context"
fi

export PAYCTL_HOME PAYCTL_PROJECT=payctl-src
PAYCTL_HOME=$(mktemp -d)
export PAYCTL_MARIADB_PORT=33306 PAYCTL_REDIS_PORT=36379 PAYCTL_KAFKA_PORT=39092 PAYCTL_INGEST_PORT=38080
export PAYCTL_CONSUMER_PORT=38091 PAYCTL_ACQUIRER_PORT=38095 PAYCTL_SETTLEMENT_PORT=38092 PAYCTL_PROMETHEUS_PORT=39090 PAYCTL_GATEWAY_PORT=38088
export PAYCTL_API_URL=http://127.0.0.1:38088/api
export PAYCTL_MARIADB_IMAGE=payctl-test/mariadb:1 PAYCTL_REDIS_IMAGE=payctl-test/redis:1 PAYCTL_KAFKA_IMAGE=$kafka
export PAYCTL_SERVER_IMAGE=payctl-src/pay-server:test PAYCTL_CONSUMER_IMAGE=payctl-src/pay-consumer:test
export PAYCTL_ACQUIRER_IMAGE=payctl-src/pay-acquirer:test PAYCTL_SETTLEMENT_IMAGE=payctl-src/pay-settlement:test
export PAYCTL_GATEWAY_IMAGE=payctl-src/gateway:test PAYCTL_PROMETHEUS_IMAGE=payctl-src/prometheus:test
cargo build -q -p payctl
payctl="${CARGO_TARGET_DIR:-target}/debug/payctl"

started=$SECONDS
"$payctl" up --runtime docker --network host --without grafana --rebuild --build-network host \
  --build-arg "RUNTIME_IMAGE=$base,RUST_IMAGE=$rust,NGINX_IMAGE=payctl-test/nginx:1,PROMETHEUS_IMAGE=payctl-test/prometheus:1"
echo "source build and up: $((SECONDS - started)) s"
status=0
"$payctl" status || status=1
"$payctl" smoke || status=1
"$payctl" version || status=1
# Nothing of the build in the shipped image: one binary, no sources, no target/.
for image in "$PAYCTL_SERVER_IMAGE" "$PAYCTL_CONSUMER_IMAGE" "$PAYCTL_ACQUIRER_IMAGE" "$PAYCTL_SETTLEMENT_IMAGE"; do
  docker image history --no-trunc --format '{{.CreatedBy}}' "$image" | grep -q 'cargo' \
    && { echo "$image has a cargo step in its history"; status=1; }
  docker run --rm --entrypoint sh "$image" -c '! ls /src /target 2> /dev/null' || status=1
  echo "$image: $(docker image inspect -f '{{.Size}}' "$image") bytes"
done
logs="${TMPDIR:-/tmp}/payctl-source-build-logs"
rm -rf "$logs" && cp -r "$PAYCTL_HOME/build" "$logs" && echo "build logs kept in $logs"
"$payctl" down --volumes --yes || status=1
rm -rf "$PAYCTL_HOME"
exit "$status"
