#!/usr/bin/env bash
# Runs every test of the workspace: unit, integration (end to end on real
# shards) and the seeded protocol simulation. This is the README's test
# command and what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets
