#include "CTLSGateOpenSSL.h"

#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

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

long tg_ssl_ctx_set1_groups_list(SSL_CTX *ctx, const char *list) { return SSL_CTX_set1_groups_list(ctx, list); }
long tg_ssl_ctx_set1_sigalgs_list(SSL_CTX *ctx, const char *list) { return SSL_CTX_set1_sigalgs_list(ctx, list); }
long tg_ssl_ctx_set_tlsext_status_cb(SSL_CTX *ctx, int (*cb)(SSL *, void *)) {
    return SSL_CTX_set_tlsext_status_cb(ctx, cb);
}
long tg_ssl_set_tlsext_status_type_ocsp(SSL *ssl) { return SSL_set_tlsext_status_type(ssl, TLSEXT_STATUSTYPE_ocsp); }
long tg_ssl_get_tlsext_status_ocsp_resp(SSL *ssl, const unsigned char **resp) {
    return SSL_get_tlsext_status_ocsp_resp(ssl, resp);
}
SSL *tg_ssl_from_store_ctx(X509_STORE_CTX *ctx) {
    return X509_STORE_CTX_get_ex_data(ctx, SSL_get_ex_data_X509_STORE_CTX_idx());
}

int tg_ssl_sk_x509_num(STACK_OF(X509) *sk) { return sk ? sk_X509_num(sk) : 0; }
X509 *tg_ssl_sk_x509_value(STACK_OF(X509) *sk, int i) { return sk_X509_value(sk, i); }
void tg_ssl_sk_x509_free_all(STACK_OF(X509) *sk) { sk_X509_pop_free(sk, X509_free); }

static long tg_der_append(X509 *x, unsigned char *out, long cap, long used) {
    int n = i2d_X509(x, NULL);
    if (n <= 0) return -1;
    if (used + n <= cap) {
        unsigned char *p = out + used;
        if (i2d_X509(x, &p) != n) return -1;
    }
    return used + n;
}

long tg_ssl_presented_chain_der(X509 *leaf, STACK_OF(X509) *rest, unsigned char *out, long cap) {
    long used = tg_der_append(leaf, out, cap, 0);
    for (int i = 0; used >= 0 && rest != NULL && i < sk_X509_num(rest); i++) {
        X509 *x = sk_X509_value(rest, i);
        if (x != leaf) used = tg_der_append(x, out, cap, used);  // libssl's list starts with the leaf
    }
    return used;
}

static int tg_epoch(const ASN1_TIME *t, int64_t *out) {
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
    *out = (int64_t)timegm(&tm);
    return 1;
}

int tg_ssl_chain_validity(STACK_OF(X509) *chain, int64_t *not_before, int64_t *not_after) {
    int n = chain ? sk_X509_num(chain) : 0;
    if (n == 0) return 0;
    int64_t latest_start = INT64_MIN, first_end = INT64_MAX;
    for (int i = 0; i < n; i++) {
        X509 *x = sk_X509_value(chain, i);
        int64_t start, end;
        if (!tg_epoch(X509_get0_notBefore(x), &start) || !tg_epoch(X509_get0_notAfter(x), &end)) return 0;
        if (start > latest_start) latest_start = start;
        if (end < first_end) first_end = end;
    }
    *not_before = latest_start;
    *not_after = first_end;
    return 1;
}

int tg_ssl_store_ctx_shared_params(X509_STORE_CTX *ctx, uint64_t out[5]) {
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    if (param == NULL) return 0;
    unsigned long flags = X509_VERIFY_PARAM_get_flags(param);
    if (flags & X509_V_FLAG_USE_CHECK_TIME) return 0;
    if (X509_VERIFY_PARAM_get0_host(param, 0) != NULL || X509_VERIFY_PARAM_get0_email(param) != NULL) return 0;
    char *ip = X509_VERIFY_PARAM_get1_ip_asc(param);
    if (ip != NULL) {
        OPENSSL_free(ip);
        return 0;
    }
    out[0] = flags;
    out[1] = X509_VERIFY_PARAM_get_inh_flags(param);
    out[2] = (uint64_t)(int64_t)X509_VERIFY_PARAM_get_depth(param);
    out[3] = (uint64_t)(int64_t)X509_VERIFY_PARAM_get_auth_level(param);
    out[4] = X509_VERIFY_PARAM_get_hostflags(param);
    return 1;
}

void tg_ssl_x509_sans(X509 *x, char *buf, size_t len) {
    size_t used = 0;
    if (len == 0) return;
    buf[0] = '\0';
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    if (names == NULL) return;
    for (int i = 0; i < sk_GENERAL_NAME_num(names) && used + 1 < len; i++) {
        GENERAL_NAME *name = sk_GENERAL_NAME_value(names, i);
        char item[128] = {0};
        if (name->type == GEN_DNS) {
            const unsigned char *data = ASN1_STRING_get0_data(name->d.dNSName);
            snprintf(item, sizeof item, "DNS:%.*s", ASN1_STRING_length(name->d.dNSName), (const char *)data);
        } else if (name->type == GEN_IPADD) {
            const unsigned char *ip = ASN1_STRING_get0_data(name->d.iPAddress);
            int n = ASN1_STRING_length(name->d.iPAddress);
            if (n == 4) {
                snprintf(item, sizeof item, "IP:%d.%d.%d.%d", ip[0], ip[1], ip[2], ip[3]);
            } else if (n == 16) {
                char text[64];
                int off = snprintf(text, sizeof text, "IP:");
                for (int k = 0; k < 16; k += 2) off += snprintf(text + off, sizeof text - off, k ? ":%x" : "%x", (ip[k] << 8) | ip[k + 1]);
                snprintf(item, sizeof item, "%s", text);
            }
        } else {
            continue;
        }
        used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? "," : "", item);
    }
    GENERAL_NAMES_free(names);
}

void tg_ssl_x509_name(X509_NAME *name, char *buf, size_t len) {
    if (len == 0) return;
    buf[0] = '\0';
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL || name == NULL) { BIO_free(bio); return; }
    X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    int n = BIO_read(bio, buf, (int)len - 1);
    buf[n > 0 ? n : 0] = '\0';
    BIO_free(bio);
}

void tg_ssl_x509_not_after(X509 *x, char *buf, size_t len) {
    struct tm tm;
    if (len == 0) return;
    buf[0] = '\0';
    if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1) strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int tg_ssl_x509_fingerprint(X509 *x, unsigned char *out) {
    unsigned int n = 0;
    return X509_digest(x, EVP_sha256(), out, &n) == 1 && n == 32;
}

int tg_ssl_x509_spki_sha256(X509 *x, unsigned char *out) {
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
    if (n <= 0) return 0;
    unsigned int outlen = 0;
    int ok = EVP_Digest(der, (size_t)n, out, &outlen, EVP_sha256(), NULL) == 1 && outlen == 32;
    OPENSSL_free(der);
    return ok;
}

int tg_ssl_check_ocsp(const unsigned char *der, long len, STACK_OF(X509) *chain, X509_STORE *store,
                      char *reason, size_t reason_len, long *seconds_left) {
    int result = 0;
    if (seconds_left != NULL) *seconds_left = -1;
    OCSP_RESPONSE *response = NULL;
    OCSP_BASICRESP *basic = NULL;
    OCSP_CERTID *id = NULL;
    const unsigned char *p = der;
    if (chain == NULL || sk_X509_num(chain) < 1) { snprintf(reason, reason_len, "no verified chain for the OCSP check"); goto done; }
    response = d2i_OCSP_RESPONSE(NULL, &p, len);
    if (response == NULL) { snprintf(reason, reason_len, "stapled OCSP response is malformed"); goto done; }
    int status = OCSP_response_status(response);
    if (status != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        snprintf(reason, reason_len, "stapled OCSP response status: %s", OCSP_response_status_str(status));
        goto done;
    }
    basic = OCSP_response_get1_basic(response);
    if (basic == NULL) { snprintf(reason, reason_len, "stapled OCSP response has no basic response"); goto done; }
    if (OCSP_basic_verify(basic, chain, store, 0) != 1) {
        snprintf(reason, reason_len, "stapled OCSP response signature does not verify");
        goto done;
    }
    X509 *leaf = sk_X509_value(chain, 0);
    X509 *issuer = sk_X509_num(chain) > 1 ? sk_X509_value(chain, 1) : leaf;
    id = OCSP_cert_to_id(NULL, leaf, issuer);
    int cert_status = -1, crl_reason = -1;
    ASN1_GENERALIZEDTIME *revoked_at = NULL, *this_update = NULL, *next_update = NULL;
    if (id == NULL || OCSP_resp_find_status(basic, id, &cert_status, &crl_reason, &revoked_at, &this_update, &next_update) != 1) {
        snprintf(reason, reason_len, "stapled OCSP response does not cover the server's certificate");
        goto done;
    }
    if (OCSP_check_validity(this_update, next_update, 300, -1) != 1) {
        snprintf(reason, reason_len, "stapled OCSP response is stale or not yet valid");
        goto done;
    }
    if (cert_status == V_OCSP_CERTSTATUS_REVOKED) {
        snprintf(reason, reason_len, "certificate revoked (stapled OCSP, reason %s)", OCSP_crl_reason_str(crl_reason));
        goto done;
    }
    if (cert_status != V_OCSP_CERTSTATUS_GOOD) {
        snprintf(reason, reason_len, "stapled OCSP status is %s", OCSP_cert_status_str(cert_status));
        goto done;
    }
    if (seconds_left != NULL && next_update != NULL) {
        int days = 0, secs = 0;
        if (ASN1_TIME_diff(&days, &secs, NULL, next_update) == 1) {
            long left = (long)days * 86400L + (long)secs;
            *seconds_left = left > 0 ? left : 0;
        }
    }
    result = 1;
done:
    ERR_clear_error();
    OCSP_CERTID_free(id);
    OCSP_BASICRESP_free(basic);
    OCSP_RESPONSE_free(response);
    return result;
}

int tg_ssl_store_copy_crls(X509_STORE *from, X509_STORE *to) {
    int copied = 0;
    if (from == NULL || to == NULL) return 0;
    if (X509_STORE_lock(from) != 1) return 0;
    STACK_OF(X509_OBJECT) *objects = X509_STORE_get0_objects(from);
    for (int i = 0; i < sk_X509_OBJECT_num(objects); i++) {
        X509_CRL *crl = X509_OBJECT_get0_X509_CRL(sk_X509_OBJECT_value(objects, i));
        if (crl != NULL && X509_STORE_add_crl(to, crl) == 1) copied++;
    }
    X509_STORE_unlock(from);
    return copied;
}

EVP_PKEY *tg_ssl_rsa_generate(unsigned int bits) { return EVP_RSA_gen(bits); }

EVP_PKEY *tg_ssl_pkey_read_public_pem(const unsigned char *pem, size_t len) {
    if (len > INT_MAX) return NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) return NULL;
    EVP_PKEY *key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    return key;
}

long tg_ssl_pkey_public_pem(EVP_PKEY *key, unsigned char *buf, size_t len) {
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL) return -1;
    long result = -1;
    if (PEM_write_bio_PUBKEY(bio, key) == 1) {
        char *data = NULL;
        long n = BIO_get_mem_data(bio, &data);
        if (n > 0 && (size_t)n <= len) {
            memcpy(buf, data, (size_t)n);
            result = n;
        }
    }
    BIO_free(bio);
    return result;
}

int tg_ssl_rsa_oaep(EVP_PKEY *key, int decrypt, const unsigned char *in, size_t inlen, unsigned char *out,
                    size_t *outlen) {
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
    if (ctx == NULL) return 0;
    int ok = (decrypt ? EVP_PKEY_decrypt_init(ctx) : EVP_PKEY_encrypt_init(ctx)) == 1
        && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1
        && (decrypt ? EVP_PKEY_decrypt(ctx, out, outlen, in, inlen) : EVP_PKEY_encrypt(ctx, out, outlen, in, inlen)) == 1;
    EVP_PKEY_CTX_free(ctx);
    return ok ? 1 : 0;
}
