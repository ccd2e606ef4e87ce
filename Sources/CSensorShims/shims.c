#define _GNU_SOURCE
#include "CSensorShims.h"
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/if_packet.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <grp.h>
#include <stdio.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <time.h>

int csensor_pin_thread_to_cpu(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

void csensor_name_thread(const char *name) {
    char cut[16];
    strncpy(cut, name, sizeof(cut) - 1);
    cut[sizeof(cut) - 1] = 0;
    pthread_setname_np(pthread_self(), cut);
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

int csensor_set_no_new_privs(void) {
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 ? 0 : errno;
}

int csensor_drop_bounding_set(void) {
    for (int cap = 0; cap <= 63; cap++) {
        int r = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
        if (r < 0) break;            /* EINVAL: past the kernel's last capability */
        if (r == 0) continue;        /* not in the set */
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) return errno;
    }
    return 0;
}

int csensor_clear_capabilities(void) {
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    /* Ambient first: an ambient capability must also be permitted, so clearing permitted clears it too,
     * but say it explicitly (kernels without ambient support return EINVAL, which is fine). */
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return errno;
    if (syscall(SYS_capset, &header, data) != 0) return errno;
    return 0;
}

int csensor_switch_user(uid_t uid, gid_t gid) {
    if (setgroups(1, &gid) != 0) return errno;
    if (setgid(gid) != 0) return errno;
    if (setuid(uid) != 0) return errno;
    /* Paranoia: a successful setuid from root cannot be undone. */
    if (uid != 0 && setuid(0) == 0) return EPERM;
    return 0;
}

int csensor_current_capabilities(uint64_t *effective, uint64_t *permitted) {
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capget, &header, data) != 0) return errno;
    *effective = ((uint64_t)data[1].effective << 32) | data[0].effective;
    *permitted = ((uint64_t)data[1].permitted << 32) | data[0].permitted;
    return 0;
}

int csensor_rename_noreplace(int olddirfd, const char *oldpath, int newdirfd, const char *newpath) {
    if (renameat2(olddirfd, oldpath, newdirfd, newpath, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS) return errno;
    /* No RENAME_NOREPLACE here: a hard link fails with EEXIST just as atomically. */
    if (linkat(olddirfd, oldpath, newdirfd, newpath, 0) != 0) return errno;
    if (unlinkat(olddirfd, oldpath, 0) != 0) return errno;
    return 0;
}

int csensor_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns) {
    struct timespec ts = { .tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000 };
    long rc = syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, timeout_ns > 0 ? &ts : NULL, NULL, 0);
    return rc == 0 || errno == EINTR ? 0 : errno;
}

int csensor_futex_wake(uint32_t *word, int count) {
    long rc = syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
    return rc < 0 ? 0 : (int)rc;
}
