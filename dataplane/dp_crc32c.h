/* dp_crc32c.h - CRC32C (Castagnoli, polynomial 0x1EDC6F41, reflected
 * 0x82F63B78), the checksum of iSCSI (RFC 3720), ext4 and SCTP, used here
 * for the disk atom's log records.
 *
 * dp_crc32c runs on the SSE4.2 crc32 instruction when the CPU has it
 * (checked once, when the program loads) and on a slice-by-8 table
 * otherwise; both give the same values. The value passed in and returned is
 * the finished CRC (pre- and post-inverted inside, like zlib's crc32), so a
 * buffer may be checksummed in pieces:
 *
 *      uint32_t c = dp_crc32c(0, hdr, hdr_len);
 *      c = dp_crc32c(c, body, body_len);    // == dp_crc32c(0, hdr||body, ...)
 *
 * Any thread may call dp_crc32c, dp_crc32c_sw and dp_crc32c_hw.
 */
#ifndef ATOMQ_DP_CRC32C_H
#define ATOMQ_DP_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The CRC32C of len bytes at buf, continuing from crc (0 to start). */
uint32_t dp_crc32c(uint32_t crc, const void *buf, size_t len);

/* The CRC of an atomq datagram's frame (atomq/dgram.h): the session id's
 * 8 bytes, then the frame of len bytes at f (len >= the 48-byte header;
 * any alignment) with its crc32c field taken as zero. The server and the
 * clients (libatomq, tests, atomq-bench) share this one. */
uint32_t dp_crc32c_dgram(uint64_t session, const void *f, uint32_t len);

/* The table-driven path, whatever the CPU. */
uint32_t dp_crc32c_sw(uint32_t crc, const void *buf, size_t len);

/* The SSE4.2 path. Only call it when dp_crc32c_hw_available() says so; on
 * other architectures it is the table path. */
uint32_t dp_crc32c_hw(uint32_t crc, const void *buf, size_t len);

/* Whether this CPU has the SSE4.2 crc32 instruction. */
bool dp_crc32c_hw_available(void);

/* For tests: on, dp_crc32c takes the table path even where the CPU has
 * SSE4.2; off, it takes the fastest path again. Not for production use:
 * callers running concurrently may see either path (both are correct). */
void dp_crc32c_force_sw(bool on);

#endif /* ATOMQ_DP_CRC32C_H */
