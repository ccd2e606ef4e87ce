#ifndef CSENSOR_SHIMS_H
#define CSENSOR_SHIMS_H
/* Macros and constants Swift cannot import directly. Each is a prefixed function. */
#include <stdint.h>
#include <sys/types.h>

/* Pin the calling thread to one CPU; returns 0 or an errno value. */
int csensor_pin_thread_to_cpu(int cpu);
/* Names the calling thread for the kernel (top -H, perf, /proc/PID/task/TID/comm); cut to 15 bytes. */
void csensor_name_thread(const char *name);
/* Number of CPUs configured on this machine. */
int csensor_cpu_count(void);
/* Join a PACKET_FANOUT group on a packet socket (mode: hash with defrag). Returns 0 or errno. */
int csensor_join_fanout(int fd, uint16_t group_id, int mode_hash_defrag);

/* Least privilege (called once at start, after the capture handles are open).
 * Each returns 0 or an errno value. Capabilities and no_new_privs are per thread in Linux: call these
 * before the process starts other threads (setgroups/setgid/setuid are broadcast to every thread by glibc). */
/* prctl(PR_SET_NO_NEW_PRIVS): no exec can regain privileges (setuid binaries, file capabilities). */
int csensor_set_no_new_privs(void);
/* Removes every capability from the bounding set (needs CAP_SETPCAP; EPERM without it). */
int csensor_drop_bounding_set(void);
/* Clears the effective, permitted, inheritable and ambient capability sets of the calling thread. */
int csensor_clear_capabilities(void);
/* setgroups({gid}), setgid(gid), setuid(uid): in that order, so no supplementary group of root survives. */
int csensor_switch_user(uid_t uid, gid_t gid);
/* The calling thread's effective and permitted capability sets as bit masks. */
int csensor_current_capabilities(uint64_t *effective, uint64_t *permitted);

/* Renames old to new within (or across) directory fds, never replacing an existing new: renameat2 with
 * RENAME_NOREPLACE, or link + unlink on file systems without it (EINVAL). Returns 0 or an errno value
 * (EEXIST when new exists). Evidence names must never overwrite logged evidence. */
int csensor_rename_noreplace(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);

/* futex(2) on a private 32-bit word: sleeps while *word == expected, at most timeout_ns nanoseconds
 * (returns 0 when woken or interrupted, or an errno value: EAGAIN when the word differed, ETIMEDOUT);
 * wakes up to count sleepers (returns how many). Offline fanout rings sleep on them instead of spinning
 * when there are more busy threads than cores. */
int csensor_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns);
int csensor_futex_wake(uint32_t *word, int count);

/* The CPU's spin-wait hint (x86 pause, arm yield): a waiting loop lets the sibling hyperthread run. */
static inline void csensor_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Hints the CPU to bring the cache line at p in for reading (a hint: never faults). Swift has no
 * prefetch; the lookback ring uses it to have its oldest entry's header at hand one packet later. */
static inline void csensor_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }
#endif
