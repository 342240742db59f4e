# The two commands a newcomer needs: `make demo` and `make test`. Both install what is missing first.
.PHONY: setup test-setup build guest services test-stack test-host test-host-down lint test test-host-stack test-study-stack test-unit demo bench clean

setup:
	@bash scripts/setup.sh

# setup plus the packages only the tests' studies need (lvm2 for disk.lvm).
test-setup:
	@KVMIO_SETUP_TESTS=1 bash scripts/setup.sh

build: setup

guest: setup
	@node bin/kvmio.js guest build

services:
	@bash scripts/services.sh

# The tests' second stack beside the host's: QEMU 10 in /opt/kvmio/qemu-10, libvirt 11.3 (never in demo).
test-stack:
	@bash scripts/test-stack.sh

# A second host on this machine for the remote-host tests (own network namespace, sshd and libvirtd);
# the last line printed is its libvirt URI.
test-host: setup
	@bash scripts/test-host.sh up

test-host-down:
	@bash scripts/test-host.sh down

# Duplicated logic in src/ fails the lint (jscpd, settings in .jscpd.json).
lint: setup
	@npx biome check src test scripts bin
	@npx jscpd

# Every test on the host's stack (Debian 12: QEMU 7.2, libvirt 9.0) first, then on the study's
# (test-stack: QEMU 10, libvirt 11.3) the e2e files of that stack; scripts/test-phases.sh says which
# stack each phase runs on. The test host is taken down after the tests, also when they fail.
test: test-setup services guest lint test-host
	@bash scripts/test-phases.sh; rc=$$?; bash scripts/test-host.sh down; exit $$rc

test-host-stack: test-setup services guest lint test-host
	@bash scripts/test-phases.sh host; rc=$$?; bash scripts/test-host.sh down; exit $$rc

test-study-stack: setup services guest
	@bash scripts/test-phases.sh study

test-unit: setup
	@node --test --test-concurrency=1 dist/test/unit/

demo: setup services guest
	@node bin/kvmio.js doctor
	@node bin/kvmio.js run --preset quick --db demo.sqlite
	@node bin/kvmio.js report --db demo.sqlite --out demo-report latest
	@echo "demo: results in demo.sqlite, report in demo-report/index.html"

bench: setup services guest
	@node dist/scripts/bench.js

clean:
	rm -rf dist
