#!/usr/bin/env bash
# Brings up (or tears down) the op25b testbed by hand, for exploring what the automated
# end-to-end tests (testbed/tests/*.rs) check. Run as root.
#
#   scripts/testbed.sh up      namespaces tb-sub, tb-app, tb-net joined by veth pairs;
#                              aiosmtpd on 25 and 587 in tb-net (MX 10.0.0.1 / 2001:db8:1::1,
#                              relay 10.0.0.25 / 2001:db8:1::25); writes /tmp/op25b-testbed.toml
#   scripts/testbed.sh down    removes all of it
#
# Then, for example:
#   ip netns exec tb-app target/release/op25b run --config /tmp/op25b-testbed.toml &
#   ip netns exec tb-sub swaks --server 10.0.0.1 --local-interface 10.0.0.2 --to a@mx.example   # blocked
#   ip netns exec tb-sub swaks --server 10.0.0.25 --local-interface 10.0.0.2 --to a@mx.example  # relay: delivered
#   target/release/op25b ctl --config /tmp/op25b-testbed.toml explain 10.0.0.2 10.0.0.1 25
set -euo pipefail
cmd=${1:-}
case "$cmd" in
up)
  for ns in tb-sub tb-app tb-net; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
  ip link add sub0 netns tb-sub type veth peer name acc0 netns tb-app
  ip link add core0 netns tb-app type veth peer name net0 netns tb-net
  for pair in tb-sub:sub0 tb-app:acc0 tb-app:core0 tb-net:net0; do
    ns=${pair%%:*}; i=${pair##*:}
    ip netns exec "$ns" sysctl -qw "net.ipv6.conf.$i.accept_dad=0"
    ip netns exec "$ns" ethtool -K "$i" tx off tso off gso off gro off >/dev/null 2>&1 || true
    ip -n "$ns" link set "$i" up
  done
  ip -n tb-sub addr add 10.0.0.2/24 dev sub0        # dynamic subscriber
  ip -n tb-sub addr add 10.0.0.3/24 dev sub0        # exempt (static-IP customer)
  ip -n tb-sub addr add 2001:db8:1::2/64 dev sub0 nodad
  ip -n tb-sub addr add 2001:db8:1::3/64 dev sub0 nodad
  ip -n tb-net addr add 10.0.0.1/24 dev net0        # external MX
  ip -n tb-net addr add 10.0.0.25/24 dev net0       # the ISP's relay
  ip -n tb-net addr add 2001:db8:1::1/64 dev net0 nodad
  ip -n tb-net addr add 2001:db8:1::25/64 dev net0 nodad
  ip netns exec tb-net python3 - >/tmp/op25b-testbed-mx.log 2>&1 <<'PY' &
import threading
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Debugging
for h in ("0.0.0.0", "::"):
    for p in (25, 587):
        Controller(Debugging(), hostname=h, port=p).start()
threading.Event().wait()
PY
  echo $! >/tmp/op25b-testbed-mx.pid
  cat >/tmp/op25b-testbed.toml <<'TOML'
[outbound]
dynamic = ["10.0.0.0/24", "2001:db8:1::/64"]
exempt = ["10.0.0.3", "2001:db8:1::3"]
relays = ["10.0.0.25", "2001:db8:1::25"]

[dataplane]
backend = "af_packet"
access = "acc0"
core = "core0"
workers = 1

[control]
socket = "/tmp/op25b-testbed.sock"
metrics = "127.0.0.1:9725"
TOML
  echo "testbed up: config /tmp/op25b-testbed.toml, MX log /tmp/op25b-testbed-mx.log"
  ;;
down)
  [ -f /tmp/op25b-testbed-mx.pid ] && kill "$(cat /tmp/op25b-testbed-mx.pid)" 2>/dev/null || true
  for ns in tb-sub tb-app tb-net; do ip netns del "$ns" 2>/dev/null || true; done
  rm -f /tmp/op25b-testbed-mx.pid /tmp/op25b-testbed.toml
  echo "testbed down"
  ;;
*)
  echo "usage: $0 up|down" >&2
  exit 2
  ;;
esac
