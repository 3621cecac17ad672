#!/usr/bin/env bash
# `make bench`, part 3 (issue 21, "Many stations, one registry"): registrations committed per
# second across stations, 4 station processes vs 1, the same total of devices (64 Photons), zero
# device latency (time scale 0), one PostgreSQL, one S3 store (the moto server of `make s3-up`).
# Each station is its own `keyline provision` process, logged in as its own login bound to its own
# station name (`keyline db grant`), with its own simulated fleet (`keyline-sim serve`, its own
# stand-in socket), at the pipeline's concurrency (16). Cloud uploads are queued with each
# registration, as always, but not sent (no token): the figure is the registry's and the store's.
# The rate is taken from the registry's own clock: registrations / (last registration - first job
# start) of the configuration's jobs; the wall (first process started to last exited) beside it.
# Needs: a release build (keyline, keyline-sim), the stand-in, PG* or DATABASE_URL (a superuser:
# it creates a database and logins), KEYLINE_TEST_S3_ENDPOINT and the aws CLI (`make deps`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
K=${KEYLINE:-$root/.build/release/keyline}
S=${KEYLINE_SIM:-$root/.build/release/keyline-sim}
TOTAL=${MANY_STATIONS_DEVICES:-64}
endpoint=${KEYLINE_TEST_S3_ENDPOINT:-$(cat "$root/.s3/endpoint" 2>/dev/null || true)}
if [ -z "$endpoint" ]; then echo "many-stations: no S3 server (make s3-up, or KEYLINE_TEST_S3_ENDPOINT)"; exit 1; fi
export LD_LIBRARY_PATH=$root/.build/standin
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
unset PARTICLE_ACCESS_TOKEN PARTICLE_TOKEN_FILE
export AWS_ENDPOINT_URL=$endpoint AWS_ENDPOINT_URL_S3=$endpoint AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=keyline-test AWS_SECRET_ACCESS_KEY=keyline-test-secret
unset AWS_SESSION_TOKEN AWS_PROFILE
w=$(mktemp -d /tmp/keyline-manybench.XXXXXX)
sims=()
stop_sims() { for pid in "${sims[@]}"; do kill "$pid" 2>/dev/null || true; done; for pid in "${sims[@]}"; do wait "$pid" 2>/dev/null || true; done; sims=(); }

db=kl_many_$(date +%s)_$$
logins=()
admin_url=${DATABASE_URL:-} admin_db=${PGDATABASE:-} admin_user=${PGUSER:-}
admin_psql() { DATABASE_URL=$admin_url PGDATABASE=$admin_db PGUSER=$admin_user psql ${admin_url:+"$admin_url"} -qAtc "$1"; }
cleanup() {
  rc=$?; set +e; stop_sims; rm -rf "$w"
  admin_psql "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
  for login in "${logins[@]}"; do admin_psql "DROP ROLE IF EXISTS $login" >/dev/null 2>&1; done
  exit $rc
}
trap cleanup EXIT
admin_psql "CREATE DATABASE $db" >/dev/null
if [ -n "${DATABASE_URL:-}" ]; then export DATABASE_URL="${DATABASE_URL%/*}/$db"; else export PGDATABASE=$db; fi
db_psql() { psql ${DATABASE_URL:+"$DATABASE_URL"} -qAtc "$1"; }
"$K" db migrate >/dev/null
db_psql "INSERT INTO products (id, name, platform) VALUES ('12345', 'Photon factory', 'photon')" >/dev/null
for i in 1 2 3 4; do
  login=kl_many_bench_$$_$i; logins+=("$login")
  admin_psql "CREATE ROLE $login LOGIN" >/dev/null
  "$K" db grant "$login" --role station --station "bench-station-$i" >/dev/null
done

mkdir -p "$w/firmware"
"$K" escrow keygen -o "$w/identity.txt" >"$w/recipients.txt" 2>/dev/null
"$S" make-firmware --platform photon --function user --index 1 --size 65536 -o "$w/firmware/photon-user.bin" >/dev/null
bucket=kl-many-$(date +%s)-$$
HOME=/nonexistent AWS_PAGER= aws s3api create-bucket --bucket "$bucket" >/dev/null
export KEYLINE_FIRMWARE=$w/firmware KEYLINE_RECIPIENTS=$w/recipients.txt KEYLINE_LOG_DIR=$w/logs

# STATIONS stations, TOTAL/STATIONS fresh Photons each, all started together; store prefix LABEL.
# Sets rate (registrations per second, registry clock), wall, registered, failed_runs.
run_stations() {
  local stations=$1 label=$2 per=$((TOTAL / $1)) pids=() i
  for i in $(seq "$stations"); do
    local sock=$w/$label-$i.sock
    "$S" serve --socket "$sock" --fleet "photon:$per@hub=multi/16" --mode dfu --time-scale 0 \
      --seed "$(date +%s)$$$i" >"$w/$label-sim-$i.log" 2>&1 &
    sims+=($!)
  done
  for i in $(seq "$stations"); do
    for _ in $(seq 300); do grep -qs '^serving' "$w/$label-sim-$i.log" && break; sleep 0.1; done
  done
  local started ended
  started=$(date +%s.%N)
  for i in $(seq "$stations"); do
    PGUSER=${logins[$((i - 1))]} KEYLINE_STATION=bench-station-$i KEYLINE_SIM_SOCKET=$w/$label-$i.sock \
      KEYLINE_ESCROW_STORE=s3://$bucket/$label \
      "$K" provision "$root/pipelines/photon-factory.yaml" --json --devices "$per" >"$w/$label-out-$i.json" 2>"$w/$label-err-$i" &
    pids+=($!)
  done
  failed_runs=0
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { failed_runs=$((failed_runs + 1)); echo "  station $((i + 1)) of $label failed:"; tail -3 "$w/$label-err-$((i + 1))"; }
  done
  ended=$(date +%s.%N)
  stop_sims
  wall=$(echo "$ended - $started" | bc -l)
  local jobs
  jobs=$(for i in $(seq "$stations"); do tail -n 1 "$w/$label-out-$i.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["summary"]["jobID"])' 2>/dev/null; done | paste -sd, -)
  read -r registered span < <(db_psql "SELECT count(r.id), extract(epoch FROM max(r.registered_at) - (SELECT min(started_at) FROM jobs WHERE id IN ($jobs)))
                                       FROM key_registrations r WHERE r.job_id IN ($jobs)" | tr '|' ' ')
  rate=$(echo "$registered / $span" | bc -l)
}

echo "== many stations, one registry: $TOTAL Photons, time scale 0, one PostgreSQL, one S3 store (moto), station logins"
run_stations 1 one; rate1=$rate wall1=$wall reg1=$registered fail1=$failed_runs
printf '  1 station  x %d devices: %d registered in %.2f s (registry clock), %.1f registrations/s; wall %.2f s; failed runs %d\n' \
  "$TOTAL" "$reg1" "$(echo "$reg1 / $rate1" | bc -l)" "$rate1" "$wall1" "$fail1"
run_stations 4 four; rate4=$rate wall4=$wall reg4=$registered fail4=$failed_runs
printf '  4 stations x %d devices: %d registered in %.2f s (registry clock), %.1f registrations/s; wall %.2f s; failed runs %d\n' \
  "$((TOTAL / 4))" "$reg4" "$(echo "$reg4 / $rate4" | bc -l)" "$rate4" "$wall4" "$fail4"
printf '  4 stations / 1 station, registrations per second: %.2fx (wall ratio 1/4: %.2fx; %s cores)\n' \
  "$(echo "$rate4 / $rate1" | bc -l)" "$(echo "$wall1 / $wall4" | bc -l)" "$(nproc)"
exit 0
