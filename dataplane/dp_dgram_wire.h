/* dp_dgram_wire.h - the check of one frame of an atomq datagram
 * (atomq/dgram.h), shared by the server (dataplane/dp_dgram.c) and
 * libatomq's UDP transport (shm/atomq_udp_wire.c): both read datagrams
 * from the network and believe nothing in them before this.
 */
#ifndef ATOMQ_DP_DGRAM_WIRE_H
#define ATOMQ_DP_DGRAM_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "atomq/dgram.h"
#include "dataplane/dp_crc32c.h"

enum dp_dgram_verdict {
        DP_DGRAM_FRAME_OK = 0,
        DP_DGRAM_FRAME_BAD = 1,   /* truncated, a bad header, lengths past the datagram */
        DP_DGRAM_FRAME_BAD_CRC = 2, /* no CRC, or not this session's */
};

/* The frame at data + off of a datagram of len bytes in session: its
 * header in *f and, when it checks, its bytes in *bytes. The lengths are
 * believed only once atomq_frame_check has bounded each and their sum fits
 * what arrived (the sum of a 16-bit and two 32-bit lengths cannot overflow
 * 64 bits). */
static inline enum dp_dgram_verdict dp_dgram_frame_verify(uint64_t session, const uint8_t *data,
                                                          size_t len, size_t off,
                                                          struct atomq_frame *f, uint32_t *bytes)
{
        size_t left = len - off;
        if (left < ATOMQ_FRAME_HDR_BYTES)
                return DP_DGRAM_FRAME_BAD;
        memcpy(f, data + off, sizeof(*f));
        uint64_t n = atomq_frame_bytes(f->subject_len, f->headers_len, f->payload_len);
        if (n > left || atomq_frame_check(data + off, (size_t)n, f) != ATOMQ_FRAME_OK)
                return DP_DGRAM_FRAME_BAD;
        if (!(f->flags & ATOMQ_FRAME_F_CRC) ||
            dp_crc32c_dgram(session, data + off, (uint32_t)n) != f->crc32c)
                return DP_DGRAM_FRAME_BAD_CRC;
        *bytes = (uint32_t)n;
        return DP_DGRAM_FRAME_OK;
}

#endif /* ATOMQ_DP_DGRAM_WIRE_H */
