#!/usr/bin/env bash
# The Docker runtime against a real engine, run by scripts/test.sh.
#
# No image registry is reachable here, so: start Debian's dockerd if no engine answers (bridge-less,
# without iptables), build a Debian base image with debootstrap + docker import, build stand-in images
# for MariaDB, Redis, Kafka (tansu), nginx and Prometheus from it, then let payctl build the project's
# images (with the binaries cargo built on the host, --prebuilt) and run the stack on the host network:
# up → status → smoke → cb test → reconcile → chaos → scale 1 → 3 → 1 → Kafka recreated → state
# directory lost → down --volumes → foreign names refused, and check that nothing labelled is left.
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
# machine's tansu, so it is rebuilt when that binary or its Dockerfile changes.
tansu_bin=$(command -v tansu || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu")
context=$(mktemp -d)
cp compose/testing/* "$context/"
cp "$tansu_bin" "$context/tansu"
tansu_sum=$(cat "$context/tansu" "$context/kafka.Dockerfile" "$context/kafka-entrypoint.sh" | sha256sum | cut -c1-12)
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
  PAYCTL_HOME="$PAYCTL_HOME/bad" "$payctl" down --volumes > /dev/null 2>&1 || rc=1
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

# A container, a volume and a network with names of a stack that payctl did not create (no labels): up
# refuses each, naming it, before it starts anything, and leaves it as it was. A project of its own, so
# that the names are free and its refusal comes before any port check.
foreign_names_refused() (
  export PAYCTL_PROJECT=payctl-foreign PAYCTL_HOME="$PAYCTL_HOME/foreign"
  local out id rc=0 filter="label=com.payctl.project=payctl-foreign"
  id=$(docker create --name payctl-foreign-redis "$base" sleep 1000)
  if out=$("$payctl" up "${up_flags[@]}" 2>&1); then
    echo "up went on beside a foreign payctl-foreign-redis"
    rc=1
  fi
  echo "$out" | tail -1
  grep -q "a container named payctl-foreign-redis exists that payctl did not create" <<< "$out" || rc=1
  [ "$(docker inspect -f '{{.Id}} {{.State.Status}}' payctl-foreign-redis)" = "$id created" ] || rc=1
  docker rm "$id" > /dev/null || rc=1
  docker volume create payctl-foreign-kafka > /dev/null
  if out=$("$payctl" up "${up_flags[@]}" 2>&1); then
    echo "up went on with a foreign volume payctl-foreign-kafka"
    rc=1
  fi
  echo "$out" | tail -1
  grep -q "a volume named payctl-foreign-kafka exists that payctl did not create" <<< "$out" || rc=1
  [ -z "$(docker ps -aq --filter "$filter")$(docker volume ls -q --filter "$filter")" ] || rc=1
  # Whatever a failed refusal started goes first (down finds it by its label), then the foreign volume,
  # which must still be there.
  "$payctl" down --volumes --project payctl-foreign > /dev/null 2>&1 || true
  docker volume rm payctl-foreign-kafka > /dev/null || rc=1
  # The same for a network named like the project, where containers would meet on a bridge.
  if docker network create payctl-foreign > /dev/null 2>&1; then
    if out=$("$payctl" up --runtime docker --network bridge --without grafana 2>&1); then
      echo "up went on with a foreign network payctl-foreign"
      rc=1
    fi
    echo "$out" | tail -1
    grep -q "a network named payctl-foreign exists that payctl did not create" <<< "$out" || rc=1
    [ -z "$(docker ps -aq --filter "$filter")$(docker volume ls -q --filter "$filter")" ] || rc=1
    "$payctl" down --volumes --project payctl-foreign > /dev/null 2>&1 || true
    docker network rm payctl-foreign > /dev/null || rc=1
  else
    echo "  (this engine creates no network: the network case is not checked)"
  fi
  return "$rc"
)

# MariaDB takes as many connections as natively (a few API instances' pools exhaust the default 151).
max_connections() {
  local n
  n=$(docker exec "$PAYCTL_PROJECT-mariadb" mariadb -uroot -p"$(cat "$PAYCTL_HOME/secrets/db-root-password")" \
    -N -e 'SELECT @@max_connections')
  echo "  max_connections=$n"
  [ "$n" = 1000 ]
}

api_containers() {
  docker ps --filter "label=com.payctl.project=$PAYCTL_PROJECT" --format '{{.Label "com.payctl.service"}}' \
    | grep -cE '^ingest(-[0-9]+)?$' || true
}

prometheus_api_targets() {
  curl -sf "http://127.0.0.1:$PAYCTL_PROMETHEUS_PORT/api/v1/targets?state=active" \
    | python3 -c 'import json, sys; print(sum(t["labels"]["job"] == "ingest" for t in json.load(sys.stdin)["data"]["activeTargets"]))'
}

# 30 requests through the gateway: none fails there (502/504: an instance it should not route to), and
# each of the n instances got some (an instance started by this scale has no other requests).
gateway_balances_over() {
  local n=$1 i port codes metrics
  codes=$(for i in $(seq 30); do curl -s -o /dev/null -w '%{http_code}\n' "$PAYCTL_API_URL/payments/scale-probe-$i"; done)
  if grep -qvE '^[1-4][0-9][0-9]$' <<< "$codes"; then
    echo "  the gateway failed requests: $(sort <<< "$codes" | uniq -c | tr '\n' ' ')"
    return 1
  fi
  for i in $(seq 0 $((n - 1))); do
    port=$((PAYCTL_INGEST_PORT + i))
    # Read whole first: grep -q would leave curl writing into a closed pipe (pipefail).
    metrics=$(curl -s "http://127.0.0.1:$port/metrics")
    grep -q 'http_requests_total{.*route="/payments/{id}"' <<< "$metrics" \
      || { echo "  no request reached the instance on 127.0.0.1:$port"; return 1; }
  done
}

# up --scale on the running stack, 1 → 3 → 1: as many API containers, the gateway balances over them
# and Prometheus scrapes them; what scaling down leaves out is removed.
scale_follows() {
  local n containers targets rc=0
  for n in 3 1; do
    if ! "$payctl" up "${up_flags[@]}" --scale "ingest=$n" > "$cache/scale.log" 2>&1; then
      tail -20 "$cache/scale.log"
      return 1
    fi
    containers=$(api_containers)
    targets=$(prometheus_api_targets)
    echo "  ingest=$n: $containers API containers, Prometheus scrapes $targets"
    [ "$containers" = "$n" ] && [ "$targets" = "$n" ] || rc=1
    gateway_balances_over "$n" || rc=1
    "$payctl" smoke > /dev/null || { echo "  smoke failed with ingest=$n"; rc=1; }
  done
  return "$rc"
}

# Kafka's image declares VOLUMEs (anonymous volumes besides ours): recreating the container twice (stopped,
# then up) leaves no volume behind.
kafka_recreated_without_leaks() {
  local name="$PAYCTL_PROJECT-kafka" before after id anonymous leaked i
  before=$(docker volume ls -qf dangling=true | sort)
  for i in 1 2; do
    id=$(docker inspect -f '{{.Id}}' "$name")
    anonymous=$(docker inspect -f '{{range .Mounts}}{{if ne .Name "'"$name"'"}}{{.Name}} {{end}}{{end}}' "$name" | wc -w)
    [ "$anonymous" -ge 1 ] || { echo "  $name has no anonymous volume: this test proves nothing"; return 1; }
    docker stop "$name" > /dev/null
    if ! "$payctl" up "${up_flags[@]}" > "$cache/recreate.log" 2>&1; then
      tail -20 "$cache/recreate.log"
      return 1
    fi
    [ "$(docker inspect -f '{{.Id}}' "$name")" != "$id" ] || { echo "  $name was not recreated"; return 1; }
  done
  after=$(docker volume ls -qf dangling=true | sort)
  leaked=$(comm -13 <(echo "$before") <(echo "$after") | grep -c . || true)
  echo "  $anonymous anonymous volume(s) per kafka container, $leaked left behind"
  [ "$leaked" = 0 ]
}

# The state directory is lost while the volumes stay (down, then rm -rf .payctl): up makes new secrets,
# refuses MariaDB's volume initialised with the old ones before it starts anything, and says what to do;
# what it says (down --volumes --project) works without the state directory.
state_directory_lost() {
  local out rc=0 filter="label=com.payctl.project=$PAYCTL_PROJECT"
  "$payctl" down > /dev/null 2>&1 || return 1
  rm -rf "$PAYCTL_HOME"
  if out=$("$payctl" up "${up_flags[@]}" 2>&1); then
    echo "  up started on volumes initialised with other secrets"
    rc=1
  fi
  echo "$out" | tail -1
  grep -q "the volume $PAYCTL_PROJECT-mariadb was initialised with other credentials" <<< "$out" || rc=1
  grep -q "payctl down --volumes --project $PAYCTL_PROJECT" <<< "$out" || rc=1
  [ -z "$(docker ps -aq --filter "$filter")" ] || { echo "  up started containers"; rc=1; }
  rm -rf "$PAYCTL_HOME"
  "$payctl" down --volumes --project "$PAYCTL_PROJECT" > /dev/null || rc=1
  [ -z "$(docker volume ls -q --filter "$filter")" ] || { echo "  volumes left: $(left_behind)"; rc=1; }
  return "$rc"
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

up_flags=(--runtime docker --network host --without grafana --prebuilt "$target/debug" --build-network host
  --build-arg "RUNTIME_IMAGE=$base,NGINX_IMAGE=payctl-test/nginx:1,PROMETHEUS_IMAGE=payctl-test/prometheus:1")
step "payctl up --runtime docker --network host" "$payctl" up "${up_flags[@]}" --rebuild
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
  step "load (k6 through the gateway container, then reconcile)" "$payctl" load --rate 50 --duration 5s
  step "logs ingest (from the container)" bash -c "'$payctl' logs ingest -n 100000 | grep -q 'pay-server listening'"
  step "mariadb runs with --max-connections=1000" max_connections
  step "up --scale ingest=3, then 1, on the running stack: gateway and Prometheus follow" scale_follows
  step "kafka recreated twice: no volume left behind" kafka_recreated_without_leaks
  step "state directory lost: up refuses the volume, down --volumes --project removes it" state_directory_lost
fi
step "down --volumes" "$payctl" down --volumes
step "names of a stack held by a foreign container, volume or network: up refuses, leaves them" foreign_names_refused
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
