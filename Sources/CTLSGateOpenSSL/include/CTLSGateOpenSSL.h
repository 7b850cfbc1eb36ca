#ifndef TLSGATE_CTLSGATEOPENSSL_H
#define TLSGATE_CTLSGATEOPENSSL_H
#include <openssl/ssl.h>
#endif
