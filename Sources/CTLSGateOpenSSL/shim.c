#include "CTLSGateOpenSSL.h"

_Static_assert(TG_SSL_TLS1_VERSION == TLS1_VERSION, "TLS1_VERSION");
_Static_assert(TG_SSL_TLS1_1_VERSION == TLS1_1_VERSION, "TLS1_1_VERSION");
_Static_assert(TG_SSL_TLS1_2_VERSION == TLS1_2_VERSION, "TLS1_2_VERSION");
_Static_assert(TG_SSL_TLS1_3_VERSION == TLS1_3_VERSION, "TLS1_3_VERSION");

int tg_ssl_ctx_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}

int tg_ssl_ctx_set_max_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_max_proto_version(ctx, version);
}

long tg_ssl_ctx_set_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_mode(ctx, mode); }

long tg_ssl_ctx_set_session_cache_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_session_cache_mode(ctx, mode);
}

long tg_ssl_ctx_set_options(SSL_CTX *ctx, long options) {
    return (long)SSL_CTX_set_options(ctx, (uint64_t)options);
}

long tg_ssl_mode_release_buffers(void) { return SSL_MODE_RELEASE_BUFFERS; }
long tg_ssl_mode_enable_partial_write(void) { return SSL_MODE_ENABLE_PARTIAL_WRITE; }
long tg_ssl_mode_accept_moving_write_buffer(void) { return SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER; }
long tg_ssl_sess_cache_client_no_internal(void) {
    return SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE;
}
long tg_ssl_op_no_renegotiation(void) { return (long)SSL_OP_NO_RENEGOTIATION; }
long tg_ssl_op_no_compression(void) { return (long)SSL_OP_NO_COMPRESSION; }

int tg_ssl_set_tlsext_host_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

int tg_ssl_set_app_data(SSL *ssl, void *data) { return SSL_set_app_data(ssl, data); }
void *tg_ssl_get_app_data(const SSL *ssl) { return SSL_get_app_data(ssl); }

void tg_ssl_bio_set_retry_read(BIO *bio) { BIO_set_retry_read(bio); }
void tg_ssl_bio_clear_retry_flags(BIO *bio) { BIO_clear_retry_flags(bio); }
int tg_ssl_bio_ctrl_flush(void) { return BIO_CTRL_FLUSH; }
int tg_ssl_bio_ctrl_pending(void) { return BIO_CTRL_PENDING; }
int tg_ssl_bio_ctrl_wpending(void) { return BIO_CTRL_WPENDING; }
int tg_ssl_bio_ctrl_get_close(void) { return BIO_CTRL_GET_CLOSE; }
int tg_ssl_bio_ctrl_set_close(void) { return BIO_CTRL_SET_CLOSE; }
int tg_ssl_bio_ctrl_eof(void) { return BIO_CTRL_EOF; }

unsigned long tg_ssl_err_get_error(char *buf, size_t len) {
    const char *file = NULL, *func = NULL, *data = NULL;
    int line = 0, flags = 0;
    unsigned long code = ERR_get_error_all(&file, &line, &func, &data, &flags);
    if (code == 0) {
        if (len > 0) buf[0] = '\0';
        return 0;
    }
    const char *reason = ERR_reason_error_string(code);
    const char *lib = ERR_lib_error_string(code);
    if (reason == NULL) reason = "unknown error";
    if ((flags & ERR_TXT_STRING) && data != NULL && data[0] != '\0') {
        snprintf(buf, len, "%s: %s (%s)", lib ? lib : "OpenSSL", reason, data);
    } else {
        snprintf(buf, len, "%s: %s", lib ? lib : "OpenSSL", reason);
    }
    return code;
}
