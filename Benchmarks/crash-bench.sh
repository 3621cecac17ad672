#!/usr/bin/env bash
# `make crash-bench` (by hand, not part of `make test`): `keyline provision` killed with SIGKILL at
# 50 or more random points of its batches, resumed with --resume JOB every time, then every
# invariant of the design checked from outside keyline's own code paths:
#   - SQL: no registered key without its escrow object, at most one active key per device, every
#     key recorded at key_ready is the registered one (no key replaced), no job left unfinished;
#   - the escrow store: each registered object's bytes have the recorded SHA-256, and
#     `keyline escrow show -i IDENTITY` decrypts it to the device's key with the registered fingerprint;
#   - the devices: the simulator keeps each batch's devices in a state folder (`keyline-sim serve --state`);
#     served again afterwards, each device's key slot is read (`keyline dfu enter` + `keyline dfu read`)
#     and `keyline keys inspect` must give the registered fingerprint (no key lost, none replaced).
# Each batch is a fresh simulated line of Photons, half in DFU mode (keyline generates their keys),
# half in normal mode (they made their own), with the timing model on so kills land mid-step.
# Prints kills, resumes, devices, and PASS/FAIL lines; exits 1 on any violation.
#
# Settings (environment): KILLS (50), DEVICES per batch (6, even), TIME_SCALE (0.05), MAX_DELAY_MS
# (1500: kills land 30 ms … this after start), KEYLINE, PostgreSQL settings in PG* or DATABASE_URL.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
K=${KEYLINE:-$root/.build/debug/keyline}
S=${KEYLINE_SIM:-$root/.build/debug/keyline-sim}
KILLS=${KILLS:-50}
DEVICES=${DEVICES:-6}
TIME_SCALE=${TIME_SCALE:-0.05}
MAX_DELAY_MS=${MAX_DELAY_MS:-1500}
pipeline=$root/pipelines/photon-factory.yaml
export LD_LIBRARY_PATH=$root/.build/standin
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
[ -x "$K" ] || { echo "no keyline at $K (swift build, or set KEYLINE)"; exit 2; }
[ -f "$LD_LIBRARY_PATH/libusb-1.0.so.0" ] || { echo "no libusb stand-in (make standin)"; exit 2; }

w=$(mktemp -d /tmp/keyline-crashbench.XXXXXX)
sim=
db=kl_crash_$(date +%s)_$$
stop_sim() {
  if [ -n "$sim" ]; then kill -TERM "$sim" 2>/dev/null; wait "$sim" 2>/dev/null; sim=; fi
}
cleanup() {
  stop_sim
  psql ${DATABASE_URL:+"$DATABASE_URL"} -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
  [ -n "${KEEP:-}" ] && echo "kept $w" || rm -rf "$w"
}
trap cleanup EXIT

# A database of its own, migrated (as Benchmarks/provision-bench.sh).
psql ${DATABASE_URL:+"$DATABASE_URL"} -qc "CREATE DATABASE $db" >/dev/null || { echo "FAIL: cannot create database $db"; exit 2; }
if [ -n "${DATABASE_URL:-}" ]; then export DATABASE_URL="${DATABASE_URL%/*}/$db"; else export PGDATABASE=$db; fi
sql() { psql ${DATABASE_URL:+"$DATABASE_URL"} -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
"$K" db migrate >/dev/null || { echo "FAIL: db migrate"; exit 2; }

mkdir -p "$w/firmware"
"$K" escrow keygen -o "$w/identity.txt" >"$w/recipients.txt"
"$S" make-firmware --platform photon --function user --index 1 -o "$w/firmware/photon-user.bin" >/dev/null
export KEYLINE_FIRMWARE=$w/firmware KEYLINE_RECIPIENTS=$w/recipients.txt KEYLINE_ESCROW_STORE=$w/escrow \
  KEYLINE_STATION=crash-bench KEYLINE_LOG_DIR=$w/logs

# Serves batch N's devices from $w/sim-N (state saved there) on $w/sim-N.sock; extra arguments
# (e.g. --time-scale 0) follow.
start_sim() {
  local n=$1; shift
  rm -f "$w/sim-$n.sock"
  "$S" serve --socket "$w/sim-$n.sock" --state "$w/sim-$n" --seed $((1000 + n)) \
    --fleet "photon:$((DEVICES / 2)):dfu,photon:$((DEVICES - DEVICES / 2)):normal" --time-scale "$TIME_SCALE" "$@" \
    >"$w/sim-$n.log" 2>&1 &
  sim=$!
  for _ in $(seq 200); do grep -qs '^serving' "$w/sim-$n.log" && return 0; sleep 0.05; done
  echo "FAIL: sim serve did not start"; cat "$w/sim-$n.log"; exit 2
}

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

kills=0 resumes=0 runs=0 batches=0 sweeps=0 finished_early=0
start=$(date +%s)
while [ "$kills" -lt "$KILLS" ]; do
  batches=$((batches + 1))
  start_sim "$batches"
  export KEYLINE_SIM_SOCKET=$w/sim-$batches.sock
  before=$(sql "SELECT coalesce(max(id), 0) FROM jobs")
  job=
  for _ in $(seq 12); do
    [ "$kills" -ge "$KILLS" ] && break
    args=(provision "$pipeline" --json --timeout 10)
    [ -n "$job" ] && { args+=(--resume "$job"); resumes=$((resumes + 1)); }
    "$K" "${args[@]}" >"$w/run.json" 2>"$w/run.err" &
    pid=$!
    runs=$((runs + 1))
    sleep "$(awk -v r="$RANDOM" -v m="$MAX_DELAY_MS" 'BEGIN { printf "%.3f", (30 + r % (m - 29)) / 1000 }')"
    if kill -KILL "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null
      kills=$((kills + 1))
    else
      wait "$pid"; rc=$?
      finished_early=$((finished_early + 1))
      [ "$rc" = 0 ] || fail "batch $batches: a run that was not killed exited $rc: $(tail -n 3 "$w/run.err")"
    fi
    [ -z "$job" ] && job=$(sql "SELECT id FROM jobs WHERE id > $before ORDER BY id LIMIT 1")
    [ -n "$job" ] && [ "$(sql "SELECT status FROM jobs WHERE id = $job")" = completed ] && break
  done
  # The batch's last run is not killed: --resume must finish every device of the job.
  if [ -n "$job" ] && [ "$(sql "SELECT status FROM jobs WHERE id = $job")" != completed ]; then
    resumes=$((resumes + 1)); runs=$((runs + 1))
    "$K" provision "$pipeline" --json --timeout 10 --resume "$job" >"$w/run.json" 2>"$w/run.err"
    rc=$?
    [ "$rc" = 0 ] || fail "batch $batches: --resume $job exited $rc: $(tail -n 3 "$w/run.err")"
  fi
  # A kill before the job recorded every device leaves devices outside it (a resume continues
  # only the job's own devices): a plain run provisions those and skips the provisioned ones.
  left=$(sql "SELECT count(*) FROM key_registrations WHERE status = 'active' AND job_id > $before")
  if [ "$left" -lt "$DEVICES" ]; then
    sweeps=$((sweeps + 1)); runs=$((runs + 1))
    "$K" provision "$pipeline" --json --timeout 10 >"$w/run.json" 2>"$w/run.err"
    rc=$?
    [ "$rc" = 0 ] || fail "batch $batches: the sweep run exited $rc: $(tail -n 3 "$w/run.err")"
  fi
  stop_sim
done
elapsed=$(( $(date +%s) - start ))
devices=$((batches * DEVICES))
echo "crash-bench: $kills kills (SIGKILL), $resumes resumes, $runs runs, $batches batches, $devices devices, $sweeps sweep runs, $finished_early runs finished before their kill, ${elapsed}s"

# --- The registry -----------------------------------------------------------------------------
check() {  # NAME SQL-returning-a-count-of-violations
  local n; n=$(sql "$2")
  if [ "$n" = 0 ]; then echo "PASS: $1"; else fail "$1 ($n violations)"; fi
}
check "every registered key has its escrow object, for the same public key" \
  "SELECT count(*) FROM key_registrations r LEFT JOIN escrow_objects e ON e.id = r.escrow_object_id
   WHERE e.id IS NULL OR e.public_key_sha256 <> r.fingerprint OR e.device_id <> r.device_id"
check "no device with two active keys" \
  "SELECT count(*) FROM (SELECT 1 FROM key_registrations WHERE status = 'active'
   GROUP BY product_id, device_id HAVING count(*) > 1) t"
check "no key replaced: every key recorded at key_ready is the device's registered key" \
  "SELECT count(*) FROM job_devices d LEFT JOIN key_registrations r ON r.device_id = d.device_id AND r.status = 'active'
   WHERE d.key_fingerprint IS NOT NULL AND (r.id IS NULL OR r.fingerprint <> d.key_fingerprint)"
check "no job left unfinished" "SELECT count(*) FROM jobs WHERE status <> 'completed'"
check "no escrow intent left uncommitted" "SELECT count(*) FROM escrow_intents WHERE committed_object_id IS NULL"
registered=$(sql "SELECT count(*) FROM key_registrations WHERE status = 'active'")
if [ "$registered" = "$devices" ]; then echo "PASS: $registered of $devices devices registered"
else fail "$registered of $devices devices registered"; fi

# --- The escrow store -------------------------------------------------------------------------
bad=0 objects=0
while IFS='|' read -r device fingerprint object sha; do
  objects=$((objects + 1))
  file=$w/escrow/$object
  if [ ! -f "$file" ]; then echo "  $device: escrow object $object missing"; bad=$((bad + 1)); continue; fi
  [ "$(sha256sum "$file" | cut -d' ' -f1)" = "$sha" ] || { echo "  $device: $object has other bytes than recorded"; bad=$((bad + 1)); continue; }
  shown=$("$K" escrow show -i "$w/identity.txt" --json "$file" 2>&1) || { echo "  $device: escrow show failed: $shown"; bad=$((bad + 1)); continue; }
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d["device_id"] == sys.argv[2] and d["public_key_sha256"] == sys.argv[3] else 1)' \
    "$shown" "$device" "$fingerprint" || { echo "  $device: backup $object does not hold key $fingerprint: $shown"; bad=$((bad + 1)); }
done < <(sql "SELECT r.device_id, r.fingerprint, e.object_key, e.ciphertext_sha256 FROM key_registrations r
              JOIN escrow_objects e ON e.id = r.escrow_object_id WHERE r.status = 'active' ORDER BY r.id")
if [ "$bad" = 0 ] && [ "$objects" -gt 0 ]; then echo "PASS: $objects backups decrypt with the identity to the registered key"
else fail "$bad of $objects backups missing, altered or not the registered key"; fi
stray=$(find "$w/escrow" -type f ! -name '*.age' | wc -l)
orphans=$(( $(find "$w/escrow" -type f -name '*.age' | wc -l) - objects ))
echo "  store: $objects registered objects, $orphans unregistered objects, $stray temp files"

# --- The devices ------------------------------------------------------------------------------
bad=0 checked=0
for n in $(seq "$batches"); do
  start_sim "$n" --time-scale 0
  export KEYLINE_SIM_SOCKET=$w/sim-$n.sock
  while IFS=$'\t' read -r port platform mode device; do
    checked=$((checked + 1))
    want=$(sql "SELECT fingerprint FROM key_registrations WHERE device_id = '$device' AND status = 'active'")
    slot=$w/slot-$device.bin
    if ! "$K" dfu enter --serial "$device" >/dev/null 2>"$w/dfu.err" \
       || ! "$K" dfu read --serial "$device" --alt 1 --address 34 --length 612 -o "$slot" --force >/dev/null 2>>"$w/dfu.err"; then
      echo "  $device ($port): cannot read its key slot: $(tail -n 2 "$w/dfu.err")"; bad=$((bad + 1)); continue
    fi
    held=$("$K" keys inspect --json "$slot" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["fingerprint"])' 2>/dev/null)
    rm -f "$slot"
    if [ -z "$want" ] || [ "$held" != "$want" ]; then
      echo "  $device ($port): holds ${held:-no key}, registered ${want:-nothing}"; bad=$((bad + 1))
    fi
  done < <(grep -P '^\d+-' "$w/sim-$n.log")
  stop_sim
done
if [ "$bad" = 0 ] && [ "$checked" = "$devices" ]; then echo "PASS: all $checked devices hold their registered key (read back from the DCT)"
else fail "$bad of $checked devices (of $devices) do not hold their registered key"; fi

if [ "$failures" = 0 ]; then echo "crash-bench: PASS"; exit 0; fi
echo "crash-bench: FAIL ($failures)"; exit 1
