#define _GNU_SOURCE
#include "CTLSGateLinux.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sched.h>
#include <spawn.h>
#include <unistd.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/capability.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>

int tg_linux_sol_ip(void) { return SOL_IP; }
int tg_linux_sol_ipv6(void) { return SOL_IPV6; }
int tg_linux_so_original_dst(void) { return SO_ORIGINAL_DST; }
int tg_linux_ip6t_so_original_dst(void) { return IP6T_SO_ORIGINAL_DST; }
int tg_linux_ip_transparent(void) { return IP_TRANSPARENT; }
int tg_linux_ipv6_transparent(void) { return IPV6_TRANSPARENT; }

int tg_linux_set_no_new_privs(void) { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); }
int tg_linux_get_no_new_privs(void) { return prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0); }
int tg_linux_set_keep_caps(int on) { return prctl(PR_SET_KEEPCAPS, on ? 1 : 0, 0, 0, 0); }
int tg_linux_set_pdeathsig(int signal) { return prctl(PR_SET_PDEATHSIG, signal, 0, 0, 0); }

int tg_linux_caps_limit_to_net_admin(int keep_net_admin, int ambient) {
    cap_t caps = cap_init();  /* all sets empty */
    if (caps == NULL) return -1;
    cap_value_t list[1] = { CAP_NET_ADMIN };
    if (keep_net_admin) {
        if (cap_set_flag(caps, CAP_PERMITTED, 1, list, CAP_SET) != 0 ||
            cap_set_flag(caps, CAP_EFFECTIVE, 1, list, CAP_SET) != 0 ||
            (ambient && cap_set_flag(caps, CAP_INHERITABLE, 1, list, CAP_SET) != 0)) {
            int saved = errno; cap_free(caps); errno = saved; return -1;
        }
    }
    if (cap_set_proc(caps) != 0) { int saved = errno; cap_free(caps); errno = saved; return -1; }
    cap_free(caps);
    if (cap_reset_ambient() != 0 && errno != EINVAL) return -1;
    if (keep_net_admin && ambient) {
        if (cap_set_ambient(CAP_NET_ADMIN, CAP_SET) != 0) return -1;
    }
    return 0;
}

int tg_linux_caps_drop_all(void) {
    /* The bounding set can only shrink with CAP_SETPCAP; an unprivileged process has none
       to drop from effective use anyway, so failures there are not errors. */
    for (cap_value_t c = 0; c <= CAP_LAST_CAP; c++) {
        if (CAP_IS_SUPPORTED(c)) (void)cap_drop_bound(c);
    }
    return tg_linux_caps_limit_to_net_admin(0, 0);
}

static int has_effective(cap_value_t value) {
    cap_t caps = cap_get_proc();
    if (caps == NULL) return -1;
    cap_flag_value_t v = CAP_CLEAR;
    int rc = cap_get_flag(caps, value, CAP_EFFECTIVE, &v);
    cap_free(caps);
    if (rc != 0) return -1;
    return v == CAP_SET ? 1 : 0;
}

int tg_linux_caps_have_net_admin(void) { return has_effective(CAP_NET_ADMIN); }
int tg_linux_caps_have_sys_admin(void) { return has_effective(CAP_SYS_ADMIN); }

int tg_linux_spawn(const char *path, char *const argv[], char *const envp[], const int *fds, int nfds) {
    enum { TEMP_BASE = 200 };
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) { errno = rc; return -1; }
    rc = posix_spawnattr_init(&attr);
    if (rc != 0) { posix_spawn_file_actions_destroy(&actions); errno = rc; return -1; }
    /* Two steps, so that a source that is also a target (3 -> 4, 4 -> 3) is not lost. */
    for (int i = 0; i < nfds && rc == 0; i++) rc = posix_spawn_file_actions_adddup2(&actions, fds[i], TEMP_BASE + i);
    for (int i = 0; i < nfds && rc == 0; i++) rc = posix_spawn_file_actions_adddup2(&actions, TEMP_BASE + i, 3 + i);
    if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&actions, 3 + nfds);
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    if (rc == 0) rc = posix_spawnattr_setsigdefault(&attr, &all);
    if (rc == 0) rc = posix_spawnattr_setsigmask(&attr, &none);
    if (rc == 0) rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    pid_t pid = -1;
    if (rc == 0) rc = posix_spawn(&pid, path, &actions, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) { errno = rc; return -1; }
    return (int)pid;
}

int tg_linux_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

long tg_linux_raise_nofile_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    }
    return (long)rl.rlim_cur;
}

int tg_linux_switch_user_keep_caps(unsigned int uid, unsigned int gid) {
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return -1;
    if (setgroups(0, NULL) != 0) return -1;
    if (setresgid(gid, gid, gid) != 0) return -1;
    if (setresuid(uid, uid, uid) != 0) return -1;
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) return -1;
    return 0;
}

int tg_linux_bound_to_net_admin(void) {
    for (cap_value_t c = 0; c <= CAP_LAST_CAP; c++) {
        if (c == CAP_NET_ADMIN || !CAP_IS_SUPPORTED(c)) continue;
        if (cap_drop_bound(c) != 0) return -1;
    }
    return 0;
}

int tg_linux_readable_as(const char *path, unsigned int uid, unsigned int gid) {
    int switching = geteuid() == 0 && uid != 0;
    gid_t saved[256];
    int nsaved = 0;
    int old_fsuid = 0, old_fsgid = 0;
    if (switching) {
        nsaved = getgroups(256, saved);
        if (nsaved < 0) return errno;
        if (syscall(SYS_setgroups, 0, NULL) != 0) return errno;
        old_fsgid = setfsgid((gid_t)gid);
        old_fsuid = setfsuid((uid_t)uid);
    }
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    int result = fd >= 0 ? 0 : errno;
    if (fd >= 0) close(fd);
    if (switching) {
        setfsuid((uid_t)old_fsuid);
        setfsgid((gid_t)old_fsgid);
        syscall(SYS_setgroups, (size_t)nsaved, saved);
    }
    return result;
}

int tg_linux_affinity_cpu_count(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
    return CPU_COUNT(&set);
}
