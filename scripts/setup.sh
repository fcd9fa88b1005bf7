#!/usr/bin/env bash
# Installs everything the build, the tests and the demo need on a fresh Debian 12 machine
# (run as root). Idempotent: skips what is already there.
set -euo pipefail

need_apt=()
command -v tcpdump >/dev/null 2>&1 || need_apt+=(tcpdump)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v ethtool >/dev/null 2>&1 || need_apt+=(ethtool)
command -v ping >/dev/null 2>&1 || need_apt+=(iputils-ping)
command -v swaks >/dev/null 2>&1 || need_apt+=(swaks)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
# The `dpdk` feature (built by scripts/test.sh through --all-features) links DPDK 22.11;
# libdpdk-dev brings the net_null and net_pcap virtual devices its tests run on.
if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists libdpdk; then
  need_apt+=(libdpdk-dev)
fi
if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# promtool (from Debian's prometheus package) lints the metrics page in the testbed. The
# package also brings a Prometheus server: where systemd runs, it is stopped and disabled
# again, so setting up leaves no server running.
if ! command -v promtool >/dev/null 2>&1; then
  echo "setup: installing prometheus (for promtool)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  if [[ -d /run/systemd/system ]]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

# aiosmtpd: the real SMTP server of the testbed. Debian's package serves Debian's python3;
# a python3 of its own (pyenv, say) gets it from PyPI, with pip brought first if missing.
if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  echo "setup: installing aiosmtpd"
  export DEBIAN_FRONTEND=noninteractive
  if python3 -c 'import sys; sys.exit(sys.prefix != "/usr")'; then
    apt-get update -qq
    apt-get install -y -qq python3-aiosmtpd >/dev/null
  else
    if ! python3 -m pip --version >/dev/null 2>&1; then
      python3 -m ensurepip --upgrade >/dev/null 2>&1 || {
        apt-get update -qq
        apt-get install -y -qq python3-pip >/dev/null
      }
    fi
    python3 -m pip install --quiet aiosmtpd 2>/dev/null ||
      python3 -m pip install --quiet --break-system-packages aiosmtpd
  fi
  python3 -c 'import aiosmtpd' || {
    echo "setup: aiosmtpd is still not importable by $(command -v python3)" >&2
    exit 1
  }
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing: install the Rust toolchain (rustup) first" >&2
  exit 1
fi

# cargo-fuzz drives the libFuzzer targets in fuzz/ (on stable Rust via RUSTC_BOOTSTRAP).
if [[ "${OP25B_SKIP_FUZZ:-0}" != 1 ]] && ! cargo fuzz --version >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz"
  cargo install --quiet --locked cargo-fuzz
fi
