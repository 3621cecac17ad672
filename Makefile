# keyline — see README.md. `make test` and `make demo` work from a fresh clone on a fresh
# Debian machine: `deps` installs whatever system package is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := build

SWIFT      ?= swift
CONFIG     ?= debug
BUILD_FLAGS ?=
BIN         = $(shell $(SWIFT) build -c $(CONFIG) --show-bin-path)
KEYLINE     = $(BIN)/keyline
KEYLINE_SIM = $(BIN)/keyline-sim
DEMO_DIR   := .demo

# Debian packages the build, the tests and the demo need.
APT_PACKAGES := libssl-dev libpq-dev libusb-1.0-0-dev postgresql dfu-util age openssl pkg-config gcc
# make package: dpkg-shlibdeps (its Depends:); the package test's unit check (systemd-analyze).
APT_PACKAGES += dpkg-dev systemd
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps build test demo bench crash-bench fuzz clean standin s3-up s3-down s3-env package browser-deps

# The libusb stand-in (Sources/libusb-standin): a libusb-1.0.so.0 that forwards to the device
# simulator, for dfu-util and keyline's USB code on machines without a USB bus. Not a SwiftPM
# target; tests and `keyline-sim serve` users load it with LD_LIBRARY_PATH=$(STANDIN_DIR).
STANDIN_DIR := .build/standin
STANDIN     := $(STANDIN_DIR)/libusb-1.0.so.0
STANDIN_SRC := $(wildcard Sources/libusb-standin/*.c)

standin: $(STANDIN)

# Order-only on deps: a fresh `make -j test` must not compile before the libusb headers exist.
$(STANDIN): $(STANDIN_SRC) | deps
	@mkdir -p $(STANDIN_DIR)
	gcc -std=c11 -O2 -g -Wall -Wextra -Werror -fPIC -shared -fvisibility=hidden -pthread \
	  $$(pkg-config --cflags libusb-1.0) -Wl,-soname,libusb-1.0.so.0 -o $@ $(STANDIN_SRC)


deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y $$missing; \
	fi
	@# PyPI: moto's S3 server (the local object store for the S3 escrow tests) and the aws CLI (interop).
	@python3 -c 'import moto.server, flask_cors' 2>/dev/null || python3 -m pip install --quiet 'moto[server]'
	@command -v aws >/dev/null 2>&1 || python3 -m pip install --quiet awscli

# Debian's chromium, for the dashboard's browser tests and bench only (Tests/HeadlessBrowser drives
# it headless over the DevTools protocol), so `make build` and `make demo` do not install a browser.
BROWSER_PACKAGES := chromium
browser-deps: deps
	@missing=""; for p in $(BROWSER_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y $$missing; \
	fi

build: deps
	$(SWIFT) build -c $(CONFIG) $(BUILD_FLAGS)

test: deps browser-deps standin db-up s3-up
	python3 Tests/Layout/check-imports.py --self-test
	python3 Tests/Layout/check-imports.py
	$(SWIFT) build --build-tests $(BUILD_FLAGS)
	$(MAKE) --no-print-directory package
	$(PG_ENV) $(S3_ENV) $(PACKAGE_ENV) $(SWIFT) test --skip-build $(BUILD_FLAGS)

# The station's Debian package (README, "Station package"): the release `keyline` alone, with the
# Swift runtime and Foundation linked in (--static-swift-stdlib), in a build folder of its own so
# it never invalidates .build/release (`make bench`); then packaging/station/build-deb.sh makes
# dist/keyline_<keyline --version>_amd64.deb. `make test` builds it and its test (CLITests,
# StationPackageTests) must find it: KEYLINE_TEST_REQUIRE_PACKAGE=1.
PACKAGE_SCRATCH := .build-release-static
PACKAGE_BIN     := $(CURDIR)/$(PACKAGE_SCRATCH)/release
PACKAGE_DEB      = $(CURDIR)/dist/keyline_$$($(PACKAGE_BIN)/keyline --version)_amd64.deb
PACKAGE_ENV      = KEYLINE_TEST_PACKAGE="$(PACKAGE_DEB)" KEYLINE_TEST_REQUIRE_PACKAGE=1

package: deps
	$(SWIFT) build -c release --static-swift-stdlib --product keyline --scratch-path $(PACKAGE_SCRATCH) $(BUILD_FLAGS)
	SWIFT_TOOLCHAIN="$$(dirname "$$(dirname "$$(readlink -f "$$(command -v $(SWIFT))")")")" \
	  bash packaging/station/build-deb.sh $(PACKAGE_BIN)/keyline $(CURDIR)/dist

bench: deps browser-deps standin db-up s3-up
	$(SWIFT) build -c release --product keyline $(BUILD_FLAGS)
	$(SWIFT) build -c release --product keyline-sim $(BUILD_FLAGS)
	$(SWIFT) build -c release --product keyline-bench $(BUILD_FLAGS)
	$(PG_ENV) $(S3_ENV) $$($(SWIFT) build -c release --show-bin-path)/keyline-bench
	$(PG_ENV) KEYLINE=$$($(SWIFT) build -c release --show-bin-path)/keyline KEYLINE_SIM=$$($(SWIFT) build -c release --show-bin-path)/keyline-sim \
	  KEYLINE_BENCH=$$($(SWIFT) build -c release --show-bin-path)/keyline-bench bash Benchmarks/provision-bench.sh
	$(PG_ENV) $(S3_ENV) KEYLINE=$$($(SWIFT) build -c release --show-bin-path)/keyline KEYLINE_SIM=$$($(SWIFT) build -c release --show-bin-path)/keyline-sim \
	  bash Benchmarks/many-stations-bench.sh

# By hand, not part of `make test`: keyline provision killed with SIGKILL at 50+ random points of
# simulated batches, resumed each time, then every invariant checked from SQL, the escrow store
# (decrypting) and the devices' key slots. KILLS=N, DEVICES=N, TIME_SCALE=X override the defaults.
crash-bench: deps standin db-up
	$(SWIFT) build --product keyline $(BUILD_FLAGS)
	$(SWIFT) build --product keyline-sim $(BUILD_FLAGS)
	$(PG_ENV) KEYLINE=$$($(SWIFT) build --show-bin-path)/keyline KEYLINE_SIM=$$($(SWIFT) build --show-bin-path)/keyline-sim bash Benchmarks/crash-bench.sh

# By hand, not part of `make test`: libFuzzer targets (Tests/Fuzz/fuzz-*.swift) for what devices,
# files and operators send — memory-layout strings and descriptors, DFU status replies, key files,
# age files, backup documents, pipeline files. keyline's modules are rebuilt with
# -sanitize=fuzzer (libFuzzer ships with the Swift toolchain); each target runs FUZZ_SECONDS from
# the seeds in Tests/Fuzz/corpus (throwaway keys and identity, fuzzing only), growing its corpus
# in .build/fuzz/corpus. A crash or a unit slower than FUZZ_TIMEOUT seconds is written to
# .build/fuzz/crashes/TARGET/ and fails the run; each becomes a regression test.
FUZZ_SECONDS ?= 30
FUZZ_TIMEOUT ?= 10
FUZZ_TARGETS ?= dfu-descriptors dfu-status keys age backup pipeline
fuzz: deps
	$(SWIFT) build $(BUILD_FLAGS)
	python3 Tests/Fuzz/build.py
	@failed=""; for t in $(FUZZ_TARGETS); do \
	  mkdir -p .build/fuzz/corpus/$$t .build/fuzz/crashes/$$t; \
	  case $$t in keys) len=9000;; backup|age|pipeline) len=4096;; *) len=512;; esac; \
	  .build/fuzz/fuzz-$$t -max_total_time=$(FUZZ_SECONDS) -timeout=$(FUZZ_TIMEOUT) -max_len=$$len -print_final_stats=1 \
	    -artifact_prefix=.build/fuzz/crashes/$$t/ .build/fuzz/corpus/$$t Tests/Fuzz/corpus/$$t > .build/fuzz/$$t.log 2>&1 \
	    || failed="$$failed $$t"; \
	  runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' .build/fuzz/$$t.log); \
	  rate=$$(sed -n 's/^stat::average_exec_per_sec: *//p' .build/fuzz/$$t.log); \
	  echo "fuzz-$$t: $$runs runs, $$rate exec/s, corpus $$(ls .build/fuzz/corpus/$$t | wc -l) units, findings: $$(ls .build/fuzz/crashes/$$t | wc -l)"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: findings in$$failed (logs .build/fuzz/*.log, inputs .build/fuzz/crashes/)"; exit 1; fi

# The main job on a fresh machine: a simulated Particle cloud (keyline-sim cloud, on loopback)
# and a simulated line of 4 Photons and 4 Borons behind the libusb stand-in (keyline's real USB
# code), with the realistic timing model. Half the devices ship keyed as Particle ships them (the
# cloud holds their factory key), half blank. Both products are provisioned into the local
# PostgreSQL and the escrow store .demo/escrow (the RMA identity is .demo/rma-identity.txt), every
# device comes online in the simulated cloud; then one device's key is lost (blinking cyan) and
# restored from escrow with no cloud call (online again).
DEMO_FLEET ?= photon:4,boron:4
DEMO_TIME_SCALE ?= 1
DEMO_FACTORY ?= blank:50%
# Waits (up to $$2 s) until `keyline devices --json` rows satisfy the Python expression $$1 over `rows`.
DEMO_WAIT = wait_devices() { for i in $$(seq $$2); do $(KEYLINE) devices --json 2>/dev/null | python3 -c "import json,sys; rows=[json.loads(l) for l in sys.stdin if l.strip()]; sys.exit(0 if ($$1) else 1)" && return 0; sleep 1; done; echo "(gave up waiting after $$2 s)"; return 1; }
DEMO_CALLS = api_calls() { python3 -c "import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1] + '/sim/calls'))['api'])" "$$url"; }
demo: build db-up standin
	@rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)/firmware
	@echo "== the registry: schema migrations into the private PostgreSQL cluster (make db-up)"
	$(PG_ENV) $(KEYLINE) db migrate
	@echo "== the RMA bench's escrow identity; stations get only its public recipient"
	$(KEYLINE) escrow keygen -o $(DEMO_DIR)/rma-identity.txt > $(DEMO_DIR)/recipients.txt
	@echo "== synthetic firmware (valid module header, CRC-32; real Particle binaries cannot ship here)"
	$(KEYLINE_SIM) make-firmware --platform photon --function user --index 1 -o $(DEMO_DIR)/firmware/photon-user.bin
	$(KEYLINE_SIM) make-firmware --platform boron --function user --index 1 -o $(DEMO_DIR)/firmware/boron-user.bin
	@echo "== a simulated Particle cloud on loopback (keyline-sim cloud; its access token in a 0600 file)"
	@echo "== a simulated line ($(DEMO_FLEET), factory state $(DEMO_FACTORY), DFU mode, time scale $(DEMO_TIME_SCALE)) behind the libusb stand-in"
	@set -e; sock=$(CURDIR)/$(DEMO_DIR)/sim.sock; \
	  (umask 077; python3 -c 'import secrets; print(secrets.token_hex(20))' > $(DEMO_DIR)/particle-token); \
	  $(KEYLINE_SIM) cloud --token-file $(DEMO_DIR)/particle-token --product 12345 --product 12346 \
	    --state $(DEMO_DIR)/cloud.json --url-file $(DEMO_DIR)/cloud.url > $(DEMO_DIR)/cloud.log 2>&1 & \
	  cloud=$$!; trap "kill $$cloud 2>/dev/null" EXIT; \
	  for i in $$(seq 100); do [ -s $(DEMO_DIR)/cloud.url ] && break; sleep 0.1; done; url=$$(cat $(DEMO_DIR)/cloud.url); \
	  echo "simulated cloud at $$url"; \
	  export $(PG_ENV) KEYLINE_SIM_SOCKET=$$sock LD_LIBRARY_PATH=$(CURDIR)/$(STANDIN_DIR) \
	    KEYLINE_FIRMWARE=$(CURDIR)/$(DEMO_DIR)/firmware KEYLINE_RECIPIENTS=$(CURDIR)/$(DEMO_DIR)/recipients.txt \
	    KEYLINE_ESCROW_STORE=$(CURDIR)/$(DEMO_DIR)/escrow KEYLINE_LOG_DIR=$(CURDIR)/$(DEMO_DIR)/logs KEYLINE_STATION=demo-station \
	    PARTICLE_API_URL=$$url PARTICLE_ACCESS_TOKEN=$$(cat $(DEMO_DIR)/particle-token); \
	  $(KEYLINE_SIM) serve --socket $$sock --fleet $(DEMO_FLEET) --mode dfu --time-scale $(DEMO_TIME_SCALE) \
	    --cloud $$url --factory $(DEMO_FACTORY) --seed $$(date +%s) > $(DEMO_DIR)/sim.log 2>&1 & \
	  sim=$$!; trap "kill $$sim $$cloud 2>/dev/null" EXIT; \
	  for i in $$(seq 100); do grep -qs '^serving' $(DEMO_DIR)/sim.log && break; sleep 0.1; done; \
	  $(DEMO_WAIT); $(DEMO_CALLS); \
	  echo "$$ keyline devices"; $(KEYLINE) devices; \
	  echo "$$ keyline provision pipelines/photon-factory.yaml"; $(KEYLINE) provision pipelines/photon-factory.yaml; \
	  echo "$$ keyline provision pipelines/boron-factory.yaml"; $(KEYLINE) provision pipelines/boron-factory.yaml; \
	  echo "== every device reboots into its application and connects to the simulated cloud"; \
	  wait_devices "rows and all(r.get('cloud') == 'connected' for r in rows)" 120 || true; \
	  echo "$$ keyline devices"; $(KEYLINE) devices; \
	  victim=$$($(KEYLINE) devices --json | python3 -c "import json,sys; p=[r for r in map(json.loads, sys.stdin) if r.get('platform') == 'photon']; print(([r for r in p if r.get('cloud') == 'connected'] + p)[0]['deviceID'])"); \
	  echo "== flash corruption on $$victim: its key slot is erased, Device OS makes a new key the cloud does not hold"; \
	  head -c 612 /dev/zero | tr '\0' '\377' > $(DEMO_DIR)/erased-slot.bin; \
	  echo "$$ keyline dfu enter --serial $$victim"; $(KEYLINE) dfu enter --serial $$victim; \
	  echo "$$ keyline dfu write --serial $$victim --alt 1 --address 34 --leave erased-slot.bin"; \
	  $(KEYLINE) dfu write --serial $$victim --alt 1 --address 34 --leave $(DEMO_DIR)/erased-slot.bin; \
	  wait_devices "any(r.get('deviceID') == '$$victim' and r.get('cloud') == 'connecting' for r in rows)" 60 || true; \
	  echo "$$ keyline devices   ($$victim blinks cyan)"; $(KEYLINE) devices; grep "$$victim.*mismatch" $(DEMO_DIR)/sim.log | tail -n 1 || true; \
	  before=$$(api_calls); \
	  echo "$$ keyline restore $$victim --identity rma-identity.txt --reason 'blinking cyan' --ticket DEMO-1"; \
	  $(KEYLINE) restore $$victim --identity $(DEMO_DIR)/rma-identity.txt --reason "blinking cyan" --ticket DEMO-1; \
	  wait_devices "any(r.get('deviceID') == '$$victim' and r.get('cloud') == 'connected' for r in rows)" 60 || true; \
	  echo "$$ keyline devices   ($$victim online again with its original key)"; $(KEYLINE) devices; \
	  echo "cloud API calls made by the restore: $$(( $$(api_calls) - before ))"; \
	  echo "simulated cloud: $$(python3 -c "import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1] + '/sim/calls')))" "$$url")"
	@echo "== what the registry holds: one active key per device, each with its escrow object"
	@$(PG_ENV) psql -X -P pager=off -c "SELECT r.product_id AS product, r.device_id, r.algorithm, left(r.fingerprint, 16) || '…' AS fingerprint, \
	    r.job_id AS job, r.station, e.object_key, left(e.ciphertext_sha256, 12) || '…' AS ciphertext_sha256 \
	    FROM key_registrations r JOIN escrow_objects e ON e.id = r.escrow_object_id WHERE r.status = 'active' ORDER BY r.id"
	@echo "== the RMA bench decrypts a backup with its identity; Debian's age reads the same file"
	@f=$$(find $(DEMO_DIR)/escrow -name '*.age' | head -n 1); ls -l $$f; \
	  $(KEYLINE) escrow show -i $(DEMO_DIR)/rma-identity.txt $$f && \
	  age -d -i $(DEMO_DIR)/rma-identity.txt $$f | python3 -c 'import json,sys; d=json.load(sys.stdin); print("age -d: backup of", d["device_id"], d["platform"], "key", d["public_key_sha256"][:16] + "…")'
	@echo "== per-device logs of each job: $(DEMO_DIR)/logs/; simulator log (cloud connections): $(DEMO_DIR)/sim.log"

# Stops the local PostgreSQL cluster and S3 server first: removing .build under a running cluster
# leaves a server nobody can stop with `make db-down`.
clean: db-down s3-down
	rm -rf .build $(PACKAGE_SCRATCH) dist $(DEMO_DIR)

# --- Local PostgreSQL (Registry) -------------------------------------------------------------
.PHONY: db-up db-down db-env schema-embed
# A private cluster in .pgdata/ (data/, socket/, server.log), on a Unix socket only
# (listen_addresses=''), used whenever DATABASE_URL is unset. PostgreSQL refuses to run as root,
# so as root the server runs as the `postgres` user. When that user cannot reach the project folder
# (e.g. under /root) or the socket path would exceed the 107-byte limit, .pgdata is a symlink to a
# folder in /tmp. Superuser `keyline`, database `keyline`, trust authentication on the socket, so
# only the cluster's owner may reach the socket: socket/ is 0700 and the socket itself 0700
# (as root, the owner is `postgres`; root passes file permissions and still connects).
PG_DIR     := $(CURDIR)/.pgdata
PG_AS      := $(if $(filter 0,$(shell id -u)),runuser -u postgres --,)
# Connection settings for the tests and the demo (the socket folder with symlinks resolved).
# make's targets (test, bench, demo) never use the server DATABASE_URL names: they create databases
# and roles. KEYLINE_TEST_DATABASE_URL asks for another server by name; otherwise the local cluster,
# with DATABASE_URL blanked so a value from the shell never reaches the tests or their children.
PG_ENV      = $(if $(strip $(KEYLINE_TEST_DATABASE_URL)),DATABASE_URL="$(KEYLINE_TEST_DATABASE_URL)",DATABASE_URL= PGHOST="$$(readlink -f $(PG_DIR))/socket" PGPORT=5432 PGUSER=keyline PGDATABASE=keyline)

db-up: deps
	@if [ -n "$(strip $(KEYLINE_TEST_DATABASE_URL))" ]; then echo "db-up: KEYLINE_TEST_DATABASE_URL is set; not starting the local cluster"; exit 0; fi; \
	set -e; \
	bindir=$$(pg_config --bindir 2>/dev/null || true); \
	if [ ! -x "$$bindir/initdb" ]; then bindir=$$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1); fi; \
	if [ ! -x "$$bindir/initdb" ]; then echo "db-up: no initdb found (install the postgresql package)"; exit 1; fi; \
	as="$(PG_AS)"; pg() { ( cd / && $(PG_AS) "$$@" ); }; \
	if [ -L "$(PG_DIR)" ] && [ ! -e "$(PG_DIR)" ]; then rm -f "$(PG_DIR)"; fi; \
	if [ ! -e "$(PG_DIR)" ]; then \
	  path="$(PG_DIR)"; \
	  if [ $${#path} -gt 80 ] || { [ -n "$$as" ] && ! pg test -x "$(CURDIR)"; }; then \
	    target=$$(mktemp -d /tmp/keyline-pgdata.XXXXXX); ln -s "$$target" "$(PG_DIR)"; \
	    echo "db-up: cluster in $$target (linked from .pgdata)"; \
	  else mkdir -p "$(PG_DIR)"; fi; \
	fi; \
	dir=$$(readlink -f "$(PG_DIR)"); \
	mkdir -p "$$dir/data" "$$dir/socket"; \
	if [ -n "$$as" ]; then chown -R postgres: "$$dir"; fi; \
	chmod 700 "$$dir/data" "$$dir/socket"; \
	if [ -n "$$as" ] && ! pg test -w "$$dir/socket"; then \
	  echo "db-up: the postgres user cannot reach $$dir; make every parent folder traversable (chmod o+x) or set DATABASE_URL"; exit 1; \
	fi; \
	if [ ! -f "$$dir/data/PG_VERSION" ]; then \
	  pg "$$bindir/initdb" -D "$$dir/data" -U keyline --auth=trust --encoding=UTF8 --no-locale >"$$dir/initdb.log" 2>&1 \
	    || { cat "$$dir/initdb.log"; exit 1; }; \
	fi; \
	if ! pg "$$bindir/pg_ctl" -D "$$dir/data" status >/dev/null 2>&1; then \
	  pg "$$bindir/pg_ctl" -D "$$dir/data" -l "$$dir/server.log" -w -t 60 \
	    -o "-c listen_addresses='' -c unix_socket_directories='$$dir/socket' -c unix_socket_permissions=0700 -c max_connections=200" start >/dev/null \
	    || { tail -n 20 "$$dir/server.log"; exit 1; }; \
	fi; \
	chmod 700 "$$dir"/socket/.s.PGSQL.* 2>/dev/null || true; \
	"$$bindir/psql" -h "$$dir/socket" -U keyline -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = 'keyline'" | grep -q 1 \
	  || "$$bindir/createdb" -h "$$dir/socket" -U keyline keyline; \
	echo "db-up: PostgreSQL on $$dir/socket (user keyline, database keyline)"

db-down:
	@if [ ! -e "$(PG_DIR)" ]; then exit 0; fi; \
	bindir=$$(pg_config --bindir 2>/dev/null || true); \
	if [ ! -x "$$bindir/pg_ctl" ]; then bindir=$$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1); fi; \
	dir=$$(readlink -f "$(PG_DIR)"); \
	pg() { ( cd / && $(PG_AS) "$$@" ); }; \
	if pg "$$bindir/pg_ctl" -D "$$dir/data" status >/dev/null 2>&1; then \
	  pg "$$bindir/pg_ctl" -D "$$dir/data" -m fast -w stop; fi

# Prints the connection settings for a shell: eval "$(make -s db-env)"
db-env:
	@echo 'export $(PG_ENV)'

# Regenerates the migrations compiled into keyline from schema/*.sql (RegistryTests checks them).
EMBEDDED_MIGRATIONS := Sources/Registry/EmbeddedMigrations.swift
schema-embed:
	@{ echo '// Generated from schema/*.sql by `make schema-embed`; do not edit. RegistryTests checks it.'; \
	  echo 'enum EmbeddedMigrations {'; \
	  echo '    static let all: [Migration] = ['; \
	  for f in schema/[0-9][0-9][0-9][0-9]_*.sql; do \
	    b=$$(basename "$$f" .sql); \
	    echo "        Migration(version: $$((10#$${b%%_*})), name: \"$${b#*_}\", sql: #\"\"\""; \
	    cat "$$f"; echo; echo '"""#),'; \
	  done; \
	  echo '    ]'; echo '}'; } > $(EMBEDDED_MIGRATIONS)

# --- Local S3 server (S3EscrowStore tests and bench) ------------------------------------------
# moto's server mode (PyPI `moto[server]`, installed by `make deps`) on 127.0.0.1 only, on a free
# port, state in .s3/ (pid, endpoint, server.log). In-memory: a restart empties it. Started through
# Tests/EscrowS3Tests/Fixtures/s3-server.py, which makes moto's conditional writes atomic as S3's
# are. The tests and the bench read the endpoint from KEYLINE_TEST_S3_ENDPOINT (S3_ENV) or,
# without make, .s3/endpoint.
S3_DIR := $(CURDIR)/.s3
S3_ENV  = KEYLINE_TEST_S3_ENDPOINT="$$(cat $(S3_DIR)/endpoint)"

s3-up: deps
	@set -e; mkdir -p $(S3_DIR); \
	if [ -f $(S3_DIR)/pid ] && kill -0 "$$(cat $(S3_DIR)/pid)" 2>/dev/null && [ -f $(S3_DIR)/endpoint ] \
	   && python3 -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1] + '/moto-api/data.json', timeout=2)" "$$(cat $(S3_DIR)/endpoint)" 2>/dev/null; then \
	  echo "s3-up: moto already on $$(cat $(S3_DIR)/endpoint)"; exit 0; fi; \
	port=$$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); \
	setsid python3 Tests/EscrowS3Tests/Fixtures/s3-server.py -H 127.0.0.1 -p $$port >$(S3_DIR)/server.log 2>&1 < /dev/null & echo $$! > $(S3_DIR)/pid; \
	for i in $$(seq 150); do \
	  python3 -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" "http://127.0.0.1:$$port/moto-api/data.json" 2>/dev/null && break; \
	  kill -0 "$$(cat $(S3_DIR)/pid)" 2>/dev/null || { cat $(S3_DIR)/server.log; echo "s3-up: moto did not start"; exit 1; }; \
	  sleep 0.2; done; \
	echo "http://127.0.0.1:$$port" > $(S3_DIR)/endpoint; \
	echo "s3-up: moto S3 server on http://127.0.0.1:$$port (pid $$(cat $(S3_DIR)/pid))"

s3-down:
	@if [ -f $(S3_DIR)/pid ] && kill -0 "$$(cat $(S3_DIR)/pid)" 2>/dev/null; then kill "$$(cat $(S3_DIR)/pid)"; fi; rm -f $(S3_DIR)/pid $(S3_DIR)/endpoint

# Prints the variables the aws CLI needs to reach the local server: eval "$$(make -s s3-env)"
s3-env:
	@echo "export AWS_ENDPOINT_URL=$$(cat $(S3_DIR)/endpoint) AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=keyline-test AWS_SECRET_ACCESS_KEY=keyline-test-secret"
