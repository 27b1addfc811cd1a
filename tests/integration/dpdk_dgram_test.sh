#!/bin/sh
# dpdk_dgram_test.sh - atomq datagrams through atomq-dataplane's DPDK port:
# atomqd --dpdk-args with net_af_packet on the root side of a veth pair
# (tests/integration/veth_env.sh), no kernel UDP socket (--udp off), and
# kernel UDP clients inside the namespace (dpdk_dgram_client.py). Checks
# that the appliance answers ping (ARP and ICMP by the DPDK port), that
# every datagram op works through it, and the counters the server keeps,
# the port's own (dpdk_* in /workers) among them.
#
#   sh tests/integration/dpdk_dgram_test.sh build/control/atomqd
#
# Exits 77 (skip) where the host cannot make a namespace or DPDK is not
# built in.
set -u
atomqd=${1:?usage: dpdk_dgram_test.sh PATH_TO_ATOMQD}
here=$(dirname "$0")
fail() {
        echo "FAIL: $*"
        [ -f "$dir/atomqd.log" ] && { echo "--- atomqd log"; tail -30 "$dir/atomqd.log"; }
        exit 1
}
. "$here/veth_env.sh"
veth_up

mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$atomqd" --workers 1 --hugepages off --max-entities 4096 --max-agents 0 --nats off --udp off \
        --control "$dir/ctl.sock" --metrics "127.0.0.1:$mport" --data-dir "$dir/data" \
        --dpdk-args "--no-huge -m 256 --no-pci --no-shconf --no-telemetry -l 0 \
--file-prefix=aqd$$ --log-level=lib.eal:error --vdev=net_af_packet0,iface=$va" \
        --dpdk-addr "$our_ip:4223" >"$dir/atomqd.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
        grep -q "datagrams on DPDK" "$dir/atomqd.log" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
done
if grep -q "built without DPDK" "$dir/atomqd.log"; then
        skip "atomq-dataplane was built without DPDK"
fi
grep -q "datagrams on DPDK $our_ip:4223" "$dir/atomqd.log" || fail "the dataplane did not start its DPDK port"

ip netns exec "$ns" ping -c 2 -i 0.2 -W 2 "$our_ip" >"$dir/ping.out" 2>&1 || fail "ping $our_ip: $(cat "$dir/ping.out")"
ip netns exec "$ns" python3 "$here/dpdk_dgram_client.py" "$our_ip" 4223 || fail "datagram client"

counter() {
        python3 - "$mport" "$1" <<'PY'
import json, sys, urllib.request
rows = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/workers", timeout=5))
print(sum(w[sys.argv[2]] for w in rows))
PY
}
[ "$(counter udp_sessions_opened)" -eq 2 ] || fail "sessions opened: $(counter udp_sessions_opened)"
[ "$(counter udp_bad_crc)" -eq 1 ] || fail "bad CRC counted: $(counter udp_bad_crc)"
[ "$(counter udp_retransmits)" -ge 40 ] || fail "retransmits: $(counter udp_retransmits)"
[ "$(counter udp_spoofed)" -eq 0 ] || fail "spoofed: $(counter udp_spoofed)"
# The port's own counters reach /workers every 100 ms.
sleep 0.3
[ "$(counter dpdk_arp_replies)" -ge 1 ] || fail "ARP replies: $(counter dpdk_arp_replies)"
[ "$(counter dpdk_icmp_replies)" -eq 2 ] || fail "ICMP replies: $(counter dpdk_icmp_replies)"
# At least the 60 sends, 20 acks and the pings; retransmissions vary.
[ "$(counter dpdk_rx_packets)" -ge 83 ] || fail "rx packets: $(counter dpdk_rx_packets)"
# Not asserted: dpdk_rx_malformed. The namespace's kernel sends frames of
# its own on the link now and then (seen: 3-6 in a slow run); the datagram
# path's own checks are the udp_* counters above.
[ "$(counter dpdk_rx_bad_csum)" -eq 0 ] || fail "bad checksums: $(counter dpdk_rx_bad_csum)"

kill -TERM "$pid"
wait "$pid" || fail "atomqd exit status $?"
pid=""
grep -q "ERROR\|error:" "$dir/atomqd.log" && fail "errors in the log"
echo "PASS: dpdk_dgram_test"
