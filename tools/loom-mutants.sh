#!/usr/bin/env bash
# Mutation runs for the loom models: break the engine's own code, one
# deliberate bug at a time, in a scratch copy of the working tree, and check
# that the loom model of that code fails. Complements the `#[should_panic]`
# twins in loom-tests/tests/, whose bugs live in the test harness.
#
#   bash tools/loom-mutants.sh            # every mutant
#   bash tools/loom-mutants.sh M2 M6      # some
#
# Prints, per mutant, CAUGHT (the model failed, with its first message) or
# MISSED; exits non-zero if any mutant was missed. Builds go to
# target/loom-mutants (about a minute per mutant on 2 cores).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

# id ~ file ~ test (loom-tests/tests/<test>.rs) ~ exact text to find ~ replacement ~ what it breaks
mutants=(
  "M1~engine/src/protocol/lessor.rs~consolidate~                Phase::Revoking => awaiting.push(self.slots[i].lease),~                Phase::Revoking => {}~a barrier does not wait for the state of a lessee being revoked"
  "M2~engine/src/protocol/lessor.rs~critical~        if !b.awaiting.is_empty() || !self.mailbox.is_empty() {~        if !b.awaiting.is_empty() {~the critical runs before the lessor's own queued messages of the epoch"
  "M3~engine/src/protocol/lessor.rs~barrier~            if got < sent {~            if false && got < sent {~a barrier aligns on its criticals without counting the data they announce"
  "M4~engine/src/protocol/lessor.rs~keyed_fifo~            if give.contains_key(msg.key_hash()) {~            if false && give.contains_key(msg.key_hash()) {~a grant hands partitions over but keeps their queued messages at home"
  "M5~engine/src/protocol/lessor.rs~dormant~            && self.slots.is_empty()~            && true~an actor with lessees counts as idle and deactivates"
  "M6~engine/src/quiesce.rs~quiesce~        if self.closed.load(Ordering::SeqCst) {~        if false && self.closed.load(Ordering::SeqCst) {~the app gate accepts commands after undeploy closed it"
  "M7~engine/src/mesh/ring.rs~ring~        self.shared.tail.store(self.tail, Ordering::Release);~        self.shared.tail.store(self.tail, Ordering::Relaxed);~the ring publishes a slot without Release"
  "M8~engine/src/mesh/doorbell.rs~park~        fence(Ordering::SeqCst);~        // (fence removed)~the park flag loses its first fence (prepare_park)"
)

want=("$@")
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$scratch")
export CARGO_TARGET_DIR="$repo/target/loom-mutants"

missed=0
for m in "${mutants[@]}"; do
  IFS='~' read -r id file test find replace what <<<"$m"
  if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " =~ " $id " ]]; then
    continue
  fi
  cp "$repo/$file" "$scratch/$file"
  # Replace the first occurrence only; fail loudly if the line moved.
  FIND="$find" REPLACE="$replace" perl -0pi -e '
    my $n = s/\Q$ENV{FIND}\E/$ENV{REPLACE}/;
    die "mutation does not apply: line not found\n" unless $n;
  ' "$scratch/$file"
  printf '%s (%s): %s ... ' "$id" "$test" "$what"
  log="$scratch/$id.log"
  # The models of a correct protocol only (the `caught_*` twins break the
  # harness on purpose and fail anyway).
  if (cd "$scratch/loom-tests" &&
    cargo test --release --test "$test" -- --skip caught_ --test-threads=1 >"$log" 2>&1); then
    echo "MISSED"
    missed=$((missed + 1))
  elif grep -q "could not compile" "$log"; then
    echo "DID NOT BUILD (fix the mutant)"
    tail -20 "$log" | sed 's/^/    /'
    missed=$((missed + 1))
  else
    echo "CAUGHT"
    grep -m1 -E "FAILED at interleaving" "$log" | sed 's/^/    /' || true
    # The panic's message: the lines after the first "panicked at".
    grep -m1 -A3 "panicked at" "$log" | tail -n +2 | grep -v "^\s*$" | head -2 \
      | cut -c1-200 | sed 's/^/    /' || true
  fi
  cp "$repo/$file" "$scratch/$file"
done
[ "$missed" -eq 0 ]
