#!/usr/bin/env bash
# Validates the Kubernetes manifests offline (no cluster): `payctl k8s --check` (the committed files are
# what the stack definition renders), then for every overlay `kubectl kustomize` renders it,
# kubernetes-validate checks every object against the schemas of one Kubernetes version, and checkov
# finds nothing (each skip is written on its object with the reason: checkov.io/skipN annotations).
#
# kubernetes-validate and checkov are installed when missing, at pinned versions, into a virtualenv of
# their own (checkov pins versions of packages such as botocore that other tools on the machine need).
# PAYCTL: the payctl binary (default: target/debug/payctl, else `cargo run -p payctl --`).
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=1.31
VENV="${PAYCTL_K8S_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/payctl-k8s-tools}"
if [ ! -x "$VENV/bin/checkov" ] || [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  echo "installing kubernetes-validate and checkov into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet 'kubernetes-validate==1.37.0' 'checkov==3.3.30'
fi
command -v kubectl >/dev/null || { echo "error: kubectl is missing (it renders the overlays: kubectl kustomize)" >&2; exit 1; }

if [ -n "${PAYCTL:-}" ]; then
  "$PAYCTL" k8s --check
elif [ -x "${CARGO_TARGET_DIR:-target}/debug/payctl" ]; then
  "${CARGO_TARGET_DIR:-target}/debug/payctl" k8s --check
else
  cargo run -q -p payctl -- k8s --check
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
for overlay in deploy/k8s/overlays/*/; do
  name=$(basename "$overlay")
  mkdir -p "$out/$name"
  kubectl kustomize "$overlay" > "$out/$name.yaml"
  objects=$(grep -c '^kind:' "$out/$name.yaml")
  # kubernetes-validate wants one object per file for clear messages; split on the document marker.
  awk -v dir="$out/$name" '/^---$/ { n++; next } { print > (dir "/" sprintf("%03d", n) ".yaml") }' "$out/$name.yaml"
  if "$VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$out/$name"/*.yaml; then
    echo "k8s: ok $name: kustomize rendered $objects objects, all valid for Kubernetes $K8S_VERSION (strict)"
  else
    echo "k8s: FAIL $name: kubernetes-validate"
    status=1
  fi
  if "$VENV/bin/checkov" --skip-download --quiet --compact --framework kubernetes -f "$out/$name.yaml" > "$out/$name.checkov" 2>&1; then
    passed=$(grep -o 'Passed checks: [0-9]*' "$out/$name.checkov" | grep -o '[0-9]*' || echo 0)
    skipped=$(grep -o 'Skipped checks: [0-9]*' "$out/$name.checkov" | grep -o '[0-9]*' || echo 0)
    echo "k8s: ok $name: checkov found nothing ($passed passed, $skipped skipped with their reasons)"
  else
    cat "$out/$name.checkov"
    echo "k8s: FAIL $name: checkov"
    status=1
  fi
done
exit "$status"
