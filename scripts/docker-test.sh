#!/usr/bin/env bash
# The Docker runtime against a real engine, run by scripts/test.sh.
#
# No image registry is reachable here, so: start Debian's dockerd if no engine answers (bridge-less,
# without iptables), build a Debian base image with debootstrap + docker import, build stand-in images
# for MariaDB, Redis, Kafka (tansu), nginx and Prometheus from it, then let payctl build the project's
# images (with the binaries cargo built on the host, --prebuilt) and run the stack on the host network:
# up → status → smoke → cb test → reconcile → chaos → down --volumes, and check that nothing labelled is
# left.
# Where the engine cannot start, it says so in one line and skips.
set -euo pipefail
cd "$(dirname "$0")/.."

skip() {
  echo "docker runtime test skipped: $*"
  exit 0
}

target="${CARGO_TARGET_DIR:-$PWD/target}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/payctl"
mkdir -p "$cache"

if ! command -v dockerd > /dev/null 2>&1 || ! command -v debootstrap > /dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || skip "docker.io and debootstrap are not installed (sudo apt-get install -y docker.io debootstrap)"
  echo "installing: docker.io debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io debootstrap > /dev/null \
    || { apt-get update -q > /dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io debootstrap > /dev/null; } \
    || skip "could not install docker.io and debootstrap"
fi

engine_answers() { docker version --format '{{.Server.Version}}' > /dev/null 2>&1; }

started_engine=""
cleanup() {
  if [ -n "$started_engine" ]; then
    kill "$started_engine" 2> /dev/null || true
    wait "$started_engine" 2> /dev/null || true
  fi
}
trap cleanup EXIT

if ! engine_answers; then
  [ "$(id -u)" = 0 ] || skip "no Docker engine answers and starting dockerd needs root"
  dockerd --bridge=none --iptables=false > "$cache/dockerd.log" 2>&1 &
  started_engine=$!
  for _ in $(seq 60); do
    engine_answers && break
    kill -0 "$started_engine" 2> /dev/null || break
    sleep 0.5
  done
  engine_answers || skip "dockerd did not start ($(tail -1 "$cache/dockerd.log"))"
fi
echo "docker engine $(docker version --format '{{.Server.Version}}')"

export DOCKER_BUILDKIT=0 # the engine's classic builder; no buildx here
base=payctl-test/base:bookworm
if ! docker image inspect "$base" > /dev/null 2>&1; then
  echo "building $base (debootstrap --variant=minbase bookworm)"
  rootfs=$(mktemp -d)
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian > "$cache/debootstrap.log" 2>&1 \
    || { rm -rf "$rootfs"; echo "debootstrap failed: $(tail -1 "$cache/debootstrap.log")"; exit 1; }
  tar -C "$rootfs" -c . | docker import - "$base" > /dev/null
  rm -rf "$rootfs"
fi

# Stand-ins for the upstream images (compose/testing), built once per engine; kafka carries this
# machine's tansu, so it is rebuilt when that binary changes.
tansu_bin=$(command -v tansu || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu")
context=$(mktemp -d)
cp compose/testing/* "$context/"
cp "$tansu_bin" "$context/tansu"
tansu_sum=$(sha256sum "$context/tansu" | cut -c1-12)
for image in mariadb redis nginx prometheus kafka; do
  tag="payctl-test/$image:1"
  [ "$image" = kafka ] && tag="payctl-test/kafka:$tansu_sum"
  if ! docker image inspect "$tag" > /dev/null 2>&1; then
    echo "building stand-in $tag"
    docker build -q --network host --build-arg "BASE_IMAGE=$base" -t "$tag" -f "$context/$image.Dockerfile" "$context" \
      > "$cache/build-$image.log" 2>&1 || { tail -20 "$cache/build-$image.log"; exit 1; }
  fi
done
rm -rf "$context"

cargo build -q -p payctl -p pay-server -p pay-consumer
payctl="$target/debug/payctl"

# A stack of its own: its own project label, ports and state directory.
export PAYCTL_HOME
PAYCTL_HOME=$(mktemp -d)
export PAYCTL_PROJECT=payctl-ci
export PAYCTL_MARIADB_PORT=23306 PAYCTL_REDIS_PORT=26379 PAYCTL_KAFKA_PORT=29092 PAYCTL_INGEST_PORT=28080
export PAYCTL_CONSUMER_PORT=28091 PAYCTL_PROMETHEUS_PORT=29090 PAYCTL_GATEWAY_PORT=28088
export PAYCTL_API_URL=http://127.0.0.1:28088/api
export PAYCTL_MARIADB_IMAGE=payctl-test/mariadb:1 PAYCTL_REDIS_IMAGE=payctl-test/redis:1
export PAYCTL_KAFKA_IMAGE="payctl-test/kafka:$tansu_sum"
export PAYCTL_SERVER_IMAGE=payctl-ci/pay-server:test PAYCTL_CONSUMER_IMAGE=payctl-ci/pay-consumer:test
export PAYCTL_GATEWAY_IMAGE=payctl-ci/gateway:test PAYCTL_PROMETHEUS_IMAGE=payctl-ci/prometheus:test

left_behind() {
  local filter="label=com.payctl.project=$PAYCTL_PROJECT"
  echo "$(docker ps -aq --filter "$filter" | wc -l) containers, $(docker network ls -q --filter "$filter" | wc -l) networks, $(docker volume ls -q --filter "$filter" | wc -l) volumes"
}

# Another project on the same ports must fail before it starts anything, and say who holds the port.
refused_naming_container() {
  local out
  if out=$(PAYCTL_PROJECT=payctl-other PAYCTL_HOME="$PAYCTL_HOME/other" "$payctl" up --runtime docker --network host 2>&1); then
    echo "second stack started"
    return 1
  fi
  echo "$out" | tail -1
  grep -q "in use by container payctl-ci-mariadb" <<< "$out"
}

# Another project whose MariaDB image cannot be had (no registry here): four attempts, then an error,
# and not one container.
pull_fails_cleanly() {
  local out
  if out=$(PAYCTL_PROJECT=payctl-bad PAYCTL_HOME="$PAYCTL_HOME/bad" PAYCTL_MARIADB_IMAGE=payctl-test/missing:1 \
    "$payctl" up --runtime docker --network host --without grafana 2>&1); then
    echo "up succeeded without its image"
    return 1
  fi
  echo "$out" | tail -1
  grep -q "attempt 4/4" <<< "$out" && grep -q "pulling payctl-test/missing:1 failed 4 times" <<< "$out" \
    && [ -z "$(docker ps -aq --filter label=com.payctl.project=payctl-bad)" ]
}

# Redis from an image that exits at once: up stops there and shows that container's log.
crash_shows_log() {
  local out rc=0
  if out=$(PAYCTL_PROJECT=payctl-bad PAYCTL_HOME="$PAYCTL_HOME/bad" PAYCTL_REDIS_IMAGE="$PAYCTL_KAFKA_IMAGE" \
    "$payctl" up --runtime docker --network host --without grafana 2>&1); then
    echo "up succeeded with a broken redis"
    rc=1
  fi
  echo "$out" | grep -A2 "payctl-bad-redis exited" || rc=1
  grep -q "unbound variable" <<< "$out" || rc=1
  PAYCTL_HOME="$PAYCTL_HOME/bad" "$payctl" down --volumes --yes > /dev/null 2>&1 || rc=1
  local filter="label=com.payctl.project=payctl-bad"
  [ -z "$(docker ps -aq --filter "$filter")$(docker volume ls -q --filter "$filter")" ] || rc=1
  return "$rc"
}

# A poison message reaches the DLQ through the Kafka and consumer containers.
dead_lettered() {
  "$payctl" dlq inject invalid-json || return 1
  for _ in $(seq 60); do
    "$payctl" dlq tail --json | grep -q InvalidJson && return 0
    sleep 0.5
  done
  "$payctl" dlq tail
  return 1
}

failed=0
step() {
  local name=$1
  shift
  local started=$SECONDS
  if "$@"; then
    echo "docker: ok   $name ($((SECONDS - started))s)"
  else
    echo "docker: FAIL $name ($((SECONDS - started))s)"
    failed=1
  fi
}

step "payctl up --runtime docker --network host" "$payctl" up --runtime docker --network host --without grafana \
  --rebuild --prebuilt "$target/debug" --build-network host \
  --build-arg "RUNTIME_IMAGE=$base,NGINX_IMAGE=payctl-test/nginx:1,PROMETHEUS_IMAGE=payctl-test/prometheus:1"
if [ "$failed" = 0 ]; then
  step "status (every container healthy)" "$payctl" status
  step "status --json names the containers" bash -c "'$payctl' status --json | grep -q '\"container\": \"payctl-ci-kafka\"'"
  step "a second stack on the same ports is refused, naming the container" refused_naming_container
  step "smoke" "$payctl" smoke
  step "cb test (stops and starts the Kafka container)" "$payctl" cb test
  step "reconcile" "$payctl" reconcile
  step "chaos (docker kill and pause of containers under load, then the verdict)" \
    "$payctl" chaos --seed 3 --duration 45s --rate 20 --services ingest,kafka,mariadb
  step "dlq: poison is dead-lettered by the consumer container" dead_lettered
  # Generous p99: speed is measured by `payctl bench`, not asserted on a loaded CI machine.
  step "load (k6 through the gateway container, then reconcile)" "$payctl" load --rate 50 --duration 5s --p99-ms 2000
  step "logs ingest (from the container)" bash -c "'$payctl' logs ingest -n 100000 | grep -q 'pay-server listening'"
fi
step "down --volumes" "$payctl" down --volumes --yes
step "a missing image is pulled with retries, and nothing starts" pull_fails_cleanly
step "a container that exits: up fails with its log lines; down removes what started" crash_shows_log
left=$(left_behind)
if [ "$left" = "0 containers, 0 networks, 0 volumes" ]; then
  echo "docker: ok   nothing labelled $PAYCTL_PROJECT is left"
else
  echo "docker: FAIL left behind: $left"
  failed=1
  docker ps -aq --filter "label=com.payctl.project=$PAYCTL_PROJECT" | xargs -r docker rm -f > /dev/null
  docker volume ls -q --filter "label=com.payctl.project=$PAYCTL_PROJECT" | xargs -r docker volume rm > /dev/null
fi
rm -rf "$PAYCTL_HOME"
exit "$failed"
