#!/bin/sh
# nic_dpdk_veth_test.sh - the DPDK backend on a real kernel link: a veth
# pair whose one end is in a network namespace this test creates, DPDK on
# the root-side end through net_af_packet, and the kernel's own ping and
# UDP sockets inside the namespace as the peer. Checks that ping works
# (ARP and ICMP answered by nic_dpdk_poll), that UDP datagrams of 1 to 1472
# bytes come back intact through poll/send/flush, then the same through the
# bare forwarder (nic_dpdk_echo_burst, with a static ARP entry: it answers
# no ARP), then ping and echo again through net_af_xdp where the host can
# load an XDP program, and through net_tap with checksum offload; and the
# backend's counters.
#
#   sh tests/integration/nic_dpdk_veth_test.sh build-dpdk/tests/nic_dpdk_echo
#
# Needs root (or CAP_NET_ADMIN), ip, ping and python3; exits 77 (skip) and
# says why when the host cannot. Names carry the pid, so runs in parallel
# do not clash; the namespace and the link are removed on any exit.
set -u
echo_bin=${1:?usage: nic_dpdk_veth_test.sh PATH_TO_NIC_DPDK_ECHO}
fail() { echo "FAIL: $*"; for f in "$dir"/*.out; do echo "--- $f"; cat "$f"; done; exit 1; }
. "$(dirname "$0")/veth_env.sh"
our_mac=02:aa:00:00:00:02
port=9000
veth_up

# start MODE [VDEV [IFACE]]: the echo server on $va (through net_af_packet
# unless VDEV says otherwise), waits for its ready line. Returns 1 if it
# exited.
start() {
        vdev=${2:-net_af_packet0}
        "$echo_bin" --eal "--no-huge -m 256 --no-pci --no-shconf --no-telemetry -l 0 \
--file-prefix=aq$$ --log-level=lib.eal:error --vdev=$vdev,iface=${3:-$va}" \
                --ip "$our_ip" --port "$port" --mac "$our_mac" --mode "$1" --seconds 20 \
                >"$dir/$1.out" 2>&1 &
        pid=$!
        for _ in $(seq 1 100); do
                grep -q '^ready' "$dir/$1.out" && return 0
                kill -0 "$pid" 2>/dev/null || { pid=""; return 1; }
                sleep 0.05
        done
        fail "nic_dpdk_echo ($1) not ready"
}

# stop MODE: SIGTERM, and the stats line.
stop() {
        kill -TERM "$pid"
        wait "$pid" || fail "nic_dpdk_echo ($1) exit status $?"
        pid=""
        grep '^stats' "$dir/$1.out" || fail "no stats line"
}

# counter MODE NAME: one counter from the stats line.
counter() {
        sed -n "s/^stats.* $2=\([0-9]*\).*/\1/p" "$dir/$1.out"
}

udp_client() {  # MODE
        ip netns exec "$ns" python3 - "$our_ip" "$port" <<'EOF' || fail "UDP echo ($1)"
import os, socket, sys
ip, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2.0)
sizes = [1, 2, 3, 64, 511, 1000, 1471, 1472] + [100] * 92
for i, n in enumerate(sizes):
    msg = os.urandom(n)
    s.sendto(msg, (ip, port))
    got, frm = s.recvfrom(4096)
    if got != msg or frm != (ip, port):
        sys.exit(f"datagram {i} ({n} bytes): {len(got)} bytes back from {frm}")
# No fragments here: net_af_packet opens its socket with the kernel's
# PACKET_FANOUT_FLAG_DEFRAG, so the kernel reassembles them before DPDK
# sees them (fragments are dropped by the backend: unit and ring tests).
print(f"udp: {len(sizes)} datagrams echoed intact")
EOF
}

start dgram || fail "nic_dpdk_echo (dgram) exited"
ip netns exec "$ns" ping -c 1 -W 2 "$our_ip" >"$dir/ping.out" 2>&1 ||
        ip netns exec "$ns" ping -c 1 -W 2 "$our_ip" >>"$dir/ping.out" 2>&1 ||
        fail "ping $our_ip"
ip netns exec "$ns" ping -c 3 -i 0.2 -W 2 "$our_ip" >>"$dir/ping.out" 2>&1 || fail "ping x3"
echo "ping: ok"
udp_client dgram
stop dgram
[ "$(counter dgram arp_replies)" -ge 1 ] || fail "no ARP reply counted"
[ "$(counter dgram icmp_replies)" -ge 4 ] || fail "fewer than 4 ICMP replies counted"
[ "$(counter dgram rx_dgrams)" -eq 100 ] || fail "rx_dgrams is not 100"
[ "$(counter dgram tx_pkts)" -ge 105 ] || fail "tx_pkts below 105"
# Not asserted: rx_malformed. Once, on the ASan build in a loaded CI run,
# 14 frames that never reached the parser (rx_other stayed 0 while the
# namespace's kernel sent its IPv6 chatter) were counted malformed; the
# cause is not found yet. What the kernel sent us is checked above: every
# datagram came back intact (rx_dgrams) and no checksum was bad.
[ "$(counter dgram rx_bad_csum)" -eq 0 ] || fail "bad checksums from the kernel"

# The bare forwarder answers no ARP: the peer gets our MAC statically.
ip -n "$ns" neigh replace "$our_ip" lladdr "$our_mac" dev "$vb" nud permanent
start bare || fail "nic_dpdk_echo (bare) exited"
udp_client bare
stop bare
[ "$(counter bare rx_dgrams)" -eq 100 ] || fail "bare: rx_dgrams is not 100"

# AF_XDP (net_af_xdp) where the kernel, libbpf and the rights allow an XDP
# program on the veth: the same ping (ARP again: the entry is removed) and
# echo. Where it cannot start, that is said and the test still passes.
ip -n "$ns" neigh del "$our_ip" dev "$vb" 2>/dev/null
if start xdp net_af_xdp0; then
        ip netns exec "$ns" ping -c 2 -i 0.2 -W 2 "$our_ip" >>"$dir/ping.out" 2>&1 ||
                fail "ping over af_xdp"
        udp_client xdp
        stop xdp
        [ "$(counter xdp arp_replies)" -ge 1 ] || fail "af_xdp: no ARP reply counted"
        [ "$(counter xdp rx_dgrams)" -eq 100 ] || fail "af_xdp: rx_dgrams is not 100"
else
        echo "af_xdp: not available here: $(grep -i -m1 'error\|fail' "$dir/xdp.out")"
fi

# net_tap: a kernel tap interface that the PMD creates, moved into the
# namespace in the veth's place. Its PMD offers IPv4/UDP checksum offload,
# so here the backend's offload paths (rx ol_flags, tx pseudo-header sums)
# meet the kernel as a peer.
ip link del "$va"
tp=aqt$$
if start tap net_tap0 "$tp"; then
        ip link set "$tp" netns "$ns" || fail "move $tp into $ns"
        ip -n "$ns" addr add "$peer_ip/24" dev "$tp" || fail "address on $tp"
        ip -n "$ns" link set "$tp" up || fail "$tp up"
        ip netns exec "$ns" ping -c 2 -i 0.2 -W 2 "$our_ip" >>"$dir/ping.out" 2>&1 ||
                fail "ping over net_tap"
        udp_client tap
        grep -q "checksums rx nic tx nic" "$dir/tap.out" || fail "tap: checksums not offloaded"
        stop tap
        [ "$(counter tap rx_dgrams)" -eq 100 ] || fail "tap: rx_dgrams is not 100"
        [ "$(counter tap rx_bad_csum)" -eq 0 ] || fail "tap: bad checksums"
else
        echo "net_tap: not available here: $(grep -i -m1 'error\|fail' "$dir/tap.out")"
fi
echo "PASS"
