// Linux specifics for tlsgate: the original destination of a redirected connection,
// prctl, and capabilities through libcap. Every symbol is prefixed tg_linux_.
// Kernel headers (linux/netfilter_ipv4.h, linux/netfilter_ipv6/ip6_tables.h) clash
// with glibc's when imported into Swift, so they are included only from shim.c.
#ifndef TLSGATE_CTLSGATELINUX_H
#define TLSGATE_CTLSGATELINUX_H

#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>

// getsockopt(fd, SOL_IP, SO_ORIGINAL_DST) / getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST).
int tg_linux_sol_ip(void);
int tg_linux_sol_ipv6(void);
int tg_linux_so_original_dst(void);
int tg_linux_ip6t_so_original_dst(void);
int tg_linux_ip_transparent(void);
int tg_linux_ipv6_transparent(void);

// The uid of the peer of a connected Unix socket (SO_PEERCRED): 0, or -1 with errno set.
int tg_linux_peer_uid(int fd, uint32_t *uid);

// prctl(PR_SET_NO_NEW_PRIVS, 1) and friends; return 0 or -1 with errno set.
int tg_linux_set_no_new_privs(void);
int tg_linux_get_no_new_privs(void);
int tg_linux_set_keep_caps(int on);
int tg_linux_set_pdeathsig(int signal);

// Capabilities (libcap). Return 0 or -1 with errno set.
// Leaves exactly CAP_NET_ADMIN (when keep_net_admin) in the permitted and effective sets,
// and in the inheritable and ambient sets when ambient is set; with
// keep_worker_account_caps, CAP_SETUID, CAP_SETGID and CAP_KILL too, in the permitted and
// effective sets only (never ambient: the tools the supervisor runs must not get them);
// all else cleared.
int tg_linux_caps_limit(int keep_net_admin, int keep_worker_account_caps, int ambient);
// 1 when CAP_SETUID, CAP_SETGID and CAP_KILL are all effective, 0 when not, -1 on error.
int tg_linux_caps_have_worker_account_caps(void);
// Drops every capability from every set, including the bounding set when possible.
int tg_linux_caps_drop_all(void);
// 1 when the effective set holds CAP_NET_ADMIN, 0 when not, -1 on error.
int tg_linux_caps_have_net_admin(void);
// 1 when the effective set holds every capability a root process has (CAP_SYS_ADMIN), else 0.
int tg_linux_caps_have_sys_admin(void);

// Starts `path` (a fresh exec: never fork without exec in a threaded process) with the
// descriptors fds[0..nfds) placed at 3, 4, …, every other descriptor above 2 closed,
// all signals at their default disposition and none blocked, and an empty ambient
// capability set (so the child starts with no capability). The descriptors may have any
// numbers (a source at 200 is not overwritten by another one's temporary copy).
// Returns the child's pid, or -1 with errno set.
int tg_linux_spawn(const char *path, char *const argv[], char *const envp[], const int *fds, int nfds);

// tg_linux_spawn, but the child runs as uid/gid with no supplementary group (posix_spawn
// cannot change the uid). vfork; in the child only raw system calls (glibc's setresuid would
// also change the parent's other threads): every signal to its default, the ambient set
// cleared, setgroups(0), setresgid, setresuid, the descriptor moves, everything else above
// them closed, signals unblocked, execve. The caller needs CAP_SETUID and CAP_SETGID (or
// root); the child holds no capability after the exec (no ambient set, no file
// capabilities). A failure before the exec comes back as -1 with the child's errno.
int tg_linux_spawn_as(const char *path, char *const argv[], char *const envp[], const int *fds, int nfds,
                      unsigned int uid, unsigned int gid);

// The calling thread's ambient capabilities as a mask (bit n = capability n).
unsigned long long tg_linux_ambient_caps(void);
// 1 when any capability is in the permitted, effective or ambient set, 0 when none, -1 on error.
int tg_linux_caps_any_held(void);
// prctl(PR_SET_DUMPABLE) / prctl(PR_GET_DUMPABLE).
int tg_linux_set_dumpable(int on);
int tg_linux_get_dumpable(void);
// socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC): the supervisor's two-way control channel.
int tg_linux_socketpair_cloexec(int fds[2]);

// pipe2(fds, O_CLOEXEC) (pipe2 is not visible to Swift without _GNU_SOURCE).
int tg_linux_pipe_cloexec(int fds[2]);

// Runs a system tool (nft, conntrack, ip) to the end: `input` (may be NULL) on its standard
// input, its standard output collected when `capture_stdout` (else /dev/null) and its
// standard error collected, each up to `limit` bytes (more is read and dropped). The child
// is a posix_spawn of `path` with this process's environment, every signal at its default,
// an empty signal mask and descriptors above 2 closed; it keeps the ambient capabilities
// (nft needs CAP_NET_ADMIN). SIGPIPE from a tool that stops reading is held back, not
// delivered. On success returns 0 with the wait status in *status and malloc'd buffers
// (free with free()); on failure returns -1 with errno set (nothing to free).
int tg_linux_run_tool(const char *path, char *const argv[], const uint8_t *input, size_t input_len,
                      int capture_stdout, size_t limit, uint8_t **out, size_t *out_len,
                      uint8_t **err, size_t *err_len, int *status);

// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit or -1.
long tg_linux_raise_nofile_limit(void);

// setgroups(0) + setresgid + setresuid, keeping the permitted capabilities across the
// uid change (PR_SET_KEEPCAPS). Returns 0 or -1 with errno set.
int tg_linux_switch_user_keep_caps(unsigned int uid, unsigned int gid);

// Drops every capability but CAP_NET_ADMIN (and, with keep_worker_account_caps, CAP_SETUID,
// CAP_SETGID and CAP_KILL) from the bounding set (needs CAP_SETPCAP).
int tg_linux_bound_to_gateway(int keep_worker_account_caps);

// Whether the account uid/gid (with no supplementary groups, as the workers run) can open
// `path` for reading: 0 if it can, else the errno of the refused open(). Only this thread
// takes that identity (setfsuid/setfsgid and the raw setgroups syscall are per-thread), and
// only for the one open(), which never blocks (O_NONBLOCK: a FIFO does not hang it).
// Needs CAP_SETUID/CAP_SETGID (or root) to check for another account; without them, EPERM.
int tg_linux_readable_as(const char *path, unsigned int uid, unsigned int gid);

// The calling thread opens files as uid/gid with no supplementary group (setgroups(0),
// setfsgid, setfsuid: per thread, nothing else changes) until tg_linux_fs_identity_leave.
// 0 when done (or already that account), else an errno (EPERM without CAP_SETUID/CAP_SETGID
// or root, EBUSY when already entered on this thread: one level only).
int tg_linux_fs_identity_enter(unsigned int uid, unsigned int gid);
// Back to the identity the thread had before tg_linux_fs_identity_enter (no-op if none).
void tg_linux_fs_identity_leave(void);

// The number of CPUs in this process's affinity mask (sched_getaffinity), or -1 with errno set.
int tg_linux_affinity_cpu_count(void);

// Installs the workers' seccomp allow-list (libseccomp) on every thread of the process;
// any other syscall kills the process (SIGSYS). Needs no_new_privs or CAP_SYS_ADMIN.
// Returns 0 or -1 with errno set.
int tg_linux_seccomp_install_worker(void);
// A syscall the worker filter forbids (kill(getppid(), 0)), for `tlsgate seccomp-selftest`.
int tg_linux_seccomp_selftest_forbidden_call(void);

// malloc_trim(0): every arena's free chunks and the main arena's free top back to the
// kernel (see FreeHeap.release): 1 if some was released, 0 if none.
int tg_linux_release_free_heap(void);
// mallopt(M_MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD): 0, or -1 when a value does not
// fit an int or glibc refused it.
int tg_linux_keep_free_heap(size_t mmap_threshold, size_t trim_threshold);

#endif
