# eTicket: `make run` starts the appliance here with embedded defaults (runtime dependencies only); `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= .eticket-data
LISTEN ?= 127.0.0.1:8080
API_LISTEN ?= 127.0.0.1:8443
PRINTER_LISTEN ?= 127.0.0.1:9100
RELAY_URL ?=
RELAY_LISTEN ?= 127.0.0.1:8090
RELAY_DATA ?= relay-data
# The screen language for `make run` (fr, it, en, de, es; the device's default is fr): `make run LANGUAGE=en`.
# Taken from the command line only: gettext's LANGUAGE in the environment (e.g. en_US:en) is not ours.
SCREEN_LANGUAGE := $(if $(filter command line,$(origin LANGUAGE)),$(LANGUAGE))

.PHONY: run relay test test-slow bench bench-memory bench-printer bench-relay bench-fleet bench-update lint sysdeps sysdeps-image loopback-multicast image image-lock bundle clean

# Two installs into one .venv: what running needs (`make run`, `make relay`: the project's dependencies
# only), and that plus the test tools (`make test`, `lint`, `bench`: pytest, mypy, ruff, playwright, ...).
RUN_STAMP := $(VENV)/.run-stamp
TEST_STAMP := $(VENV)/.test-stamp

$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(RUN_STAMP)

# Debian packages the tests use (avahi as an independent mDNS peer, iproute2 for namespaces).
sysdeps:
	@bash scripts/sysdeps.sh

# Debian packages for building and booting the image (mmdebstrap, qemu, mtools, ...); binfmt for arm64.
sysdeps-image:
	@bash scripts/sysdeps-image.sh

# The SD-card image: `make image` (Raspberry Pi 3/4/Zero 2 W, arm64) or `make image ARCH=amd64` (UEFI PC,
# the boot test's variant). Output in build/image-$(ARCH)/: .img, .img.xz, .manifest, .sha256.
# FLEET_KEYS=DIR: the fleet's keys (`eticket fleet keys init DIR`); the image trusts DIR/keyring.pem for
# update bundles (made in fleet-keys/ when missing). VERSION=: the release (default <version>+<commit>).
ARCH ?= arm64
FLEET_KEYS ?= fleet-keys
VERSION ?=
SIGNING_CERT ?= $(FLEET_KEYS)/signing.crt
SIGNING_KEY ?= $(FLEET_KEYS)/signing.key
image: sysdeps-image $(RUN_STAMP)
	@test -f $(FLEET_KEYS)/keyring.pem || { echo "no $(FLEET_KEYS)/keyring.pem: a new fleet CA there (keep ca.key offline)"; \
	  $(BIN)/eticket fleet keys init $(FLEET_KEYS); }
	FLEET_KEYS=$(abspath $(FLEET_KEYS)) $(if $(VERSION),VERSION=$(VERSION)) \
	  bash image-build/build.sh $(ARCH) build/image-$(ARCH)

# A signed RAUC bundle (verity) of that image build's root, stamped VERSION (default: the build's):
# build/image-$(ARCH)/eticket-$(ARCH)-VERSION.raucb (+ .sha256), signed with SIGNING_CERT/SIGNING_KEY.
bundle: sysdeps-image
	BUILD=build/image-$(ARCH) SIGNING_CERT=$(SIGNING_CERT) SIGNING_KEY=$(SIGNING_KEY) \
	  $(if $(VERSION),VERSION=$(VERSION)) bash image-build/bundle.sh $(ARCH) build/image-$(ARCH)

# Re-pin the appliance's wheels for the image (image-build/requirements.lock, both architectures).
image-lock: $(RUN_STAMP)
	bash image-build/lock-wheels.sh

# mDNS is confined to loopback on a desk: it needs multicast on lo (root only; harmless if already on).
loopback-multicast:
	@if [ "$$(id -u)" = 0 ]; then ip link set lo multicast on; \
	elif ! ip link show lo | grep -q MULTICAST; then \
	  echo "note: 'ip link set lo multicast on' (as root) lets mDNS work on loopback"; fi

run: $(RUN_STAMP) loopback-multicast
	@bash scripts/run-banner.sh "$(LISTEN)" "$(API_LISTEN)" "$(DATA)" "$(PRINTER_LISTEN)"
	$(BIN)/eticket serve --data-dir $(DATA) --listen $(LISTEN) --api-listen $(API_LISTEN) \
	  --printer-listen $(PRINTER_LISTEN) \
	  --mdns-interfaces 127.0.0.1 --kiosk $(if $(RELAY_URL),--relay-url $(RELAY_URL)) \
	  $(if $(SCREEN_LANGUAGE),--language $(SCREEN_LANGUAGE))

# A relay on this machine (directory storage in $(RELAY_DATA)): `make relay`, then `make run RELAY_URL=http://127.0.0.1:8090`.
relay: $(RUN_STAMP)
	$(BIN)/eticket relay serve --storage $(RELAY_DATA) --listen $(RELAY_LISTEN)

# Three pytest workers (pytest-xdist), each test file on one worker: most tests wait on real processes, so
# the quick suite takes about 8 minutes here instead of about 20 on one worker.
test: $(TEST_STAMP) sysdeps loopback-multicast
	$(BIN)/python -m pytest -q -m "not slow" -n 3 --dist loadfile

# Slow proofs (image builds, emulated boots): tests/image in one pytest process, the rest of the slow suite in
# another beside it (scripts/test-slow.sh; its output follows the image tests').
test-slow: $(TEST_STAMP) sysdeps sysdeps-image loopback-multicast
	@bash scripts/test-slow.sh $(BIN)/python

bench: $(TEST_STAMP) loopback-multicast
	$(BIN)/python bench/post_to_qr.py

# A till printing to the device (port 9100): last byte to QR beside the HTTPS intake, receipts/s, converter memory.
bench-printer: $(TEST_STAMP) loopback-multicast
	$(BIN)/python bench/printer.py

# The device's memory (PSS per process) after 100 receipts, with the pygame kiosk and with Chromium on /screen.
bench-memory: $(TEST_STAMP) loopback-multicast
	$(BIN)/python bench/device_memory.py

# Relay downloads against nginx under wrk (Debian's wrk and nginx-light, installed when root).
bench-relay: $(TEST_STAMP)
	@bash scripts/sysdeps.sh wrk nginx
	$(BIN)/python bench/relay_vs_nginx.py

# The fleet tool's own overhead per device with 5 and 20 namespace device hosts (sshd, rauc, eticket update).
bench-fleet: $(TEST_STAMP) sysdeps
	$(BIN)/python bench/fleet.py

# One update cycle of an arm64 A/B device in qemu (deploy, operator rollback, a release failing its health gate).
bench-update: $(TEST_STAMP) sysdeps sysdeps-image
	$(BIN)/python bench/update_cycle.py

lint: $(TEST_STAMP)
	$(BIN)/ruff check eticket_core appliance kiosk relay provisioning fleet tests bench image-build
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(DATA) .other-data .other-screen relay-data *.egg-info
