#!/usr/bin/env bash
# Installs the client generators and the API fuzzer the tests use (tests/clients.rs), from PyPI
# and npm, into target/tools (or $YISHI_TOOLS): openapi-python-client and schemathesis in a
# Python venv, openapi-typescript 7 and TypeScript in a node folder. Versions are pinned here.
set -euo pipefail
cd "$(dirname "$0")/../.."
tools="${YISHI_TOOLS:-$PWD/target/tools}"
mkdir -p "$tools"
if [ ! -x "$tools/venv/bin/schemathesis" ]; then
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check \
    'openapi-python-client==0.29.1' 'schemathesis==4.32.5'
fi
if [ ! -x "$tools/node/node_modules/.bin/openapi-typescript" ]; then
  mkdir -p "$tools/node"
  (cd "$tools/node" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund \
    'openapi-typescript@7.13.0' 'typescript@5.9.3')
fi
echo "client tools ready in $tools"
