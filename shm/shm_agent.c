/* shm_agent.c - placing the rings of an agent file (shm_agent.h). */
#include "shm/shm_agent.h"

#include <errno.h>

#include "shm/shm_vring.h"

#define SHM_AGENT_PAGE_BYTES 4096u

int shm_agent_layout(uint32_t workers, uint32_t cmd_ring_bytes, uint32_t cpl_ring_bytes,
                     uint32_t dlv_ring_bytes, struct shm_agent_layout *l)
{
        if (workers == 0 || workers > SHM_AGENT_WORKERS_MAX)
                return -EINVAL;
        size_t cmd = shm_vring_bytes(cmd_ring_bytes);
        size_t cpl = shm_vring_bytes(cpl_ring_bytes);
        size_t dlv = shm_vring_bytes(dlv_ring_bytes);
        if (cmd == 0 || cpl == 0 || dlv == 0)
                return -EINVAL;
        l->doorbell_off = sizeof(struct shm_agent_hdr);
        /* Rings start on a page: the header and doorbells are the lines
         * both sides write most, and they stay apart from ring data. */
        l->rings_off = shm_align_up(l->doorbell_off + (uint64_t)workers * SHM_CACHE_LINE,
                                    SHM_AGENT_PAGE_BYTES);
        l->cmd_stride = shm_align_up(cmd, SHM_CACHE_LINE);
        l->cpl_stride = shm_align_up(cpl, SHM_CACHE_LINE);
        l->dlv_stride = shm_align_up(dlv, SHM_CACHE_LINE);
        l->worker_stride = l->cmd_stride + l->cpl_stride + l->dlv_stride;
        l->file_bytes = shm_align_up(l->rings_off + (uint64_t)workers * l->worker_stride,
                                     SHM_AGENT_PAGE_BYTES);
        return 0;
}
