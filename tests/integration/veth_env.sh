# veth_env.sh - sourced by the tests that put a DPDK port on a real kernel
# link: a network namespace and a veth pair made for the test, the root side
# left without an address for DPDK's net_af_packet, the namespace side with
# $peer_ip and the kernel's own sockets. Sets ns, va (root side), vb (the
# namespace's), peer_ip, our_ip, dir (a scratch directory); removes them
# all on exit. Skips (77) with the reason where the host cannot.
#
#   . tests/integration/veth_env.sh; veth_up
#
# The caller defines fail() and may set pid (killed on exit).
skip() { echo "SKIP: $*"; exit 77; }

ns=aqns$$
va=aqa$$          # root side: DPDK's (interface names are at most 15 bytes)
vb=aqb$$          # in the namespace: the kernel's
peer_ip=10.77.0.1
our_ip=10.77.0.2
dir=$(mktemp -d)
pid=""
veth_cleanup() {
        [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
        ip link del "$va" 2>/dev/null
        ip netns del "$ns" 2>/dev/null
        rm -rf "$dir"
}
trap veth_cleanup EXIT
trap 'exit 1' INT TERM

veth_up() {
        [ "$(id -u)" -eq 0 ] || skip "needs root for ip netns and veth"
        for c in ip ping python3 ethtool; do
                command -v $c >/dev/null 2>&1 || skip "$c not installed"
        done
        ip netns add "$ns" 2>"$dir/err" || skip "cannot create a network namespace: $(cat "$dir/err")"
        ip link add "$va" type veth peer name "$vb" 2>"$dir/err" ||
                skip "cannot create a veth pair: $(cat "$dir/err")"
        ip link set "$vb" netns "$ns" || fail "move $vb into $ns"
        # The root side carries no address: the kernel leaves its frames to
        # DPDK. IPv6 off keeps router solicitations and the like off the wire.
        sysctl -qw "net.ipv6.conf.$va.disable_ipv6=1" 2>/dev/null
        ip link set "$va" up || fail "$va up"
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$peer_ip/24" dev "$vb" || fail "address $peer_ip"
        ip -n "$ns" link set "$vb" up || fail "$vb up"
        # A veth hands local UDP to its peer with the checksum left for an
        # offload that never comes (CHECKSUM_PARTIAL): turn tx checksumming
        # off so the frames DPDK reads carry real checksums, as from a NIC.
        ip netns exec "$ns" ethtool -K "$vb" tx off >/dev/null 2>&1 || fail "ethtool -K $vb tx off"
}
