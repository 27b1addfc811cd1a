/* nic_uring.h - the io_uring TCP backend: one ring per worker, a
 * SO_REUSEPORT listener per worker, multishot accept and multishot recv
 * into a provided buffer ring, batched sends, all driven from the worker's
 * loop.
 *
 * A worker owns one struct nic_uring and calls, on its own thread only:
 *
 *      nic_uring_poll(n)        takes completions without a syscall when
 *                               there are none, and calls the callbacks
 *      nic_uring_send(n, c, ..) appends to a connection's output buffer
 *      nic_uring_flush(n)       one submit for every connection with output
 *      nic_uring_wait(n, ...)   the idle sleep: until a completion arrives,
 *                               one of the given futex words is woken, or
 *                               the timeout passes
 *
 * nic_uring_init and nic_uring_fini may run on another thread (the ring is
 * created disabled and binds to its single issuer, IORING_SETUP_SINGLE_ISSUER,
 * at the first poll, flush or wait); from then on every call but fini
 * belongs on that thread (the kernel refuses another thread's entries
 * with -EEXIST). The callbacks may call nic_uring_send, the
 * reserve/commit pair, nic_uring_pending and nic_uring_close on any
 * connection, their own included, but not poll, flush, wait or fini.
 *
 * Connections are named by a 32-bit id: slot (low 20 bits) and a 10-bit
 * generation above it, so a stale id (the slot was reused) is refused with
 * -ESTALE and never reaches another client. Ids never have bit 30 set (agent
 * endpoints do, dp_agent.h) and fit DP_ENDPOINT_MAX.
 *
 * Bounds: --max-conns connections (more are accepted and closed at once,
 * counted); the provided buffer ring has buf_count buffers of buf_bytes; a
 * connection's unsent output is at most out_max_bytes (nic_uring_send
 * refuses more with -ENOBUFS: the caller's slow-consumer policy decides).
 *
 * Example (one worker):
 *      struct nic_uring *n = calloc(1, nic_uring_size());
 *      struct nic_uring_config cfg;
 *      nic_uring_config_default(&cfg);
 *      cfg.port = 4222;
 *      nic_uring_init(n, &cfg, &ops, session);
 *      for (;;) {
 *              int work = nic_uring_poll(n);      // callbacks run here
 *              nic_uring_flush(n);
 *              if (work != 0)
 *                      continue;
 *              for (i = 0; i < nwords; i++)
 *                      seqs[i] = shm_wake_prepare(words[i]);
 *              if (!rings_have_work())             // the re-check
 *                      nic_uring_wait(n, words, seqs, nwords, 1000000);
 *              for (i = 0; i < nwords; i++)
 *                      shm_wake_cancel(words[i]);
 *      }
 */
#ifndef ATOMQ_NIC_URING_H
#define ATOMQ_NIC_URING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nic/nic_dgram.h"
#include "shm/shm_wake.h"

#define NIC_CONN_SLOT_BITS 20u
#define NIC_CONNS_MAX (1u << NIC_CONN_SLOT_BITS)
#define NIC_CONN_GEN_MASK 0x3ffu

/* Why a connection closed (on_close's reason). */
enum nic_close_reason {
        NIC_CLOSE_PEER = 0,      /* the peer closed (recv returned 0) */
        NIC_CLOSE_ERROR = 1,     /* a socket error (reset, ...) */
        NIC_CLOSE_LOCAL = 2,     /* nic_uring_close, after its output was sent */
        NIC_CLOSE_SHUTDOWN = 3,  /* nic_uring_fini */
};

/* Called on the worker's thread from nic_uring_poll. */
struct nic_uring_ops {
        /* A new connection; it may be sent to at once (the greeting). */
        void (*on_open)(void *arg, uint32_t conn);
        /* Bytes received, in order; valid only for the call. */
        void (*on_data)(void *arg, uint32_t conn, const uint8_t *data, size_t len);
        /* The connection is gone; its id is stale from now on. */
        void (*on_close)(void *arg, uint32_t conn, enum nic_close_reason reason);
        /* A datagram on the UDP socket (cfg.udp); may call
         * nic_uring_udp_send. */
        nic_dgram_fn *on_dgram;
};

struct nic_uring_config {
        char host[64];           /* numeric IPv4 or IPv6 address to listen on */
        uint16_t port;
        bool reuseport;          /* SO_REUSEPORT: one listener per worker on one port */
        uint32_t max_conns;      /* <= NIC_CONNS_MAX */
        uint32_t ring_entries;   /* submission queue size, a power of two */
        uint32_t buf_bytes;      /* one provided receive buffer */
        uint32_t buf_count;      /* provided buffers, a power of two <= 32768 */
        size_t out_max_bytes;    /* a connection's unsent output at most */
        bool tcp;                /* the TCP listener on host:port; false: none */
        /* The datagram socket (atomq datagrams, docs/protocol.md). */
        bool udp;
        char udp_host[64];       /* numeric IPv4 address */
        uint16_t udp_port;       /* 0 picks one (nic_uring_udp_port) */
        uint32_t udp_buf_bytes;  /* one receive buffer: a longer datagram is dropped */
        uint32_t udp_buf_count;  /* a power of two <= 32768 */
        uint32_t udp_tx_bytes;   /* datagram bytes one send batch holds (two batches) */
        uint32_t udp_tx_max;     /* datagrams one batch holds, <= ring_entries */
};

/* A backend's counters: one writer (the worker). */
struct nic_uring_stats {
        uint64_t accepted;
        uint64_t refused;        /* accepted beyond max_conns and closed */
        uint64_t closed;
        uint64_t rx_bytes;
        uint64_t tx_bytes;
        uint64_t recv_nobufs;    /* the provided buffers ran out (recv re-armed) */
        uint64_t send_errors;
        uint64_t submits;        /* io_uring_submit calls */
        uint64_t udp_rx;         /* datagrams received */
        uint64_t udp_rx_bytes;
        uint64_t udp_rx_dropped; /* truncated (longer than udp_buf_bytes) or not IPv4 */
        uint64_t udp_rx_nobufs;  /* the datagram buffers ran out (the kernel dropped) */
        uint64_t udp_tx;         /* datagrams sent */
        uint64_t udp_tx_bytes;
        uint64_t udp_tx_full;    /* nic_uring_udp_send refused: both batches busy */
        uint64_t udp_tx_errors;  /* sends the kernel failed */
        uint64_t faults_injected; /* test builds only (NIC_FAULT_INJECT): submits failed on purpose */
};

struct nic_uring; /* defined in nic_uring.c */

/* 127.0.0.1:4222, reuseport on, 65536 connections, 4096 entries, 2048
 * buffers of 16 KiB, 64 MiB of output per connection (nats-server's
 * max_pending); no datagram socket (udp false; when on: 256 buffers of
 * 16 KiB, send batches of 1 MiB and 1024 datagrams). */
void nic_uring_config_default(struct nic_uring_config *cfg);

/* Bytes to allocate for a struct nic_uring (opaque). */
size_t nic_uring_size(void);

/* Sets up the ring, the listener and the buffers. -EINVAL: bad config or
 * address; -EADDRINUSE and other -errno from socket/bind/listen;
 * -ENOSYS/-EPERM: io_uring unavailable; -ENOMEM. */
int nic_uring_init(struct nic_uring *n, const struct nic_uring_config *cfg,
                   const struct nic_uring_ops *ops, void *arg);

/* Closes every connection (on_close SHUTDOWN), the listener and the ring. */
void nic_uring_fini(struct nic_uring *n);

/* The port actually bound (cfg.port 0 picks one). */
uint16_t nic_uring_port(const struct nic_uring *n);
uint16_t nic_uring_udp_port(const struct nic_uring *n);

/* Queues a datagram of len bytes to `to` (its ip and port; the mac is not
 * used) on the UDP socket; nic_uring_flush sends it. 0; -EMSGSIZE (above
 * NIC_DGRAM_BYTES_MAX); -ENOBUFS (the batch being filled is full and the
 * other is still in the kernel: dropped and counted, as a NIC drops);
 * -ENOTCONN (no datagram socket). */
int nic_uring_udp_send(struct nic_uring *n, const struct nic_dgram_addr *to, const void *data,
                       size_t len);

/* Handles every completion ready now, without a syscall when there are
 * none (with IORING_SETUP_DEFER_TASKRUN it enters the kernel only when the
 * kernel flagged task work to run, IORING_SQ_TASKRUN). Returns the
 * completions handled (0: idle), or -errno from io_uring_enter (-EEXIST:
 * not the ring's thread). */
int nic_uring_poll(struct nic_uring *n);

/* Appends len bytes to conn's output. 0, -ESTALE (no such connection, or
 * one being closed: nic_uring_close was called), -ENOBUFS (it would pass
 * out_max_bytes: nothing was appended), -ENOMEM (the buffer could not grow:
 * nothing was appended). */
int nic_uring_send(struct nic_uring *n, uint32_t conn, const void *data, size_t len);

/* Zero-copy form: room for len bytes at the end of conn's output, or NULL
 * (errno-style reason in *err: -ESTALE, -ENOBUFS, -ENOMEM; 0 on success).
 * nic_uring_send_commit appends the first used bytes of it (used <= len,
 * checked: more is a caller's bug and panics); nothing else may be sent to
 * conn in between. A commit for a stale id is ignored. */
void *nic_uring_send_reserve(struct nic_uring *n, uint32_t conn, size_t len, int *err);
void nic_uring_send_commit(struct nic_uring *n, uint32_t conn, size_t used);

/* Output of conn not yet sent (0 for a stale id). */
size_t nic_uring_pending(const struct nic_uring *n, uint32_t conn);

/* Starts a send for every connection with output and no send in flight,
 * in one io_uring_submit (which also carries the re-arms poll queued).
 * Returns the sends started or -errno from io_uring_enter. */
int nic_uring_flush(struct nic_uring *n);

/* Closes conn once its pending output is sent (now, if flush is false:
 * a slow consumer is cut off, its unsent output dropped and the socket
 * reset). on_close (NIC_CLOSE_LOCAL) follows from a later poll, unless the
 * peer or an error ends the connection first (then with that reason); it
 * is called once either way. From this call on, conn takes no output
 * (-ESTALE) and its input is dropped. A flushing close waits for the peer
 * to read; calling this again with flush false cuts it off. A stale id is
 * ignored. */
void nic_uring_close(struct nic_uring *n, uint32_t conn, bool flush);

/* Makes fd's readability (POLLIN) wake nic_uring_wait: another ring's
 * eventfd, say, whose completions should end the sleep. One fd; the
 * caller keeps it open while the nic lives and drains it. -EINVAL: a bad
 * fd or one already watched; -EBUSY: no submission entry now (retried at
 * the next poll). */
int nic_uring_watch(struct nic_uring *n, int fd);

/* The idle sleep: returns when a completion is ready, when a word in
 * words[] moves from seqs[] (shm_wake eventcount: the caller prepared
 * them), or after timeout_ns (< 0: no bound). Uses an io_uring futex
 * waitv where the kernel has it (6.7+); elsewhere it sleeps at most
 * min(timeout, 1 ms) on the ring and says so once in the log.
 *
 * The caller owns the announcements: it called shm_wake_prepare on every
 * word (seqs[i] is what that returned) and calls shm_wake_cancel on each
 * after this returns; nic_uring_wait never touches `sleepers`. The futex
 * wait stays armed between calls on the same words and values (a word that
 * moves meanwhile completes it), so an idle worker's sleep is one syscall.
 * Returns 0 (woken; also when a 1 ms fallback slice ends), -ETIMEDOUT,
 * -EINTR, -EINVAL (more than 128 words: futex_waitv's limit), or -errno
 * from io_uring_enter. */
int nic_uring_wait(struct nic_uring *n, struct shm_wake *const *words, const uint32_t *seqs,
                   uint32_t nwords, int64_t timeout_ns);

const struct nic_uring_stats *nic_uring_stats(const struct nic_uring *n);

#ifdef NIC_FAULT_INJECT
/* Test builds only: from now on 1 in every `every` submissions (0: none)
 * fails with err (-EAGAIN, -EBUSY, -ENOMEM, ...) before the kernel sees
 * it, its entries left for the next submit. On the ring's thread. */
void nic_uring_fault_set(struct nic_uring *n, uint32_t every, int err);
#endif

#endif /* ATOMQ_NIC_URING_H */
