#!/usr/bin/env bash
# The Docker runtime against a real engine, run by scripts/test.sh.
#
# No image registry is reachable here, so: start Debian's dockerd if no engine answers (bridge-less,
# without iptables) on a socket of its own, not the default one, and reach it the way a laptop with
# Docker Desktop or Colima is reached: through a Docker context in a temporary DOCKER_CONFIG (and once
# through DOCKER_HOST). Build a Debian base image with debootstrap + docker import, build stand-in images
# for MariaDB, Redis, Kafka (tansu), nginx and Prometheus from it, then let payctl build the project's
# images (with the binaries cargo built on the host, --prebuilt) and run the stack on the host network:
# up → status → smoke → a rebuilt pay-server reaches its container → cb test → reconcile → chaos → scale
# 1 → 3 → 1 → Kafka recreated → state directory lost → down --volumes → foreign names refused, and check
# that nothing labelled is left.
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

# The engine payctl must find by itself: never the default socket, so that reaching it proves the
# discovery (context, DOCKER_HOST) rather than the default.
unset DOCKER_HOST DOCKER_CONTEXT
default_host=unix:///var/run/docker.sock
engine_dir=/tmp/payctl-docker
engine_host="unix://$engine_dir/docker.sock"
engine_answers() { docker -H "$1" version --format '{{.Server.Version}}' > /dev/null 2>&1; }

started_engine=""
DOCKER_CONFIG=$(mktemp -d)
export DOCKER_CONFIG
cleanup() {
  if [ -n "$started_engine" ]; then
    kill "$started_engine" 2> /dev/null || true
    wait "$started_engine" 2> /dev/null || true
  fi
  rm -rf "$DOCKER_CONFIG"
}
trap cleanup EXIT

# A CA, a server certificate for 127.0.0.1 and a client certificate (DOCKER_CERT_PATH layout) in $1.
make_tls_certs() {
  local d=$1 key=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  rm -rf "$d" && mkdir -p "$d/client"
  openssl req -x509 "${key[@]}" -days 2 -subj /CN=payctl-test-ca -keyout "$d/ca-key.pem" -out "$d/ca.pem"
  openssl req "${key[@]}" -subj /CN=127.0.0.1 -keyout "$d/server-key.pem" -out "$d/server.csr"
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$d/server.ext"
  openssl x509 -req -days 2 -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" -CAcreateserial \
    -extfile "$d/server.ext" -out "$d/server-cert.pem"
  openssl req "${key[@]}" -subj /CN=payctl-test -keyout "$d/client/key.pem" -out "$d/client.csr"
  printf 'extendedKeyUsage=clientAuth\n' > "$d/client.ext"
  openssl x509 -req -days 2 -in "$d/client.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" -CAcreateserial \
    -extfile "$d/client.ext" -out "$d/client/cert.pem"
  cp "$d/ca.pem" "$d/client/ca.pem"
}

discovery_proven=yes
tls_port="" # the engine's TLS listener, when this script started the engine
if engine_answers "$engine_host"; then
  :
elif engine_answers "$default_host"; then
  # Someone else's engine on the default socket (one data root: a second dockerd cannot start).
  echo "note: an engine already answers on the default socket; it is used through the context, but this run does not prove the discovery"
  engine_host=$default_host
  discovery_proven=no
else
  [ "$(id -u)" = 0 ] || skip "no Docker engine answers and starting dockerd needs root"
  mkdir -p "$engine_dir"
  tls_port=23760
  make_tls_certs "$engine_dir/tls" > "$cache/tls.log" 2>&1 || { cat "$cache/tls.log"; exit 1; }
  dockerd -H "$engine_host" -H "tcp://127.0.0.1:$tls_port" --tlsverify --tlscacert "$engine_dir/tls/ca.pem" \
    --tlscert "$engine_dir/tls/server-cert.pem" --tlskey "$engine_dir/tls/server-key.pem" \
    --bridge=none --iptables=false > "$cache/dockerd.log" 2>&1 &
  started_engine=$!
  for _ in $(seq 60); do
    engine_answers "$engine_host" && break
    kill -0 "$started_engine" 2> /dev/null || break
    sleep 0.5
  done
  engine_answers "$engine_host" || skip "dockerd did not start ($(tail -1 "$cache/dockerd.log"))"
fi
# The context every docker and payctl command below goes through.
out=$(docker context create payctl-test --docker "host=$engine_host" 2>&1 && docker context use payctl-test 2>&1) \
  || { echo "$out"; exit 1; }
echo "docker engine $(docker version --format '{{.Server.Version}}') at $engine_host, through the context payctl-test"

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

# node for the gateway's Node stage: this machine's node and npm (the store needs node >= 20.19, newer
# than Debian 12's), rebuilt when that version changes.
node_image=""
if command -v node > /dev/null 2>&1 && command -v npm > /dev/null 2>&1; then
  node_image="payctl-test/node:$(node --version | tr -d v)"
  if ! docker image inspect "$node_image" > /dev/null 2>&1; then
    echo "building stand-in $node_image"
    context=$(mktemp -d)
    cp compose/testing/node.Dockerfile "$context/"
    cp "$(readlink -f "$(command -v node)")" "$context/node"
    cp -a "$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")" "$context/npm"
    cp /etc/ssl/certs/ca-certificates.crt "$context/" 2> /dev/null || : > "$context/ca-certificates.crt"
    docker build -q --network host --build-arg "BASE_IMAGE=$base" -t "$node_image" -f "$context/node.Dockerfile" "$context" \
      > "$cache/build-node.log" 2>&1 || { tail -20 "$cache/build-node.log"; exit 1; }
    rm -rf "$context"
  fi
fi

cargo build -q -p payctl -p pay-server -p pay-consumer -p pay-settlement -p pay-acquirer
payctl="$target/debug/payctl"
# How every up here builds and runs (the same arguments give the same images: no rebuild between ups).
up_args=(up --runtime docker --network host --without grafana --build-network host
  --build-arg "RUNTIME_IMAGE=$base,NGINX_IMAGE=payctl-test/nginx:1,PROMETHEUS_IMAGE=payctl-test/prometheus:1")
prebuilt=(--prebuilt "$target/debug")
# The same, as flags after `up`.
up_flags=("${up_args[@]:1}" "${prebuilt[@]}")

# A stack of its own: its own project label, ports and state directory.
export PAYCTL_HOME
PAYCTL_HOME=$(mktemp -d)
export PAYCTL_PROJECT=payctl-ci
export PAYCTL_MARIADB_PORT=23306 PAYCTL_REDIS_PORT=26379 PAYCTL_KAFKA_PORT=29092 PAYCTL_INGEST_PORT=28080
export PAYCTL_CONSUMER_PORT=28091 PAYCTL_ACQUIRER_PORT=28095 PAYCTL_SETTLEMENT_PORT=28092 PAYCTL_PROMETHEUS_PORT=29090 PAYCTL_GATEWAY_PORT=28088
export PAYCTL_API_URL=http://127.0.0.1:28088/api
export PAYCTL_MARIADB_IMAGE=payctl-test/mariadb:1 PAYCTL_REDIS_IMAGE=payctl-test/redis:1
export PAYCTL_KAFKA_IMAGE="payctl-test/kafka:$tansu_sum"
export PAYCTL_SERVER_IMAGE=payctl-ci/pay-server:test PAYCTL_CONSUMER_IMAGE=payctl-ci/pay-consumer:test
export PAYCTL_ACQUIRER_IMAGE=payctl-ci/pay-acquirer:test PAYCTL_SETTLEMENT_IMAGE=payctl-ci/pay-settlement:test
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
    "$payctl" "${up_args[@]}" "${prebuilt[@]}" 2>&1); then
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

# The first up: through the context, and it says so.
up_through_context() {
  local out rc=0
  out=$(mktemp)
  "$payctl" "${up_args[@]}" "${prebuilt[@]}" --rebuild 2>&1 | tee "$out" || rc=1
  grep -q "docker engine at $engine_host (Docker context 'payctl-test')" "$out" || { echo "not through the context"; rc=1; }
  rm -f "$out"
  return "$rc"
}

# Nothing configured, the default socket is dead: the engine is not found there by accident.
default_socket_is_dead() {
  [ "$discovery_proven" = yes ] || { echo "(skipped: an engine answers on the default socket)"; return 0; }
  ! engine_answers "$default_host"
}

# DOCKER_HOST alone (no context) reaches the same engine (status --json lists its containers; its exit
# status says whether they are healthy, which is not the question here).
through_docker_host() {
  local config out
  config=$(mktemp -d)
  out=$(DOCKER_CONFIG=$config DOCKER_HOST=$engine_host "$payctl" status --json 2>&1 || true)
  rm -rf "$config"
  grep -q '"container": "payctl-ci-ingest"' <<< "$out" || { echo "$out" | tail -3; return 1; }
}

# DOCKER_HOST=tcp:// with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH (the engine's TLS listener): the same
# engine; without the client certificate it does not answer.
through_tls_docker_host() {
  [ -n "$tls_port" ] || { echo "(skipped: the engine was not started by this test)"; return 0; }
  local config out rc=0 tls_host="tcp://127.0.0.1:$tls_port"
  config=$(mktemp -d)
  out=$(DOCKER_CONFIG=$config DOCKER_HOST=$tls_host DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$engine_dir/tls/client \
    "$payctl" status --json 2>&1 || true)
  grep -q '"container": "payctl-ci-ingest"' <<< "$out" || { echo "$out" | tail -3; rc=1; }
  out=$(DOCKER_CONFIG=$config DOCKER_HOST=$tls_host "$payctl" status 2>&1 || true)
  grep -q "does not answer at $tls_host (DOCKER_HOST)" <<< "$out" || { echo "without TLS: $out" | tail -3; rc=1; }
  rm -rf "$config"
  return "$rc"
}

# The stack saved as running on another engine (another engine ID): status and down refuse, naming the
# address up used, and leave this engine's containers alone.
another_engine_refused() {
  local saved="$PAYCTL_HOME/docker.json" out rc=0
  cp "$saved" "$saved.bak"
  sed -i -E 's/("id": ")[^"]*"/\1another-engine"/' "$saved"
  grep -q '"another-engine"' "$saved" || { echo "  no engine id in $saved"; rc=1; }
  for cmd in status "down"; do
    if out=$("$payctl" $cmd 2>&1); then
      echo "  $cmd went on against another engine"
      rc=1
    fi
    grep -q "this stack runs on the Docker engine .* but Docker now points at another engine" <<< "$out" \
      || { echo "  $cmd: $out" | tail -2; rc=1; }
  done
  mv "$saved.bak" "$saved"
  [ "$(docker ps -q --filter "label=com.payctl.project=$PAYCTL_PROJECT" | wc -l)" -ge 6 ] || rc=1
  return "$rc"
}

# Another directory (state directory) with the same project: its up and its down --volumes --project
# refuse, naming the stack's own directory, and leave the running stack alone.
another_directory_refused() {
  local other out rc=0
  other=$(mktemp -d)
  for cmd in "up ${up_flags[*]}" "down --volumes --yes --project $PAYCTL_PROJECT"; do
    # shellcheck disable=SC2086
    if out=$(PAYCTL_HOME=$other "$payctl" $cmd 2>&1); then
      echo "  ${cmd%% *} from another directory went on"
      rc=1
    fi
    grep -q "project $PAYCTL_PROJECT is the Docker stack of $PAYCTL_HOME, not of $other" <<< "$out" \
      || { echo "  ${cmd%% *}: $out" | tail -2; rc=1; }
  done
  rm -rf "$other"
  [ "$(docker ps -q --filter "label=com.payctl.project=$PAYCTL_PROJECT" | wc -l)" -ge 6 ] || rc=1
  return "$rc"
}

# A configured engine that does not answer: `--runtime auto` fails naming it, and starts nothing native.
dead_docker_host_is_named() {
  local out dead="unix://$engine_dir/nothing.sock"
  if out=$(DOCKER_HOST=$dead PAYCTL_HOME="$PAYCTL_HOME/dead" "$payctl" up --runtime auto 2>&1); then
    echo "up succeeded without its engine"
    return 1
  fi
  echo "$out" | tail -1
  grep -q "does not answer at $dead (DOCKER_HOST)" <<< "$out" && [ ! -e "$PAYCTL_HOME/dead/mariadb" ]
}

# pay-server rebuilt with a new line in its log: the next up rebuilds only its image, recreates only
# its container, and the new code runs.
rebuilt_code_runs() {
  local note="rebuilt-$$-$RANDOM" out
  # The same packages as the first build: the same features, so only pay-server's main is compiled.
  PAY_SERVER_BUILD_NOTE=$note cargo build -q -p payctl -p pay-server -p pay-consumer -p pay-settlement -p pay-acquirer || return 1
  out=$("$payctl" "${up_args[@]}" "${prebuilt[@]}" 2>&1) || { echo "$out"; return 1; }
  grep -q "building payctl-ci/pay-server:test (its inputs changed)" <<< "$out" \
    && ! grep -q "building payctl-ci/pay-consumer" <<< "$out" \
    && grep -q "ingest .*recreating payctl-ci-ingest" <<< "$out" \
    && grep -q "consumer .*already running" <<< "$out" \
    || { echo "$out"; return 1; }
  "$payctl" logs ingest -n 1000 | grep -q "$note"
}

# A host binary that needs a newer glibc than the runtime image, or is no Linux binary: refused before any
# build, saying why.
newer_glibc_refused() {
  local dir out rc=0
  dir=$(mktemp -d)
  cp "$target/debug/pay-server" "$target/debug/pay-consumer" "$target/debug/pay-acquirer" "$target/debug/pay-settlement" "$dir/"
  # Its need of GLIBC_2.34 turned into 2.99: what a binary from a newer system looks like to the loader.
  perl -0777 -pi -e 's/GLIBC_2\.34\x00/GLIBC_2.99\x00/g' "$dir/pay-server"
  out=$("$dir/pay-server" --help 2>&1 || true)
  grep -q "GLIBC_2.99' not found" <<< "$out" || { echo "the patched binary still runs here: $out"; rc=1; }
  if out=$(PAYCTL_PROJECT=payctl-bad PAYCTL_HOME="$PAYCTL_HOME/bad" PAYCTL_SERVER_IMAGE=payctl-bad/pay-server:glibc \
    "$payctl" "${up_args[@]}" --prebuilt "$dir" 2>&1); then
    echo "up succeeded with a binary the image cannot run"
    rc=1
  fi
  echo "$out" | tail -1
  grep -q "needs glibc 2.99 but the runtime image $base has glibc 2.36" <<< "$out" || rc=1
  ! grep -q "building payctl-bad/pay-server" <<< "$out" || rc=1
  # What a Mac's cargo build gives (not ELF): refused too.
  printf '\xcf\xfa\xed\xfe\x0c\x00\x00\x01' > "$dir/pay-server"
  out=$(PAYCTL_PROJECT=payctl-bad PAYCTL_HOME="$PAYCTL_HOME/bad" PAYCTL_SERVER_IMAGE=payctl-bad/pay-server:glibc \
    "$payctl" "${up_args[@]}" --prebuilt "$dir" 2>&1 || true)
  echo "$out" | tail -1
  grep -q "pay-server is not a Linux binary" <<< "$out" || rc=1
  rm -rf "$dir"
  [ -z "$(docker ps -aq --filter label=com.payctl.project=payctl-bad)$(docker ps -aq --filter label=com.payctl.project=payctl-image)" ] || rc=1
  return "$rc"
}

# The gateway's Node stage (what payctl builds where frontend/dist is missing, and docker compose
# always): the store built from its sources, served by the image.
node_stage_builds_the_store() {
  [ -n "$node_image" ] || { echo "(skipped: no node here)"; return 0; }
  local tag=payctl-ci/gateway:node-stage
  docker build --network host --target release --build-arg NGINX_IMAGE=payctl-test/nginx:1 \
    --build-arg "NODE_IMAGE=$node_image" -t "$tag" -f compose/gateway.Dockerfile . > "$cache/build-gateway-node.log" 2>&1 \
    || { tail -20 "$cache/build-gateway-node.log"; return 1; }
  docker run --rm --network none --entrypoint cat "$tag" /usr/share/nginx/html/index.html | grep -q 'src="/assets/'
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
  "$payctl" down --volumes --yes --project payctl-foreign > /dev/null 2>&1 || true
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
    "$payctl" down --volumes --yes --project payctl-foreign > /dev/null 2>&1 || true
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
    "$payctl" smoke --no-settlement > /dev/null || { echo "  smoke failed with ingest=$n"; rc=1; }
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
  "$payctl" down --volumes --yes --project "$PAYCTL_PROJECT" > /dev/null || rc=1
  [ -z "$(docker volume ls -q --filter "$filter")" ] || { echo "  volumes left: $(left_behind)"; rc=1; }
  return "$rc"
}

# The circuit-breaker scenario; when it fails, the consumer's and the broker's last log lines say why
# (a run on a fresh clone is gone once the stack is down).
cb_test() {
  "$payctl" cb test && return 0
  echo "  --- payctl logs consumer (last 60) ---"
  "$payctl" logs consumer -n 60 2>&1 | sed 's/^/  /'
  echo "  --- payctl logs kafka (last 30) ---"
  "$payctl" logs kafka -n 30 2>&1 | sed 's/^/  /'
  return 1
}

# The settlement worker's container settles the smoke test's capture and refunds at the acquirer's
# container (its SQLite file on a named volume), and that day's statement reconciles with our books.
settled_and_reconciled() {
  local day out i
  day=$(TZ=Asia/Seoul date +%F)
  for i in $(seq 120); do
    if out=$("$payctl" reconcile --date "$day" --json 2>&1) \
      && [ "$(grep -o '"matched": [0-9]*' <<< "$out" | grep -o '[0-9]*$')" -ge 3 ]; then
      echo "  $(grep -o '"matched": [0-9]*' <<< "$out") on $day"
      return 0
    fi
    sleep 0.5
  done
  echo "$out" | tail -20
  "$payctl" logs settlement -n 30 2>&1 | sed 's/^/  /'
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

step "the default socket does not answer" default_socket_is_dead
step "a dead DOCKER_HOST is named, no fallback to native" dead_docker_host_is_named
step "the gateway image builds the store in its Node stage" node_stage_builds_the_store
step "payctl up --runtime docker --network host (engine through a docker context)" up_through_context
if [ "$failed" = 0 ]; then
  step "status (every container healthy)" "$payctl" status
  step "status --json names the containers" bash -c "'$payctl' status --json | grep -q '\"container\": \"payctl-ci-kafka\"'"
  step "the same engine through DOCKER_HOST" through_docker_host
  step "a stack saved on another engine: status and down refuse" another_engine_refused
  step "the same project from another directory: up and down --project refuse" another_directory_refused
  step "the same engine through DOCKER_HOST=tcp:// with TLS" through_tls_docker_host
  step "a second stack on the same ports is refused, naming the container" refused_naming_container
  step "smoke" "$payctl" smoke
  step "settlement: smoke's capture and refunds settle at the acquirer, the statement reconciles" \
    settled_and_reconciled
  step "pay-server changed: up rebuilds its image and recreates its container only" rebuilt_code_runs
  step "cb test (stops and starts the Kafka container)" cb_test
  step "reconcile" "$payctl" reconcile
  step "chaos (docker kill and pause of containers under load, then the verdict)" \
    "$payctl" chaos --seed 3 --duration 45s --rate 20 --services ingest,kafka,mariadb
  step "dlq: poison is dead-lettered by the consumer container" dead_lettered
  # Generous p99: speed is measured by `payctl bench`, not asserted on a loaded CI machine.
  step "load (k6 through the gateway container, then reconcile)" "$payctl" load --rate 50 --duration 5s --p99-ms 2000
  step "logs ingest (from the container)" bash -c "'$payctl' logs ingest -n 100000 | grep -q 'pay-server listening'"
  step "mariadb runs with --max-connections=1000" max_connections
  step "up --scale ingest=3, then 1, on the running stack: gateway and Prometheus follow" scale_follows
  step "kafka recreated twice: no volume left behind" kafka_recreated_without_leaks
  step "state directory lost: up refuses the volume, down --volumes --project removes it" state_directory_lost
fi
step "down, then down --volumes: the stopped Docker stack's volumes go too" \
  bash -c "'$payctl' down && '$payctl' down --volumes --yes"
step "names of a stack held by a foreign container, volume or network: up refuses, leaves them" foreign_names_refused
step "a missing image is pulled with retries, and nothing starts" pull_fails_cleanly
step "a prebuilt binary needing a newer glibc (or not for Linux) is refused before building" newer_glibc_refused
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
