#!/usr/bin/env bash
# Runs every test of the project: unit, integration (end to end on real
# shards), the seeded protocol simulation, doc tests, and the loom models
# (built with `--cfg loom` by loom-tests/.cargo/config.toml, into
# target/loom). This is the README's test command and what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets
# `--all-targets` leaves doc tests out: the README's example is one.
cargo test --workspace --doc
(cd loom-tests && cargo test --release)
