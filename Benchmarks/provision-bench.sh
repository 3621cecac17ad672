#!/usr/bin/env bash
# `make bench`, part 2: `keyline provision` on simulated fleets behind the libusb stand-in (the
# real USB code), and the fixed peer baseline (../shared/bench/baseline-batch.sh: dfu-util,
# openssl, age, psql per device) on the same kind of fleet. One run, figures as ratios.
#   1. parallel efficiency with the timing model on (time scale 1): one device alone vs 32 and 64;
#   2. host CPU per device at zero device latency vs OpenSSL's own key generation + read-back check;
#   3. the baseline serially and 16 / 64 at a time vs keyline, 64 devices, zero latency.
# Needs: a release build (keyline, keyline-bench), the stand-in, PostgreSQL settings in PG* or
# DATABASE_URL (make bench passes the local cluster's).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
K=${KEYLINE:-$root/.build/release/keyline}
S=${KEYLINE_SIM:-$root/.build/release/keyline-sim}
B=${KEYLINE_BENCH:-$root/.build/release/keyline-bench}
baseline=$root/../shared/bench/baseline-batch.sh
export LD_LIBRARY_PATH=$root/.build/standin
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
w=$(mktemp -d /tmp/keyline-provbench.XXXXXX)
sim=
cleanup() { if [ -n "$sim" ]; then kill "$sim" 2>/dev/null || true; fi; wait 2>/dev/null || true; rm -rf "$w"; }
trap cleanup EXIT

# A database of its own, migrated; the baseline's table goes there too.
db=kl_bench_$(date +%s)_$$
admin_url=${DATABASE_URL:-} admin_db=${PGDATABASE:-}
admin_psql() { DATABASE_URL=$admin_url PGDATABASE=$admin_db psql ${admin_url:+"$admin_url"} -qc "$1" >/dev/null; }
admin_psql "CREATE DATABASE $db"
# Dropped from the administrator's database (a session cannot drop the database it is in).
trap 'rc=$?; set +e; cleanup; admin_psql "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2>/dev/null; exit $rc' EXIT
if [ -n "${DATABASE_URL:-}" ]; then export DATABASE_URL="${DATABASE_URL%/*}/$db"; else export PGDATABASE=$db; fi
"$K" db migrate >/dev/null

mkdir -p "$w/firmware"
"$K" escrow keygen -o "$w/identity.txt" >"$w/recipients.txt"
for platform in photon boron; do
  "$S" make-firmware --platform $platform --function user --index 1 --size 65536 -o "$w/firmware/$platform-user.bin" >/dev/null
done
export KEYLINE_FIRMWARE=$w/firmware KEYLINE_RECIPIENTS=$w/recipients.txt KEYLINE_STATION=bench KEYLINE_LOG_DIR=$w/logs

# keyline provision over N fresh Photons in DFU mode at time scale TS, N at a time, on 16-port
# hubs of kind HUB (multi by default; see `keyline-sim serve --help`).
# Sets wall, cpu (user + system of keyline), slowest (the slowest device's own run time) and
# limit (the simulator's device-bound limit: the slowest device's modelled time to the answer to its
# leave request, bus included: where the batch wall ends too).
provision() {
  local n=$1 ts=$2 platform=${3:-photon} hub=${4:-multi} sock=$w/sim.sock
  rm -f "$sock"
  "$S" serve --socket "$sock" --fleet "$platform:$n@hub=$hub/16" --mode dfu --time-scale "$ts" --seed "$(date +%s%N)" >"$w/sim.log" 2>&1 &
  sim=$!
  for _ in $(seq 100); do grep -qs '^serving' "$w/sim.log" && break; sleep 0.1; done
  KEYLINE_SIM_SOCKET=$sock KEYLINE_ESCROW_STORE=$w/store \
    /usr/bin/time -f '%e %U %S' -o "$w/time" \
    "$K" provision "$root/pipelines/$platform-factory.yaml" --json --concurrency "$n" --devices "$n" >"$w/out.json" 2>"$w/err" \
    || { echo "keyline provision failed (n=$n ts=$ts):"; tail -5 "$w/err"; }
  kill "$sim" 2>/dev/null; wait "$sim" 2>/dev/null || true; sim=
  read -r wall user system <"$w/time"
  limit=$(sed -n 's/^device-bound limit \([0-9.]*\) s.*/\1/p' "$w/sim.log" | tail -n 1)
  limit=${limit:-0}
  cpu=$(echo "$user + $system" | bc -l)
  slowest=$(tail -n 1 "$w/out.json" | python3 -c 'import json,sys; d=json.load(sys.stdin)["summary"]["devices"]; print(max(x["seconds"] for x in d) if d else 0)')
  done_count=$(tail -n 1 "$w/out.json" | python3 -c 'import json,sys; print(sum(1 for x in json.load(sys.stdin)["summary"]["devices"] if x["outcome"]=="done"))')
}

echo "== provision: parallel efficiency, timing model on (time scale 1, 64 KiB image, Photons on 16-port hubs)"
echo "   efficiency = the slowest device's modelled time to its leave request (the simulator's device-bound limit, bus"
echo "   included; the boot after leave is outside both, as keyline exits once every device is asked to leave) / batch wall"
for hub in multi single; do
  for n in 16 32 64; do
    provision "$n" 1 photon "$hub"
    printf '  %s-TT, %2d devices: batch wall %.2f s, device-bound limit %.2f s, efficiency %.3f, slowest device run %.2f s, done %s\n' \
      "$hub" "$n" "$wall" "$limit" "$(echo "$limit / $wall" | bc -l)" "$slowest" "$done_count"
  done
done

echo "== provision: host CPU per device at zero device latency (64 Photons, RSA keys generated on the host)"
provision 64 0; k64=$wall
per_device=$(echo "$cpu / 64 * 1000" | bc -l)
reference=$("$B" keygen-readback | awk '/^keygen-readback-ms/ {print $2}')
printf '  keyline: %.1f ms CPU per device (wall %.2f s for 64, done %s); OpenSSL RSA-1024 generation + read-back check: %.1f ms; ratio %.2fx (goal <= 1.5x)\n' \
  "$per_device" "$k64" "$done_count" "$reference" "$(echo "$per_device / $reference" | bc -l)"

# keyline vs the baseline on PLATFORM, 64 devices at zero latency; P values of the baseline.
compare() {
  local platform=$1; shift
  provision 64 0 "$platform"; local kw=$wall kd=$done_count
  echo "  keyline: 64 ${platform}s in $(printf '%.2f' "$kw") s (done $kd)"
  local best=
  for p in "$@"; do
    out=$(KEYLINE=$root/Benchmarks/baseline-keyline.sh KEYLINE_SIM=$S STANDIN=$root/.build/standin bash "$baseline" "$platform" 64 "$p" 0 2>&1 | tail -n 1)
    bw=$(sed -n 's/.* wall=\([0-9.]*\)s.*/\1/p' <<<"$out")
    echo "  baseline P=$p: $out"
    if [ -n "$bw" ]; then
      printf '    baseline / keyline wall: %.1fx\n' "$(echo "$bw / $kw" | bc -l)"
      if [ -z "$best" ] || [ "$(echo "$bw < $best" | bc -l)" = 1 ]; then best=$bw; fi
    fi
  done
  [ -n "$best" ] && printf '  keyline is %.1fx faster than the baseline at its best on %s (goal >= 10x)\n' "$(echo "$best / $kw" | bc -l)" "$platform"
}

echo "== provision vs the peer baseline (64 devices, zero latency, 64 KiB image): $baseline"
echo "-- Photon (RSA-1024 keys: generation is most of either side's CPU)"
compare photon 1 16 64
echo "-- Boron (EC P-256 keys); the baseline in parallel only (its serial run is the Photon's above, minus RSA)"
compare boron 16 64
exit 0
