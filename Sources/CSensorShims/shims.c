#define _GNU_SOURCE
#include "CSensorShims.h"
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/if_packet.h>

int csensor_pin_thread_to_cpu(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

int csensor_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_CONF);
    return n > 0 ? (int)n : 1;
}

int csensor_join_fanout(int fd, uint16_t group_id, int mode_hash_defrag) {
    int mode = PACKET_FANOUT_HASH;
    if (mode_hash_defrag) mode |= PACKET_FANOUT_FLAG_DEFRAG;
    int arg = (int)group_id | (mode << 16);
    if (setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &arg, sizeof(arg)) != 0) return errno;
    return 0;
}

int csensor_write_all(int fd, const void *buf, size_t len) {
    const char *p = (const char *)buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}
