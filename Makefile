# keyline — see README.md. `make test` and `make demo` work from a fresh clone on a fresh
# Debian machine: `deps` installs whatever system package is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := build

SWIFT      ?= swift
CONFIG     ?= debug
BUILD_FLAGS ?=
BIN         = $(shell $(SWIFT) build -c $(CONFIG) --show-bin-path)
KEYLINE     = $(BIN)/keyline
DEMO_DIR   := .demo

# Debian packages the build, the tests and the demo need.
APT_PACKAGES := libssl-dev libpq-dev libusb-1.0-0-dev postgresql dfu-util age openssl pkg-config gcc
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps build test demo bench clean standin

# The libusb stand-in (Sources/libusb-standin): a libusb-1.0.so.0 that forwards to the device
# simulator, for dfu-util and keyline's USB code on machines without a USB bus. Not a SwiftPM
# target; tests and `keyline sim serve` users load it with LD_LIBRARY_PATH=$(STANDIN_DIR).
STANDIN_DIR := .build/standin
STANDIN     := $(STANDIN_DIR)/libusb-1.0.so.0
STANDIN_SRC := $(wildcard Sources/libusb-standin/*.c)

standin: $(STANDIN)

$(STANDIN): $(STANDIN_SRC)
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

build: deps
	$(SWIFT) build -c $(CONFIG) $(BUILD_FLAGS)

test: deps standin db-up
	$(SWIFT) build --build-tests $(BUILD_FLAGS)
	$(PG_ENV) $(SWIFT) test --skip-build $(BUILD_FLAGS)

bench: deps standin db-up
	$(SWIFT) build -c release --product keyline $(BUILD_FLAGS)
	$(SWIFT) build -c release --product keyline-bench $(BUILD_FLAGS)
	$$($(SWIFT) build -c release --show-bin-path)/keyline-bench
	$(PG_ENV) KEYLINE=$$($(SWIFT) build -c release --show-bin-path)/keyline \
	  KEYLINE_BENCH=$$($(SWIFT) build -c release --show-bin-path)/keyline-bench bash Benchmarks/provision-bench.sh

# Until the provisioning runner exists, the demo shows the key commands on real files.
demo: build db-up standin
	@rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	@echo "== a Photon (TCP) key and a Boron (UDP) key, as particle keys new writes them"
	$(KEYLINE) keys new --platform photon $(DEMO_DIR)/photon
	$(KEYLINE) keys new --platform boron $(DEMO_DIR)/boron
	@ls -l $(DEMO_DIR)
	@echo "== inspect them"
	$(KEYLINE) keys inspect $(DEMO_DIR)/photon.der
	$(KEYLINE) keys inspect $(DEMO_DIR)/boron.pem --json
	@echo "== an OpenSSL 3 PKCS#8 key would be truncated in the 612-byte slot; keyline converts it"
	openssl genrsa -out $(DEMO_DIR)/openssl3.pem 1024 2>/dev/null
	$(KEYLINE) keys inspect $(DEMO_DIR)/openssl3.pem
	@echo "== server key blobs: Particle's default and a private cloud"
	$(KEYLINE) keys server-blob --platform boron -o $(DEMO_DIR)/boron-server.der
	$(KEYLINE) keys address $(DEMO_DIR)/boron-server.der
	$(KEYLINE) keys server-blob --platform photon --host 10.0.0.5 --port 5683 -o $(DEMO_DIR)/photon-lab.der
	$(KEYLINE) keys address $(DEMO_DIR)/photon-lab.der
	@echo "== and a refusal: an EC key cannot go in a Photon's RSA slot"
	! $(KEYLINE) keys inspect $(DEMO_DIR)/boron.der --platform photon
	@echo "== escrow: the RMA bench's identity, a station escrows the Boron key to a write-once store"
	$(KEYLINE) escrow keygen -o $(DEMO_DIR)/rma-identity.txt > $(DEMO_DIR)/rma-recipient.txt
	$(KEYLINE) escrow backup $(DEMO_DIR)/boron.der --device-id e00fce68a1b2c3d4e5f60718 --platform boron \
	  --product demo --job demo-job --station demo-station -R $(DEMO_DIR)/rma-recipient.txt --store $(DEMO_DIR)/escrow
	@find $(DEMO_DIR)/escrow -type f | xargs ls -l
	@echo "== the RMA bench reads it back; Debian's age decrypts the same file"
	$(KEYLINE) escrow show -i $(DEMO_DIR)/rma-identity.txt $(DEMO_DIR)/escrow/demo/e00fce68a1b2c3d4e5f60718/*.age
	f=$$(ls $(DEMO_DIR)/escrow/demo/e00fce68a1b2c3d4e5f60718/*.age); \
	  cmp <(age -d -i $(DEMO_DIR)/rma-identity.txt $$f) <($(KEYLINE) escrow decrypt -i $(DEMO_DIR)/rma-identity.txt $$f) && \
	  echo "age -d and keyline escrow decrypt give identical plaintext (not printed: it holds the key)"
	@echo "== an audit checks the recorded SHA-256 without the identity; a changed byte is refused"
	f=$$(ls $(DEMO_DIR)/escrow/demo/e00fce68a1b2c3d4e5f60718/*.age); \
	  $(KEYLINE) escrow verify $$f --sha256 $$(sha256sum $$f | cut -c1-64) && \
	  cp $$f $(DEMO_DIR)/tampered.age && printf '\x01' | dd of=$(DEMO_DIR)/tampered.age bs=1 seek=300 conv=notrunc 2>/dev/null && \
	  ! $(KEYLINE) escrow show -i $(DEMO_DIR)/rma-identity.txt $(DEMO_DIR)/tampered.age
	@echo "== a simulated line: 2 Photons and 2 Borons behind keyline's libusb stand-in"
	@set -e; sock=$(DEMO_DIR)/sim.sock; export KEYLINE_SIM_SOCKET=$$sock LD_LIBRARY_PATH=$(CURDIR)/$(STANDIN_DIR); \
	  $(KEYLINE) sim serve --socket $$sock --fleet photon:2,boron:2 --state $(DEMO_DIR)/sim --time-scale 0.05 > $(DEMO_DIR)/sim.log 2>&1 & \
	  sim=$$!; trap "kill $$sim 2>/dev/null" EXIT; \
	  for i in $$(seq 50); do [ -S $$sock ] && break; sleep 0.1; done; \
	  echo "$$ keyline devices"; $(KEYLINE) devices; \
	  echo "$$ keyline dfu enter --port 1-2.1   (vendor request 50; the same serial re-enumerates in DFU mode)"; \
	  $(KEYLINE) dfu enter --port 1-2.1; \
	  echo "$$ dfu-util -l   (Debian's unmodified dfu-util, same devices)"; dfu-util -l 2>/dev/null | grep 'path="1-2.1"'; \
	  echo "$$ keyline dfu read --port 1-2.1 --alt 1 --address 3106 --length 192   (the key the device generated at boot;"; \
	  echo "   a 0600 file for this demo, removed below: the provisioning runner keeps key bytes in memory only)"; \
	  $(KEYLINE) dfu read --port 1-2.1 --alt 1 --address 3106 --length 192 -o $(DEMO_DIR)/boron-slot.bin; \
	  dfu-util -p 1-2.1 -a 1 -s 3106:192 -U $(DEMO_DIR)/boron-slot-dfu-util.bin > /dev/null 2>&1; \
	  cmp $(DEMO_DIR)/boron-slot.bin $(DEMO_DIR)/boron-slot-dfu-util.bin && echo "dfu-util reads the identical 192 bytes"; \
	  $(KEYLINE) keys inspect $(DEMO_DIR)/boron-slot.bin --platform boron | sed -n '1,6p'; \
	  id=$$($(KEYLINE) devices --json | grep '"1-2.1"' | sed 's/.*"deviceID":"\([0-9a-f]*\)".*/\1/'); \
	  echo "$$ keyline escrow backup   (device $$id's key, escrowed for the RMA bench)"; \
	  $(KEYLINE) escrow backup $(DEMO_DIR)/boron-slot.bin --device-id $$id --platform boron --product demo \
	    --job demo-job --station demo-station -R $(DEMO_DIR)/rma-recipient.txt --store $(DEMO_DIR)/escrow; \
	  rm -f $(DEMO_DIR)/boron-slot.bin $(DEMO_DIR)/boron-slot-dfu-util.bin
	@echo "== the registry: schema migrations into the private PostgreSQL cluster (make db-up)"
	$(KEYLINE) db migrate
	$(KEYLINE) db status

clean:
	rm -rf .build $(DEMO_DIR)

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
PG_ENV      = $(if $(strip $(DATABASE_URL)),,PGHOST="$$(readlink -f $(PG_DIR))/socket" PGPORT=5432 PGUSER=keyline PGDATABASE=keyline)

db-up: deps
	@if [ -n "$(strip $(DATABASE_URL))" ]; then echo "db-up: DATABASE_URL is set; not starting the local cluster"; exit 0; fi; \
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
