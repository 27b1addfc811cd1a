/* shm_mpsc.c - placeholder until written. */
typedef int shm_mpsc_placeholder;
