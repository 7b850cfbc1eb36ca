// C helpers for tlsgate's OpenSSL wrapper. OpenSSL exposes many of its controls as
// macros, which Swift cannot call; each one gets a real function here. Every symbol
// is prefixed tg_ssl_. Only the TLSGateTLS module imports this header.
#ifndef TLSGATE_CTLSGATEOPENSSL_H
#define TLSGATE_CTLSGATEOPENSSL_H

#include <stdint.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <stddef.h>

// Version numbers, so Swift need not know OpenSSL's constants.
enum {
    TG_SSL_TLS1_VERSION = 0x0301,
    TG_SSL_TLS1_1_VERSION = 0x0302,
    TG_SSL_TLS1_2_VERSION = 0x0303,
    TG_SSL_TLS1_3_VERSION = 0x0304,
};

// SSL_CTX macros.
int tg_ssl_ctx_set_min_proto_version(SSL_CTX *ctx, int version);
int tg_ssl_ctx_set_max_proto_version(SSL_CTX *ctx, int version);
long tg_ssl_ctx_set_mode(SSL_CTX *ctx, long mode);
long tg_ssl_ctx_set_session_cache_mode(SSL_CTX *ctx, long mode);
long tg_ssl_ctx_set_options(SSL_CTX *ctx, long options);

// Modes and options the Swift side sets, exported as values.
long tg_ssl_mode_release_buffers(void);
long tg_ssl_mode_enable_partial_write(void);
long tg_ssl_mode_accept_moving_write_buffer(void);
long tg_ssl_sess_cache_client_no_internal(void);
long tg_ssl_op_no_renegotiation(void);
long tg_ssl_op_no_compression(void);

long tg_ssl_ctx_set1_groups_list(SSL_CTX *ctx, const char *list);
long tg_ssl_ctx_set1_sigalgs_list(SSL_CTX *ctx, const char *list);
long tg_ssl_ctx_set_tlsext_status_cb(SSL_CTX *ctx, int (*cb)(SSL *, void *));

// SSL macros.
long tg_ssl_set_tlsext_status_type_ocsp(SSL *ssl);
// The stapled OCSP response (DER), or length -1 when there is none.
long tg_ssl_get_tlsext_status_ocsp_resp(SSL *ssl, const unsigned char **resp);
// The SSL an X509_STORE_CTX verifies for.
SSL *tg_ssl_from_store_ctx(X509_STORE_CTX *ctx);

// Stapled OCSP response checking: returns 1 good, 0 revoked/unknown/bad/stale with a
// reason copied into reason. chain: the verified chain (leaf first); store: the trust
// anchors the responder must chain to. On success *seconds_left is the time until the
// response's nextUpdate (-1 when it has none).
int tg_ssl_check_ocsp(const unsigned char *der, long len, STACK_OF(X509) *chain, X509_STORE *store,
                      char *reason, size_t reason_len, long *seconds_left);

// Adds every CRL held by `from` to `to`; returns how many (0 when there are none).
int tg_ssl_store_copy_crls(X509_STORE *from, X509_STORE *to);

// Stack helpers (the sk_X509_* functions are macros).
int tg_ssl_sk_x509_num(STACK_OF(X509) *sk);
X509 *tg_ssl_sk_x509_value(STACK_OF(X509) *sk, int i);
// Frees the stack and drops its reference to each certificate.
void tg_ssl_sk_x509_free_all(STACK_OF(X509) *sk);
// The DER of leaf, then of each other certificate of rest (libssl's untrusted list starts
// with the leaf itself), back to back (DER delimits itself),
// into out when the whole fits in cap bytes. Returns the length in all (more than cap:
// nothing written, call again with room; out NULL and cap 0 to learn it), or -1 when a
// certificate cannot be encoded.
long tg_ssl_presented_chain_der(X509 *leaf, STACK_OF(X509) *rest, unsigned char *out, long cap);
// The latest notBefore and the earliest notAfter of the chain, in seconds since the epoch;
// 0 when the chain is empty or a date cannot be read.
int tg_ssl_chain_validity(STACK_OF(X509) *chain, int64_t *not_before, int64_t *not_after);
// The verification parameters of ctx that shape X509_verify_cert, into out[0..4] (flags,
// inheritance flags, depth, auth level, host flags). 0 when ctx carries a setting made for
// one connection (a host, e-mail or IP address to match, a fixed check time): a check made
// under it must not be reused for another.
int tg_ssl_store_ctx_shared_params(X509_STORE_CTX *ctx, uint64_t out[5]);
// Subject alternative names as one text "DNS:a, IP:1.2.3.4" into buf.
void tg_ssl_x509_sans(X509 *x, char *buf, size_t len);
// A name (subject/issuer) in RFC 2253 form into buf.
void tg_ssl_x509_name(X509_NAME *name, char *buf, size_t len);
// notAfter as "YYYY-MM-DDTHH:MM:SSZ" into buf.
void tg_ssl_x509_not_after(X509 *x, char *buf, size_t len);
// SHA-256 of the DER certificate (out: 32 bytes); SHA-256 of its SubjectPublicKeyInfo.
int tg_ssl_x509_fingerprint(X509 *x, unsigned char *out);
int tg_ssl_x509_spki_sha256(X509 *x, unsigned char *out);

// SSL macros.
int tg_ssl_set_tlsext_host_name(SSL *ssl, const char *name);
int tg_ssl_set_app_data(SSL *ssl, void *data);
void *tg_ssl_get_app_data(const SSL *ssl);

// Custom BIO plumbing: the retry flags are macros.
void tg_ssl_bio_set_retry_read(BIO *bio);
void tg_ssl_bio_clear_retry_flags(BIO *bio);
int tg_ssl_bio_ctrl_flush(void);
int tg_ssl_bio_ctrl_pending(void);
int tg_ssl_bio_ctrl_wpending(void);
int tg_ssl_bio_ctrl_get_close(void);
int tg_ssl_bio_ctrl_set_close(void);
int tg_ssl_bio_ctrl_eof(void);

// RSA keys (the `mysql` upgrade's caching_sha2_password endpoint). A new RSA key of `bits`
// (EVP_RSA_gen is a macro over a variadic function), NULL on failure.
EVP_PKEY *tg_ssl_rsa_generate(unsigned int bits);
// A public key from PEM (SubjectPublicKeyInfo), NULL on failure.
EVP_PKEY *tg_ssl_pkey_read_public_pem(const unsigned char *pem, size_t len);
// The public key as PEM (SubjectPublicKeyInfo) into buf; its length, or -1 (failure or
// buf too small).
long tg_ssl_pkey_public_pem(EVP_PKEY *key, unsigned char *buf, size_t len);
// RSA-OAEP (SHA-1, MGF1 SHA-1: what MySQL's clients use) with `key`: decrypt when `decrypt`
// is 1, else encrypt. `*outlen` holds out's size and gets the result's length. 1 on success.
int tg_ssl_rsa_oaep(EVP_PKEY *key, int decrypt, const unsigned char *in, size_t inlen, unsigned char *out,
                    size_t *outlen);

// Error queue: the next error's reason string (NULL when empty), its library code and
// whether more are queued; copies the formatted text into buf.
unsigned long tg_ssl_err_get_error(char *buf, size_t len);

#endif
