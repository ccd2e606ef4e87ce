#ifndef CSENSOR_SHIMS_H
#define CSENSOR_SHIMS_H
/* Macros and constants Swift cannot import directly. Each is a prefixed function. */
#include <stdint.h>
#include <sys/types.h>

/* Pin the calling thread to one CPU; returns 0 or an errno value. */
int csensor_pin_thread_to_cpu(int cpu);
/* Number of CPUs configured on this machine. */
int csensor_cpu_count(void);
/* Join a PACKET_FANOUT group on a packet socket (mode: hash with defrag). Returns 0 or errno. */
int csensor_join_fanout(int fd, uint16_t group_id, int mode_hash_defrag);
/* Write with retries on EINTR and short writes. Returns 0 or errno. */
int csensor_write_all(int fd, const void *buf, size_t len);
#endif
