# PlantGate — every target installs what it needs, then does its job.
#   sudo make run     bring up the namespace lab (3 hubs) and show the port matrix working
#   sudo make test    ruff, mypy, unit tests and kernel tests (needs root)
#   sudo make bench   side-by-side measurements (ours vs. baselines)

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# openssh-server gives the lab its ssh targets (sshd inside lab namespaces only): the install
# below keeps Debian from starting or enabling it on the machine itself (policy-rc.d).
# rsyslog + rsyslog-gnutls: the lab's SOC collector (gateway/lab/collector.py), same treatment.
# chromium + libnss3-tools: the MES screens' browser test (tests/browser: Debian's Chromium
# driven by Playwright; certutil puts the appliance's CA in a throwaway NSS database).
# postgresql: server binaries for the MES's PostgreSQL tests (tests/unit/mes/pg.py starts a
# throwaway server of its own, on a Unix socket in a temporary directory); the same
# treatment: Debian's main cluster is created but never started or enabled here.
APT_PACKAGES := nftables libnftables1 iproute2 dnsmasq-base iperf3 nmap conntrack \
	wireguard-tools wireguard-go chrony procps util-linux kmod openssh-server openssh-client \
	rsyslog rsyslog-gnutls chromium libnss3-tools postgresql
PREFIX ?= pg
HUBS ?= 3

.PHONY: run test bench deps system-deps lint unit kernel down clean schema

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "apt-get install:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		guard=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; guard=1; \
		fi; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		status=$$?; if [ -n "$$guard" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
		case " $$missing " in *" openssh-server "*) \
			systemctl disable ssh.service >/dev/null 2>&1 || true;; esac; \
		case " $$missing " in *" rsyslog "*) \
			systemctl disable rsyslog.service >/dev/null 2>&1 || true;; esac; \
		case " $$missing " in *" postgresql "*) \
			systemctl disable postgresql.service >/dev/null 2>&1 || true;; esac; \
		exit $$status; \
	else echo "system packages: all present"; fi

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

deps: system-deps $(STAMP)

PY_DIRS := $(wildcard gateway mes tests bench)

lint: deps
	$(VENV)/bin/ruff check $(PY_DIRS)
	$(VENV)/bin/ruff format --check $(PY_DIRS)
	$(VENV)/bin/mypy

unit: deps
	$(VENV)/bin/pytest -q tests/unit

kernel: deps
	$(VENV)/bin/pytest -q tests/kernel

test: deps lint
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit tests/browser tests/kernel

run: deps
	$(VENV)/bin/plantgate lab up --hubs $(HUBS) --prefix $(PREFIX) --probe

down: deps
	$(VENV)/bin/plantgate lab down --prefix $(PREFIX)

bench: deps
	$(PY) -m bench

schema: deps
	$(VENV)/bin/plantgate policy schema > policies/schema.json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
