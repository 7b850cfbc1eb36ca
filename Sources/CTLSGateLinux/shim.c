#define _GNU_SOURCE
#include "CTLSGateLinux.h"

#include <errno.h>
#include <stddef.h>
#include <sys/prctl.h>
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
