/* dp_dpdk.h - the DPDK port of atomq-dataplane (nic/nic_dpdk.h) as the
 * workers' polled datagram backend (nic_dgram_backend): built into the
 * dataplane program only, so nothing else links DPDK.
 *
 *      dp_dpdk_open(&e, "--no-huge -m 256 --no-pci -l 0 --vdev=net_ring0",
 *                   "10.0.0.2:4223");     after dp_engine_attach,
 *      dp_engine_start(&e);               before the workers start
 *      ...
 *      dp_engine_stop(&e);
 *      dp_dpdk_close(&e);
 */
#ifndef ATOMQ_DP_DPDK_H
#define ATOMQ_DP_DPDK_H

#include "dataplane/dp_engine.h"

/* Initialises the EAL from eal_args and the port with one queue per worker
 * (our address and UDP port from addr, "IPv4:PORT"), and makes it e's
 * dgram_nic. Logs why it fails. -ENOTSUP: built without DPDK; -EINVAL: a
 * bad address, or datagrams are off in e (the sessions layer: --udp);
 * errors of nic_dpdk_init. */
int dp_dpdk_open(struct dp_engine *e, const char *eal_args, const char *addr);

/* Stops and closes the port, cleans up the EAL (the workers have stopped). */
void dp_dpdk_close(struct dp_engine *e);

struct nic_dpdk;
/* Makes nic, a port someone else initialised, e's dgram_nic (worker i
 * polls its queue i). Built with DPDK only. */
void dp_dpdk_serve(struct dp_engine *e, struct nic_dpdk *nic);

#endif /* ATOMQ_DP_DPDK_H */
