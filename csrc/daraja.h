/*
 * daraja.h - private header of the frappe_mpesa._daraja extension.
 *
 * States the per-module state, the Client object and the prototypes each
 * translation unit offers the others. Prefixes name the file a function lives in:
 *
 *   md_  module.c       module definition, exceptions, Client type, module functions
 *   cl_  client.c       a Client's request cycle: token, send, retry on a bad token, decode
 *   tr_  transport.c    libcurl: handle pool, secure defaults, transfers without the GIL
 *   tc_  token_cache.c  OAuth tokens per (host, consumer key), single-flight refresh
 *   cr_  crypto.c       OpenSSL: certificates, Security Credential, base64, secrets
 *   jw_  json.c         JSON request bodies
 *   va_  validate.c     input rules, checked before any network I/O
 *   ex_  express.c      Lipa na M-Pesa Express: STK push and STK query
 *   af_  atfork.c       fork safety: locks held across fork(), children start afresh
 *
 * Contracts: functions returning int give 0 on success and -1 with a Python
 * exception set on failure; functions returning a pointer give NULL with an
 * exception set. Functions marked "no GIL" never touch Python objects.
 */
#ifndef DARAJA_H
#define DARAJA_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#define DR_MAX_RESPONSE (1024 * 1024)  /* bytes of a Daraja response we accept */
#define DR_MAX_BODY (64 * 1024)        /* bytes of a request body we build */
#define DR_TOKEN_MARGIN 60             /* seconds before expiry a token is renewed */
#define DR_KEY_CACHE_SLOTS 8           /* parsed certificate keys kept per module */
#define DR_POOL_IDLE 16                /* idle libcurl handles kept per Client */

/* ---- secrets ----------------------------------------------------------- */

/* A buffer we own for secret bytes; always NUL-terminated, wiped when freed. */
typedef struct {
    char *data;
    size_t len;
} SecretBuf;

/* ---- fork safety (atfork.c) -------------------------------------------- */

/* One lock-holding object that must survive fork(): prepare takes its locks,
 * parent releases them, child releases them and marks its state stale. */
typedef struct AfHook {
    void (*prepare)(void *arg);
    void (*parent)(void *arg);
    void (*child)(void *arg);
    void *arg;
    struct AfHook *prev, *next;
} AfHook;

/* Register a hook; on error set an exception and return -1. */
int af_register(AfHook *hook);
/* Unregister a hook; safe to call for a hook never registered. */
void af_unregister(AfHook *hook);

/* ---- token cache (token_cache.c) --------------------------------------- */

typedef struct TokenEntry TokenEntry;

typedef struct {
    pthread_mutex_t lock;
    TokenEntry *entries;
    AfHook hook;
    int ready;                  /* lock initialised and hook registered */
} TokenCache;

/* ---- certificate key cache (crypto.c) ---------------------------------- */

typedef struct {
    unsigned char digest[32];  /* SHA-256 of the certificate bytes as given */
    EVP_PKEY *key;
} KeySlot;

/* ---- module state ------------------------------------------------------ */

typedef struct {
    PyObject *DarajaError;
    PyObject *ValidationError;
    PyObject *AuthError;
    PyObject *APIError;
    PyObject *TransportError;
    PyObject *TimeoutError;
    PyObject *TLSError;
    PyTypeObject *ClientType;
    PyObject *json_loads;  /* json.loads, for response bodies */
    TokenCache tokens;
    KeySlot keys[DR_KEY_CACHE_SLOTS];
    unsigned next_key_slot;
} DarajaState;

/* ---- transport (transport.c) ------------------------------------------- */

typedef struct {
    pthread_mutex_t lock;       /* guards idle, n_idle, share and stale */
    CURL *idle[DR_POOL_IDLE];
    int n_idle;
    CURLSH *share;              /* TLS sessions and DNS, shared by the pool */
    pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
    X509_STORE *ca_store;       /* loaded once per Client */
    int stale;                  /* set in a forked child: handles are the parent's */
    long connect_timeout_ms;
    long timeout_ms;
    AfHook hook;
} Transport;

typedef struct {
    const char *url;
    const char *auth_header;    /* "Authorization: ..." - secret, never logged */
    const char *body;           /* POST body, or NULL for GET */
    size_t body_len;
    int idempotent;             /* 0: the request moves money; say so on failure */
} TrRequest;

typedef struct {
    long status;
    char *body;                 /* NUL-terminated, at most DR_MAX_RESPONSE bytes */
    size_t len;
    size_t cap;
    int overflow;
} TrResponse;

/* Make a transport with its CA store; on error set an exception, return NULL. */
Transport *tr_new(DarajaState *st, const char *ca_file, double connect_timeout, double timeout);
/* Free a transport; in a forked child the parent's handles are abandoned, not closed. */
void tr_free(Transport *t);
/* Perform one request with the GIL released; fill *resp or set an exception. */
int tr_perform(DarajaState *st, Transport *t, const TrRequest *req, TrResponse *resp);
/* Release a response's body. */
void tr_response_free(TrResponse *resp);

/* ---- the Client object (module.c) -------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *module;           /* strong reference: keeps the state alive */
    PyObject *token_store;      /* object with load()/store(), or NULL */
    char *base_url;             /* "https://host[:port][/prefix]", no trailing slash */
    const char *environment;    /* "sandbox" or "production" (static) */
    char *consumer_key;
    SecretBuf consumer_secret;
    double timeout;
    Transport *transport;
    TokenEntry *token;          /* this Client's slot in the module's token cache */
} DarajaClient;

/* The module state of a Client. */
DarajaState *md_client_state(DarajaClient *c);

/* ---- errors (module.c) ------------------------------------------------- */

/* Raise ValidationError naming `field`; always returns -1. */
int md_validation_error(DarajaState *st, const char *field, const char *fmt, ...);
/* Raise `type` (a DarajaError) with http_status/error_code/request_id attributes; returns NULL. */
PyObject *md_api_error(DarajaState *st, PyObject *type, long http_status, const char *error_code,
                       const char *request_id, const char *message);
/* Raise a TransportError subclass with the `sent` attribute; returns -1. */
int md_transport_error(DarajaState *st, PyObject *type, int sent, const char *fmt, ...);

/* ---- token cache (token_cache.c) --------------------------------------- */

/* Initialise the module's token cache; on error set an exception, return -1. */
int tc_init(TokenCache *tc);
/* Wipe every token and free the cache. */
void tc_clear(TokenCache *tc);
/* Find or create the entry for (base_url, key, secret); NULL with an exception on error. */
TokenEntry *tc_entry(TokenCache *tc, const char *base_url, const char *key, const SecretBuf *secret);
/* Copy a valid token for c into *out, fetching one if needed (single flight). */
int tc_get(DarajaClient *c, SecretBuf *out);
/* Drop `token` if it is still the entry's current one, so the next tc_get renews it. */
void tc_reject(DarajaClient *c, const SecretBuf *token);

/* ---- client request cycle (client.c) ----------------------------------- */

/* GET the OAuth endpoint with the Client's Basic credentials; fill token and its lifetime. */
int cl_fetch_token(DarajaClient *c, SecretBuf *token, double *expires_in);
/* POST a JSON body to `path` with a valid token; return the decoded dict (new reference). */
PyObject *cl_post(DarajaClient *c, const char *path, const char *body, size_t body_len, int idempotent);

/* ---- crypto (crypto.c) ------------------------------------------------- */

/* Set *out to a copy of bytes; on error set MemoryError and return -1. */
int cr_secret_set(SecretBuf *out, const char *data, size_t len);
/* Wipe and free a secret buffer; safe on an empty one. */
void cr_secret_free(SecretBuf *s);
/* Wipe n bytes with OPENSSL_cleanse. */
void cr_wipe(void *p, size_t n);
/* Constant-time equality of two byte strings (lengths compared too). */
int cr_equal(const void *a, size_t alen, const void *b, size_t blen);
/* Base64 of in (no newlines) into a new NUL-terminated buffer; NULL on error. */
char *cr_base64(DarajaState *st, const unsigned char *in, size_t len, size_t *out_len);
/* SHA-256 of in into out[32]; -1 with an exception on error. */
int cr_sha256(DarajaState *st, const void *in, size_t len, unsigned char out[32]);
/* Load a CA file (or the system store when NULL) into a new X509_STORE. */
X509_STORE *cr_load_ca_store(DarajaState *st, const char *ca_file);
/* Python: security_credential(certificate, initiator_password) -> str */
PyObject *cr_py_security_credential(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
/* Python: certificate_info(certificate) -> dict */
PyObject *cr_py_certificate_info(PyObject *module, PyObject *arg);
/* Free every cached key. */
void cr_key_cache_clear(DarajaState *st);

/* ---- JSON request bodies (json.c) -------------------------------------- */

typedef struct {
    char *data;
    size_t len;
    size_t cap;
    int first;      /* no member written yet in the current object */
    int failed;     /* out of memory or over DR_MAX_BODY */
} JsonBuf;

void jw_begin(JsonBuf *b);
/* Append "key":"value" with the value escaped as JSON. */
void jw_str(JsonBuf *b, const char *key, const char *value, size_t len);
/* Append "key":number. */
void jw_int(JsonBuf *b, const char *key, long long value);
/* Close the object; on failure set an exception and return -1. */
int jw_end(DarajaState *st, JsonBuf *b);
/* Wipe and free the buffer (bodies can hold credentials). */
void jw_free(JsonBuf *b);

/* ---- input rules (validate.c) ------------------------------------------ */

#define VA_PHONE_LEN 12
#define VA_TIMESTAMP_LEN 14

/* A shortcode, till or paybill: str or int of 5-7 digits, into out[8]. */
int va_shortcode(DarajaState *st, const char *field, PyObject *v, char out[8]);
/* A whole number of shillings in [min, max] from int, integral float or digit string. */
int va_amount(DarajaState *st, const char *field, PyObject *v, long long min, long long max,
              long long *out);
/* A str of min..max characters without control characters; *out borrows its UTF-8. */
int va_text(DarajaState *st, const char *field, PyObject *v, Py_ssize_t min, Py_ssize_t max,
            const char **out, Py_ssize_t *len);
/* A non-empty str secret; *out borrows its UTF-8. Never echoed in messages. */
int va_secret(DarajaState *st, const char *field, PyObject *v, const char **out, Py_ssize_t *len);
/* An https:// URL free of the words Daraja rejects; *out borrows its UTF-8. */
int va_callback_url(DarajaState *st, const char *field, PyObject *v, const char **out, Py_ssize_t *len);
/* A Kenyan mobile number in any common form, normalised to 2547XXXXXXXX / 2541XXXXXXXX. */
int va_phone(DarajaState *st, const char *field, PyObject *v, char out[VA_PHONE_LEN + 1]);
/* A Daraja timestamp (14 digits) from v, or Nairobi's current time when v is None/NULL. */
int va_timestamp(DarajaState *st, const char *field, PyObject *v, char out[VA_TIMESTAMP_LEN + 1]);
/* One of a NULL-terminated list of accepted values; *out points into `allowed`. */
int va_choice(DarajaState *st, const char *field, PyObject *v, const char *const *allowed,
              const char **out);
/* Nairobi's time now as YYYYMMDDHHmmss (UTC+3, whatever the server's zone). */
void va_now_nairobi(char out[VA_TIMESTAMP_LEN + 1]);
/* Python: normalize_phone(value) -> str */
PyObject *va_py_normalize_phone(PyObject *module, PyObject *arg);
/* Python: timestamp() -> str */
PyObject *va_py_timestamp(PyObject *module, PyObject *unused);

/* ---- Lipa na M-Pesa Express (express.c) -------------------------------- */

/* Python: stk_password(shortcode, passkey, timestamp) -> str */
PyObject *ex_py_stk_password(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
/* Python: Client.stk_push(*, shortcode, passkey, amount, phone, ...) -> dict */
PyObject *ex_py_stk_push(PyObject *self, PyObject *args, PyObject *kwargs);
/* Python: Client.stk_query(*, shortcode, passkey, checkout_request_id, timestamp=None) -> dict */
PyObject *ex_py_stk_query(PyObject *self, PyObject *args, PyObject *kwargs);

#endif /* DARAJA_H */
