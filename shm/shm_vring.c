/* shm_vring.c - placeholder until written. */
typedef int shm_vring_placeholder;
