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
#include <sys/socket.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/capability.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>

int tg_linux_peer_uid(int fd, uint32_t *uid) {
    struct ucred credentials;
    socklen_t length = sizeof(credentials);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -1;
    *uid = credentials.uid;
    return 0;
}

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

/* What the supervisor needs to run its workers under another account: CAP_SETUID and
   CAP_SETGID (the spawn's setgroups/setresgid/setresuid, the setfsuid read checks) and
   CAP_KILL (signalling a worker of another uid). Never ambient. */
static const cap_value_t worker_account_caps[3] = { CAP_SETUID, CAP_SETGID, CAP_KILL };

int tg_linux_caps_limit(int keep_net_admin, int keep_worker_account_caps, int ambient) {
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
    if (keep_worker_account_caps) {
        if (cap_set_flag(caps, CAP_PERMITTED, 3, worker_account_caps, CAP_SET) != 0 ||
            cap_set_flag(caps, CAP_EFFECTIVE, 3, worker_account_caps, CAP_SET) != 0) {
            int saved = errno; cap_free(caps); errno = saved; return -1;
        }
    }
    /* The ambient set first: a capability leaves it when it leaves the inheritable set. */
    if (cap_reset_ambient() != 0 && errno != EINVAL) { int saved = errno; cap_free(caps); errno = saved; return -1; }
    if (cap_set_proc(caps) != 0) { int saved = errno; cap_free(caps); errno = saved; return -1; }
    cap_free(caps);
    if (keep_net_admin && ambient) {
        if (cap_set_ambient(CAP_NET_ADMIN, CAP_SET) != 0) return -1;
    }
    return 0;
}

int tg_linux_caps_have_worker_account_caps(void) {
    cap_t caps = cap_get_proc();
    if (caps == NULL) return -1;
    int all = 1;
    for (int i = 0; i < 3; i++) {
        cap_flag_value_t v = CAP_CLEAR;
        if (cap_get_flag(caps, worker_account_caps[i], CAP_EFFECTIVE, &v) != 0 || v != CAP_SET) all = 0;
    }
    cap_free(caps);
    return all;
}

int tg_linux_caps_drop_all(void) {
    /* The bounding set can only shrink with CAP_SETPCAP; an unprivileged process has none
       to drop from effective use anyway, so failures there are not errors. */
    for (cap_value_t c = 0; c <= CAP_LAST_CAP; c++) {
        if (CAP_IS_SUPPORTED(c)) (void)cap_drop_bound(c);
    }
    return tg_linux_caps_limit(0, 0, 0);
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

/* The ambient capabilities of the calling thread, as a bit mask (bit n = capability n). */
static unsigned long long ambient_mask(void) {
    unsigned long long mask = 0;
    for (int c = 0; c <= CAP_LAST_CAP && c < 64; c++) {
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, (unsigned long)c, 0, 0) == 1) mask |= 1ULL << c;
    }
    return mask;
}

/* The first temporary descriptor number of a spawn's two-step moves: above every source
   and every target (3 .. 3+nfds-1). -1 with EBADF for a negative source. */
static int spawn_temp_base(const int *fds, int nfds) {
    int temp_base = 3 + nfds;
    for (int i = 0; i < nfds; i++) {
        if (fds[i] < 0) { errno = EBADF; return -1; }
        if (fds[i] + 1 > temp_base) temp_base = fds[i] + 1;
    }
    return temp_base;
}

/* A spawned child starts with every signal at its default and none blocked, whatever this
   process set up (the supervisor ignores SIGPIPE, a tool run blocks it). */
static int spawn_attr_clean_signals(posix_spawnattr_t *attr) {
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    int rc = posix_spawnattr_setsigdefault(attr, &all);
    if (rc == 0) rc = posix_spawnattr_setsigmask(attr, &none);
    if (rc == 0) rc = posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    return rc;
}

int tg_linux_spawn(const char *path, char *const argv[], char *const envp[], const int *fds, int nfds) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    /* Two steps, so that a source that is also a target (3 -> 4, 4 -> 3) is not lost. The
       temporary numbers start above every source and every target, so no dup2 can
       overwrite a source that is still to be copied (a control pipe at 200 stays intact). */
    int temp_base = spawn_temp_base(fds, nfds);
    if (temp_base < 0) return -1;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) { errno = rc; return -1; }
    rc = posix_spawnattr_init(&attr);
    if (rc != 0) { posix_spawn_file_actions_destroy(&actions); errno = rc; return -1; }
    for (int i = 0; i < nfds && rc == 0; i++) rc = posix_spawn_file_actions_adddup2(&actions, fds[i], temp_base + i);
    for (int i = 0; i < nfds && rc == 0; i++) rc = posix_spawn_file_actions_adddup2(&actions, temp_base + i, 3 + i);
    if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&actions, 3 + nfds);
    if (rc == 0) rc = spawn_attr_clean_signals(&attr);
    /* The child must start with no capability at all, not even for the instant before it
       drops them: an exec keeps the ambient set, so it is cleared around the spawn.
       Capabilities are per thread and the child is cloned from this thread, so only this
       thread's set changes, and only for the duration of this call (the supervisor's
       other threads, and the `nft`/`ip` tools it runs, keep CAP_NET_ADMIN ambient). */
    unsigned long long ambient = ambient_mask();
    if (rc == 0 && ambient != 0 && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) rc = errno;
    pid_t pid = -1;
    if (rc == 0) rc = posix_spawn(&pid, path, &actions, &attr, argv, envp);
    int restore_failed = 0;
    for (int c = 0; c <= CAP_LAST_CAP && c < 64; c++) {
        if ((ambient >> c) & 1ULL) {
            if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, (unsigned long)c, 0, 0) != 0) restore_failed = 1;
        }
    }
    (void)restore_failed;  /* the supervisor's own effective set is untouched either way */
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) { errno = rc; return -1; }
    return (int)pid;
}

/* The kernel's struct sigaction for rt_sigaction (x86_64, aarch64): SIG_DFL needs no restorer. */
struct tg_kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    unsigned long mask;
};

/* Not instrumented: the vfork child shares the parent's memory, and a sanitizer's bookkeeping
   must not run in it (under TSan, vfork is a fork; the error pipe works either way). */
__attribute__((no_sanitize("address", "thread")))
int tg_linux_spawn_as(const char *path, char *const argv[], char *const envp[], const int *fds, int nfds,
                      unsigned int uid, unsigned int gid) {
    int temp_base = spawn_temp_base(fds, nfds);
    if (temp_base < 0) return -1;
    /* The child reports a failure before exec on this pipe; its write end sits above every
       source, temporary and target, so no move overwrites it, and closes at exec. */
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return -1;
    int w = fcntl(report[1], F_DUPFD_CLOEXEC, temp_base + nfds + 1);
    close(report[1]);
    if (w < 0) { int saved = errno; close(report[0]); errno = saved; return -1; }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);  /* no parent handler may run in the child */
    pid_t pid = vfork();
    if (pid == 0) {
        struct tg_kernel_sigaction dfl = { SIG_DFL, 0, NULL, 0 };
        unsigned long none = 0;
        for (int sig = 1; sig <= 64; sig++) {
            if (sig != SIGKILL && sig != SIGSTOP) syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof none);
        }
        if (syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) goto fail;
        if (syscall(SYS_setgroups, 0, NULL) != 0) goto fail;
        if (syscall(SYS_setresgid, gid, gid, gid) != 0) goto fail;
        if (syscall(SYS_setresuid, uid, uid, uid) != 0) goto fail;
        for (int i = 0; i < nfds; i++) {
            if (syscall(SYS_dup3, fds[i], temp_base + i, 0) < 0) goto fail;
        }
        for (int i = 0; i < nfds; i++) {
            if (syscall(SYS_dup3, temp_base + i, 3 + i, 0) < 0) goto fail;
        }
        if (syscall(SYS_close_range, 3 + nfds, w - 1, 0) != 0) goto fail;
        if (syscall(SYS_close_range, w + 1, ~0U, 0) != 0) goto fail;
        if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof none) != 0) goto fail;
        syscall(SYS_execve, path, argv, envp);
    fail:;
        int err = errno;
        syscall(SYS_write, w, &err, sizeof err);
        syscall(SYS_exit_group, 127);
    }
    int saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(w);
    if (pid < 0) { close(report[0]); errno = saved; return -1; }
    int child_errno = 0;
    ssize_t n;
    do { n = read(report[0], &child_errno, sizeof child_errno); } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof child_errno) {
        waitpid(pid, NULL, 0);
        errno = child_errno != 0 ? child_errno : EPERM;
        return -1;
    }
    return (int)pid;
}

unsigned long long tg_linux_ambient_caps(void) { return ambient_mask(); }

int tg_linux_caps_any_held(void) {
    cap_t caps = cap_get_proc();
    if (caps == NULL) return -1;
    int held = 0;
    for (cap_value_t c = 0; c <= CAP_LAST_CAP && !held; c++) {
        if (!CAP_IS_SUPPORTED(c)) continue;
        cap_flag_value_t p = CAP_CLEAR, e = CAP_CLEAR;
        if (cap_get_flag(caps, c, CAP_PERMITTED, &p) == 0 && p == CAP_SET) held = 1;
        if (cap_get_flag(caps, c, CAP_EFFECTIVE, &e) == 0 && e == CAP_SET) held = 1;
    }
    cap_free(caps);
    if (!held && ambient_mask() != 0) held = 1;
    return held;
}

int tg_linux_set_dumpable(int on) { return prctl(PR_SET_DUMPABLE, on ? 1 : 0, 0, 0, 0); }
int tg_linux_get_dumpable(void) { return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0); }

int tg_linux_socketpair_cloexec(int fds[2]) { return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds); }

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

int tg_linux_bound_to_gateway(int keep_worker_account_caps) {
    for (cap_value_t c = 0; c <= CAP_LAST_CAP; c++) {
        if (c == CAP_NET_ADMIN || !CAP_IS_SUPPORTED(c)) continue;
        if (keep_worker_account_caps && (c == CAP_SETUID || c == CAP_SETGID || c == CAP_KILL)) continue;
        if (cap_drop_bound(c) != 0) return -1;
    }
    return 0;
}

/* The file identity a thread had before tg_linux_fs_identity_enter (one level, per thread). */
static __thread struct {
    int active;
    int fsuid, fsgid;
    int ngroups;
    gid_t groups[256];
} saved_identity;

int tg_linux_fs_identity_enter(unsigned int uid, unsigned int gid) {
    if (saved_identity.active) return EBUSY;
    if (uid == (unsigned int)geteuid() && gid == (unsigned int)getegid()) return 0;
    int n = getgroups(256, saved_identity.groups);
    if (n < 0) return errno;
    if (syscall(SYS_setgroups, 0, NULL) != 0) return errno;  /* EPERM without CAP_SETGID */
    int old_fsgid = setfsgid((gid_t)gid);
    int old_fsuid = setfsuid((uid_t)uid);
    /* setfsuid reports no error: without CAP_SETUID/CAP_SETGID the ids stay unchanged, and
       the files would be opened as the wrong account. */
    if (setfsuid((uid_t)-1) != (int)uid || setfsgid((gid_t)-1) != (int)gid) {
        setfsuid((uid_t)old_fsuid);
        setfsgid((gid_t)old_fsgid);
        syscall(SYS_setgroups, (size_t)n, saved_identity.groups);
        return EPERM;
    }
    saved_identity.active = 1;
    saved_identity.fsuid = old_fsuid;
    saved_identity.fsgid = old_fsgid;
    saved_identity.ngroups = n;
    return 0;
}

void tg_linux_fs_identity_leave(void) {
    if (!saved_identity.active) return;
    setfsuid((uid_t)saved_identity.fsuid);
    setfsgid((gid_t)saved_identity.fsgid);
    syscall(SYS_setgroups, (size_t)saved_identity.ngroups, saved_identity.groups);
    saved_identity.active = 0;
}

int tg_linux_readable_as(const char *path, unsigned int uid, unsigned int gid) {
    int problem = tg_linux_fs_identity_enter(uid, gid);
    if (problem != 0) return problem;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    int result = fd >= 0 ? 0 : errno;
    if (fd >= 0) close(fd);
    tg_linux_fs_identity_leave();
    return result;
}

int tg_linux_affinity_cpu_count(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
    return CPU_COUNT(&set);
}

/* ---- the workers' syscall allow-list (libseccomp) ---- */

#include <seccomp.h>
#include <sched.h>

/* What a worker does once its policy, TLS context and threads are set up: event loops
   (epoll, eventfd, timerfd, futex), sockets (accept, connect, send, receive, options),
   memory, time, randomness, signals to itself, and reading files (OpenSSL and the
   runtime may open configuration read-only). Everything else kills the process:
   no exec, no fork (only threads), no kill or ptrace of another process, no mount,
   no setuid, no bpf, no opening a file for writing. */
static const char *const worker_allowed[] = {
    "read", "write", "readv", "writev", "pread64", "pwrite64", "close", "close_range",
    "fstat", "newfstatat", "statx", "stat", "lstat", "lseek", "getdents64", "readlink", "readlinkat",
    "access", "faccessat", "faccessat2", "getcwd",
    "mmap", "munmap", "mprotect", "mremap", "madvise", "brk", "mincore", "membarrier",
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "rt_sigtimedwait", "restart_syscall",
    "ioctl", "fcntl", "dup", "dup2", "dup3", "pipe", "pipe2",
    "poll", "ppoll", "select", "pselect6",
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2",
    "eventfd", "eventfd2", "timerfd_create", "timerfd_settime", "timerfd_gettime",
    "socket", "socketpair", "connect", "accept", "accept4", "bind", "listen",
    "getsockname", "getpeername", "getsockopt", "setsockopt", "shutdown",
    "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
    "futex", "futex_waitv", "set_robust_list", "get_robust_list", "rseq", "set_tid_address",
    "exit", "exit_group", "gettid", "getpid", "getppid", "getuid", "geteuid", "getgid", "getegid",
    "getresuid", "getresgid", "getgroups",
    "sched_yield", "sched_getaffinity", "sched_getparam", "sched_getscheduler", "getpriority",
    "nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday", "time",
    "getrandom", "uname", "sysinfo", "getrlimit", "prlimit64", "getrusage", "times",
    "capget", "arch_prctl", "signalfd", "signalfd4",
};

int tg_linux_seccomp_install_worker(void) {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (ctx == NULL) { errno = ENOMEM; return -1; }
    int rc = 0;
    for (size_t i = 0; i < sizeof worker_allowed / sizeof worker_allowed[0] && rc == 0; i++) {
        int nr = seccomp_syscall_resolve_name(worker_allowed[i]);
        if (nr == __NR_SCMP_ERROR) continue;  /* not on this architecture */
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
    }
    /* Threads only: a clone without CLONE_THREAD (a new process) is refused. clone3 passes
       its flags in memory the filter cannot read, so it fails with ENOSYS and glibc falls
       back to clone. */
    if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                                       SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
    if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    /* Signals to itself only (abort, raise, the runtime's thread signals). */
    pid_t self = getpid();
    if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1, SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)self));
    if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1, SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)self));
    /* The runtime lowers its own threads' priority (Dispatch's overcommit threads):
       setpriority(PRIO_PROCESS, 0 = the calling thread, …) only, never another process. */
    if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(setpriority), 2,
                                       SCMP_A0(SCMP_CMP_EQ, PRIO_PROCESS), SCMP_A1(SCMP_CMP_EQ, 0));
    /* prctl: thread names only. */
    if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1, SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME));
    if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1, SCMP_A0(SCMP_CMP_EQ, PR_GET_NAME));
    /* Opening files: read-only. */
    const scmp_datum_t writing = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND;
    if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, writing, 0));
    int open_nr = seccomp_syscall_resolve_name("open");
    if (rc == 0 && open_nr != __NR_SCMP_ERROR)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, open_nr, 1, SCMP_A1(SCMP_CMP_MASKED_EQ, writing, 0));
    /* Every thread of the worker gets the filter, not only this one. */
    if (rc == 0) rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    if (rc == 0) rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc < 0) { errno = -rc; return -1; }
    return 0;
}

int tg_linux_seccomp_selftest_forbidden_call(void) {
    /* Signalling another process (the parent) is not on the list. */
    return kill(getppid(), 0);
}

/* ---- system tools (nft, conntrack, ip): spawn, feed, collect, wait ---- */
#include <poll.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

struct tg_collect { uint8_t *data; size_t len, cap; };

/* Appends up to what `limit` allows; bytes beyond it are dropped (the pipe is still drained). */
static int collect_append(struct tg_collect *c, const uint8_t *bytes, size_t n, size_t limit) {
    if (c->len >= limit) return 0;
    if (n > limit - c->len) n = limit - c->len;
    if (c->len + n > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < c->len + n) cap *= 2;
        uint8_t *grown = realloc(c->data, cap);
        if (!grown) return -1;
        c->data = grown;
        c->cap = cap;
    }
    memcpy(c->data + c->len, bytes, n);
    c->len += n;
    return 0;
}

int tg_linux_run_tool(const char *path, char *const argv[], const uint8_t *input, size_t input_len,
                      int capture_stdout, size_t limit, uint8_t **out, size_t *out_len,
                      uint8_t **err, size_t *err_len, int *status) {
    int in_pipe[2] = { -1, -1 }, out_pipe[2] = { -1, -1 }, err_pipe[2] = { -1, -1 };
    int devnull = -1, saved = 0, rc = 0;
    pid_t pid = -1;
    struct tg_collect o = { 0 }, e = { 0 };
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    int actions_ready = 0, attr_ready = 0;
    /* SIGPIPE stays pending (not delivered) while this thread writes to the tool. */
    sigset_t pipe_only, old_mask;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    sigset_t pending_before;
    sigpending(&pending_before);
    int pipe_was_pending = sigismember(&pending_before, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old_mask);

    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) goto fail;
    if (input && pipe2(in_pipe, O_CLOEXEC) != 0) goto fail;
    if (capture_stdout && pipe2(out_pipe, O_CLOEXEC) != 0) goto fail;
    if (pipe2(err_pipe, O_CLOEXEC) != 0) goto fail;

    if ((rc = posix_spawn_file_actions_init(&actions)) != 0) { errno = rc; goto fail; }
    actions_ready = 1;
    if ((rc = posix_spawnattr_init(&attr)) != 0) { errno = rc; goto fail; }
    attr_ready = 1;
    rc = posix_spawn_file_actions_adddup2(&actions, input ? in_pipe[0] : devnull, 0);
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, capture_stdout ? out_pipe[1] : devnull, 1);
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
    if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    if (rc == 0) rc = spawn_attr_clean_signals(&attr);
    if (rc == 0) rc = posix_spawn(&pid, path, &actions, &attr, argv, environ);
    if (rc != 0) { errno = rc; pid = -1; goto fail; }

    /* The child's ends are closed here, so EOF arrives when the tool exits. */
    if (input) { close(in_pipe[0]); in_pipe[0] = -1; }
    if (capture_stdout) { close(out_pipe[1]); out_pipe[1] = -1; }
    close(err_pipe[1]); err_pipe[1] = -1;
    if (input && input_len == 0) { close(in_pipe[1]); in_pipe[1] = -1; }

    size_t written = 0;
    uint8_t chunk[16384];
    while ((input && in_pipe[1] >= 0) || (capture_stdout && out_pipe[0] >= 0) || err_pipe[0] >= 0) {
        struct pollfd fds[3];
        int n = 0, wi = -1, oi = -1, ei = -1;
        if (input && in_pipe[1] >= 0) { wi = n; fds[n].fd = in_pipe[1]; fds[n].events = POLLOUT; fds[n].revents = 0; n++; }
        if (capture_stdout && out_pipe[0] >= 0) { oi = n; fds[n].fd = out_pipe[0]; fds[n].events = POLLIN; fds[n].revents = 0; n++; }
        if (err_pipe[0] >= 0) { ei = n; fds[n].fd = err_pipe[0]; fds[n].events = POLLIN; fds[n].revents = 0; n++; }
        if (poll(fds, (nfds_t)n, -1) < 0) {
            if (errno == EINTR) continue;
            goto fail;
        }
        if (wi >= 0 && fds[wi].revents) {
            size_t left = input_len - written;
            if (left > sizeof chunk) left = sizeof chunk;  /* one pipe buffer at a time: never blocks long */
            ssize_t w = (fds[wi].revents & POLLOUT) ? write(in_pipe[1], input + written, left) : -1;
            if (w > 0) written += (size_t)w;
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 || written == input_len) { close(in_pipe[1]); in_pipe[1] = -1; } /* EPIPE: the tool stopped reading */
        }
        int idx[2] = { oi, ei };
        int *pfd[2] = { &out_pipe[0], &err_pipe[0] };
        struct tg_collect *dest[2] = { &o, &e };
        for (int k = 0; k < 2; k++) {
            if (idx[k] < 0 || !fds[idx[k]].revents) continue;
            ssize_t r = read(*pfd[k], chunk, sizeof chunk);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) { close(*pfd[k]); *pfd[k] = -1; continue; }
            if (collect_append(dest[k], chunk, (size_t)r, limit) != 0) goto fail;
        }
    }
    int wstatus = 0;
    while (waitpid(pid, &wstatus, 0) < 0) {
        if (errno != EINTR) goto fail_reaped;
    }
    pid = -1;
    close(devnull);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (!pipe_was_pending) {
        struct timespec zero = { 0, 0 };
        while (sigtimedwait(&pipe_only, NULL, &zero) == SIGPIPE) {}
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    *out = o.data; *out_len = o.len;
    *err = e.data; *err_len = e.len;
    *status = wstatus;
    return 0;

fail:
    saved = errno;
    if (pid > 0) { kill(pid, SIGKILL); while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {} }
    goto cleanup;
fail_reaped:
    saved = errno;
cleanup:
    for (int i = 0; i < 2; i++) {
        if (in_pipe[i] >= 0) close(in_pipe[i]);
        if (out_pipe[i] >= 0) close(out_pipe[i]);
        if (err_pipe[i] >= 0) close(err_pipe[i]);
    }
    if (devnull >= 0) close(devnull);
    if (actions_ready) posix_spawn_file_actions_destroy(&actions);
    if (attr_ready) posix_spawnattr_destroy(&attr);
    free(o.data);
    free(e.data);
    if (!pipe_was_pending) {
        struct timespec zero = { 0, 0 };
        while (sigtimedwait(&pipe_only, NULL, &zero) == SIGPIPE) {}
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    errno = saved;
    return -1;
}

#include <limits.h>
#include <malloc.h>

int tg_linux_release_free_heap(void) {
    return malloc_trim(0);
}

int tg_linux_keep_free_heap(size_t mmap_threshold, size_t trim_threshold) {
    // Fixed values also turn off glibc's own adjustment of both thresholds.
    if (mmap_threshold > INT_MAX || trim_threshold > INT_MAX) return -1;
    if (mallopt(M_MMAP_THRESHOLD, (int)mmap_threshold) != 1) return -1;
    if (mallopt(M_TRIM_THRESHOLD, (int)trim_threshold) != 1) return -1;
    return 0;
}
