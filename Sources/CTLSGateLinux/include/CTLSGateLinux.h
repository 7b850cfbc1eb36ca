#ifndef TLSGATE_CTLSGATELINUX_H
#define TLSGATE_CTLSGATELINUX_H
#include <sys/socket.h>
#endif
