/*
 * daraja.h - private header of the frappe_mpesa._daraja extension.
 *
 * States the per-module state, the Client object and the prototypes each
 * translation unit offers the others. Prefixes name the file a function lives in:
 *
 *   er_  errors.c       exception classes and the helpers that raise them (the ground floor)
 *   md_  module.c       module definition, Client type, module functions: glue only
 *   cl_  client.c       a Client's request cycle: the OAuth request, token, send, retry on a
 *                       refused token, decode
 *   tr_  transport.c    libcurl: handle pool, secure defaults, transfers without the GIL
 *   tc_  token_cache.c  OAuth tokens per (host, consumer key), single-flight refresh, the
 *                       token_store; the fetch itself is the caller's (a TcFetch)
 *   cr_  crypto.c       OpenSSL: certificates, Security Credential, base64, secrets, CA stores
 *   jw_  json.c         JSON request bodies
 *   va_  validate.c     input rules, checked before any network I/O
 *   rq_  request.c      Daraja requests described as tables: rules checked, body written
 *   ex_  express.c      Lipa na M-Pesa Express: STK push and STK query
 *   c2b_ c2b.c          customer to business: URL registration, simulation, pull
 *   pm_  payments.c     money out: B2C, B2B, tax remittance, reversal
 *   iq_  inquiry.c      transaction status and account balance
 *   qr_  qr.c           dynamic QR codes
 *   vf_  verify.c       callback origin: URL secret in constant time, address allowlist
 *   af_  atfork.c       fork safety: locks held across fork(), children start afresh
 *   jr_  jsonread.c     strict RFC 8259 reader for callback bodies (size, depth, UTF-8 capped)
 *   cb_  callbacks.c    callback parsing and typing, the replies Daraja expects
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
#include <string.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#define DR_MAX_RESPONSE (1024 * 1024)  /* bytes of a Daraja response we accept */
#define DR_MAX_BODY (64 * 1024)        /* bytes of a request body we build */
#define DR_TOKEN_MARGIN 60             /* seconds before expiry a token is renewed */
#define DR_KEY_CACHE_SLOTS 8           /* parsed certificate keys kept per module */
#define DR_POOL_MAX 256                /* idle libcurl handles a Client may keep, at most */
#define DR_CA_CACHE_SLOTS 8            /* CA stores kept per module, one per CA file */
#define DR_MAX_CALLBACK 65536          /* bytes of a callback body we accept */
#define DR_MAX_DEPTH 32                /* nesting of arrays/objects in a callback body */
#define DR_KEY_SLOTS 64                /* JSON object keys the reader keeps, as str objects */
#define DR_KEY_MAX 48                  /* bytes of the longest key it keeps */

/* ---- eight bytes at a time --------------------------------------------- */

/* Scanners of text (JSON strings, field values) test a whole 64-bit word per step.
 * These answers are exact as yes/no: no byte of the word is reported wrongly as
 * present or absent, only which byte it is stays unknown. */
#define DR_ONES 0x0101010101010101ULL
#define DR_HIGHS 0x8080808080808080ULL

/* The 8 bytes at p as one word (any alignment). */
static inline uint64_t
dr_load8(const void *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof(w));
    return w;
}

/* Nonzero when a byte of w is below n (n <= 128). */
static inline uint64_t
dr_any_below(uint64_t w, unsigned n)
{
    return (w - DR_ONES * n) & ~w & DR_HIGHS;
}

/* Nonzero when a byte of w equals c. */
static inline uint64_t
dr_any_equal(uint64_t w, unsigned char c)
{
    return dr_any_below(w ^ (DR_ONES * c), 1);
}

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

/* ---- CA store cache (crypto.c) ----------------------------------------- */

/* A loaded CA store and the identity of the file it was read from. */
typedef struct {
    char *path;                 /* as given, or the system bundle's file; NULL: free slot */
    int system;                 /* the system store (default file and directory) */
    unsigned long long dev, ino, size, mtime_ns, ctime_ns;  /* stat of path when read; 0s: absent */
    X509_STORE *store;          /* one reference held by the cache */
} CaSlot;

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
    PyObject *Decimal;     /* decimal.Decimal, for callback amounts and JSON fractions */
    PyObject *datetime;    /* datetime.datetime, for callback dates */
    PyObject *nairobi_tz;  /* datetime.timezone(timedelta(hours=3), "EAT") */
    PyObject *cb_cache;    /* callbacks.c's interned keys and lookup tables (a tuple) */
    PyObject *json_keys[DR_KEY_SLOTS];  /* jsonread.c's last object keys, by a hash of their bytes */
    TokenCache tokens;
    KeySlot keys[DR_KEY_CACHE_SLOTS];
    unsigned next_key_slot;
    CaSlot cas[DR_CA_CACHE_SLOTS];  /* touched only with the GIL held */
    unsigned next_ca_slot;
} DarajaState;

/* ---- transport (transport.c) ------------------------------------------- */

/* An idle handle and when it went idle (dr_monotonic seconds). */
typedef struct {
    CURL *handle;
    double since;
} TrIdle;

typedef struct {
    pthread_mutex_t lock;       /* guards idle, n_idle, cap_idle, share and stale */
    TrIdle *idle;               /* a stack: the most recently used on top, the oldest at [0] */
    int n_idle;
    int cap_idle;               /* slots allocated in idle, at most DR_POOL_MAX */
    CURLSH *share;              /* TLS sessions and DNS, shared by the pool */
    pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
    X509_STORE *ca_store;       /* shared with every Transport using the same CA file (read-only) */
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
    double deadline;            /* dr_monotonic() time the whole call must end by */
} TrRequest;

typedef struct {
    long status;
    char *body;                 /* NUL-terminated, at most DR_MAX_RESPONSE bytes */
    size_t len;
    size_t cap;
    int overflow;
    CURLcode code;              /* after a failed transfer: what failed */
    int sent;                   /* after a failed transfer: bytes may have reached the server */
} TrResponse;

/* Make a transport with its CA store; on error set an exception, return NULL. */
Transport *tr_new(DarajaState *st, const char *ca_file, double connect_timeout, double timeout);
/* Free a transport; in a forked child the parent's handles are abandoned, not closed. */
void tr_free(Transport *t);
/* Perform one request with the GIL released; fill *resp or set an exception
 * (resp->code and resp->sent then say what failed). */
int tr_perform(DarajaState *st, Transport *t, const TrRequest *req, TrResponse *resp);
/* May a failed transfer be tried again without risking a second payment? */
int tr_retryable(const TrRequest *req, const TrResponse *resp);
/* Seconds on a monotonic clock. */
double dr_monotonic(void);
/* Sleep without the GIL. */
void tr_sleep(double seconds);
/* Release a response's body. */
void tr_response_free(TrResponse *resp);

/* ---- the Client object (module.c) -------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *module;           /* strong reference: keeps the state alive */
    PyObject *token_store;      /* object with load()/store(), or NULL */
    int store_timeout;          /* token_cache.c's: which store methods take timeout=, found once */
    char *base_url;             /* "https://host[:port][/prefix]", no trailing slash */
    const char *environment;    /* "sandbox" or "production" (static) */
    char *consumer_key;
    SecretBuf consumer_secret;
    double timeout;
    Transport *transport;
    TokenEntry *token;          /* this Client's slot in the module's token cache */
} DarajaClient;

/* The module state of a Client. */
static inline DarajaState *
dr_client_state(DarajaClient *c)
{
    return (DarajaState *)PyModule_GetState(c->module);
}

/* ---- errors (errors.c) ------------------------------------------------- */

/* Create the exception classes, add them to module and keep them in st; -1 on error. */
int er_add_exceptions(PyObject *module, DarajaState *st);

/* Raise ValidationError naming `field`; always returns -1. */
int er_validation_error(DarajaState *st, const char *field, const char *fmt, ...);
/* Raise `type` (a DarajaError) with http_status/error_code/request_id attributes; returns NULL. */
PyObject *er_api_error(DarajaState *st, PyObject *type, long http_status, const char *error_code,
                       const char *request_id, const char *message);
/* Raise a TransportError subclass with the `sent` attribute; returns -1. */
int er_transport_error(DarajaState *st, PyObject *type, int sent, const char *fmt, ...);
/* Take the raised exception (new reference) and clear it; pair with er_restore_error. */
PyObject *er_take_error(void);
/* Raise a taken exception again (steals the reference). */
void er_restore_error(PyObject *exc);

/* ---- token cache (token_cache.c) --------------------------------------- */

/* Initialise the module's token cache; on error set an exception, return -1. */
int tc_init(TokenCache *tc);
/* Wipe every token and free the cache. */
void tc_clear(TokenCache *tc);
/* Find or create the entry for (base_url, key, secret); NULL with an exception on error. */
TokenEntry *tc_entry(TokenCache *tc, const char *base_url, const char *key, const SecretBuf *secret);
/* Fetch a new token for c over the network by deadline: the token and its lifetime in seconds.
 * 0, or -1 with an exception set. */
typedef int (*TcFetch)(DarajaClient *c, double deadline, SecretBuf *token, double *expires_in);

/* Copy a valid token for c into *out by deadline: from the cache, else (single flight) from the
 * Client's token_store, else from fetch. A call ends by its own deadline: a store is given the
 * time left, and an answer after the deadline is a TimeoutError. */
int tc_get(DarajaClient *c, double deadline, TcFetch fetch, SecretBuf *out);
/* Drop `token` if it is still the entry's current one, so the next tc_get renews it. */
void tc_reject(DarajaClient *c, const SecretBuf *token);

/* ---- client request cycle (client.c) ----------------------------------- */

/* A valid token for c (cached, or fetched within the Client's timeout) into *out. */
int cl_access_token(DarajaClient *c, SecretBuf *out);
/* POST a JSON body to `path` with a valid token; return the decoded dict (new reference). */
PyObject *cl_post(DarajaClient *c, const char *path, const char *body, size_t body_len, int idempotent);

/* ---- crypto (crypto.c) ------------------------------------------------- */

/* Initialise libcurl with an allocator that wipes every block it frees. 1 when libcurl
 * uses it, 0 when libcurl had been initialised before (by another library in the
 * process) and keeps that allocator; -1 with ImportError. */
int cr_curl_global_init(void);

/* Set *out to a copy of bytes; on error set MemoryError and return -1. */
int cr_secret_set(SecretBuf *out, const char *data, size_t len);
/* Wipe and free a secret buffer; safe on an empty one. */
void cr_secret_free(SecretBuf *s);
/* Wipe n bytes so that no compiler may drop it (explicit_bzero, or OPENSSL_cleanse). */
void cr_wipe(void *p, size_t n);
/* Constant-time equality of two byte strings (lengths compared too). */
int cr_equal(const void *a, size_t alen, const void *b, size_t blen);
/* Base64 of in (no newlines) into a new NUL-terminated buffer; NULL on error. */
char *cr_base64(DarajaState *st, const unsigned char *in, size_t len, size_t *out_len);
/* Decode base64 (newlines allowed) into a new buffer; NULL with ValidationError(field) if invalid. */
unsigned char *cr_base64_decode(DarajaState *st, const char *field, const char *in, size_t len,
                                size_t *out_len);
/* SHA-256 of in into out[32]; -1 with an exception on error. */
int cr_sha256(DarajaState *st, const void *in, size_t len, unsigned char out[32]);
/* The CA store of a CA file (or the system store when NULL), shared read-only: loaded once per
 * file identity (device, inode, size, mtime) and module; the caller owns one reference. */
X509_STORE *cr_load_ca_store(DarajaState *st, const char *ca_file);
/* Drop the module's references to its CA stores. */
void cr_ca_cache_clear(DarajaState *st);
/* Python: security_credential(certificate, initiator_password) -> str */
PyObject *cr_py_security_credential(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
/* Python: certificate_info(certificate) -> dict */
PyObject *cr_py_certificate_info(PyObject *module, PyObject *arg);
/* Free every cached key. */
void cr_key_cache_clear(DarajaState *st);

/* ---- JSON request bodies (json.c) -------------------------------------- */

#define JW_INLINE 1024  /* bytes of body kept inside the JsonBuf: no allocation for Daraja's bodies */

/* A body being written. `data` points at `inline_data` until the body outgrows it, so a
 * JsonBuf is never copied by value. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
    int first;      /* no member written yet in the current object */
    int failed;     /* out of memory or over DR_MAX_BODY */
    char inline_data[JW_INLINE];
} JsonBuf;

/* Start an empty object. */
void jw_begin(JsonBuf *b);
/* Append "key":"value" with the value escaped as JSON; key is one of our own field names,
 * written as it is. */
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

/* Is s[0..n) usable as an OAuth token in a header line: 1 to 4096 visible ASCII characters? */
int va_is_token(const char *s, Py_ssize_t n);
/* The value of the n (< 10) decimal digits at s, or -1 if any is not a digit. */
int va_digits_value(const char *s, int n);
/* A str or int of min..max digits into out[size]. */
int va_digits(DarajaState *st, const char *field, PyObject *v, size_t min, size_t max, char *out, size_t size);
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

/* ---- table-driven requests (request.c) --------------------------------- */

#define RQ_MAX_FIELDS 20

typedef enum {
    RQ_END = 0,     /* ends a field table */
    RQ_SHORTCODE,   /* 5-7 digits, sent as a string */
    RQ_AMOUNT,      /* whole shillings in [min or 1, max or the ceiling], sent as a number */
    RQ_PHONE,       /* Kenyan mobile number, sent as 2547XXXXXXXX */
    RQ_URL,         /* https callback URL free of the words Daraja refuses */
    RQ_TEXT,        /* min..max characters, no control characters */
    RQ_DIGITS,      /* min..max digits from a str or an int, sent as a string */
    RQ_SECRET,      /* non-empty, never echoed in messages */
    RQ_CHOICE,      /* one of `choices` (an int is accepted for digit choices) */
    RQ_ID,          /* letters, digits, '_', '-', '.': min..max characters (default 1..64) */
    RQ_UUID,        /* as RQ_ID; a fresh UUID4 when not given */
    RQ_TIMESTAMP,   /* YYYYMMDDHHmmss; Nairobi's time now when not given */
    RQ_DATETIME,    /* "YYYY-MM-DD HH:MM:SS" from text or a datetime */
    RQ_CONST,       /* `fixed`, no keyword */
    RQ_DERIVED,     /* computed by the API's derive hook */
    RQ_RAW,         /* the Python object, left to the API's check hook */
} RqKind;

/* One row of a field table: RQ_FIELD("amount", "Amount", RQ_AMOUNT, .flags = RQ_REQUIRED). */
#define RQ_FIELD(kw_, json_, kind_, ...) {.kw = (kw_), .json = (json_), .kind = (kind_), __VA_ARGS__}
#define RQ_TABLE_END {.kind = RQ_END}

#define RQ_REQUIRED 1u  /* the keyword must be given */
#define RQ_ECHO 2u      /* copied into the answer when Daraja leaves it out */

typedef struct {
    const char *kw;     /* keyword argument; NULL for RQ_CONST and RQ_DERIVED */
    const char *json;   /* Daraja's field name; NULL for values used only by hooks */
    RqKind kind;
    unsigned flags;
    Py_ssize_t min, max;
    const char *const *choices;
    const char *fixed;  /* RQ_CONST's value, or the default when not given */
} RqField;

typedef struct {
    const char *text;   /* borrowed from the argument, or buf */
    Py_ssize_t len;
    long long number;   /* RQ_AMOUNT */
    PyObject *object;   /* RQ_RAW (borrowed) */
    int present;
    char buf[40];
} RqValue;

typedef struct RqApi RqApi;
struct RqApi {
    const char *name;   /* the Python method, for messages */
    const char *path;
    int idempotent;     /* 0: moves money, never resent once it may have been sent */
    const RqField *fields;
    /* Rules across fields; may fill values. -1 with an exception when broken. */
    int (*check)(DarajaClient *c, const RqApi *api, RqValue *values);
    /* The value of an RQ_DERIVED field into a secret buffer. */
    int (*derive)(DarajaState *st, const RqApi *api, RqValue *values, const RqField *f, SecretBuf *out);
};

/* The rows every initiator API (B2C, B2B, tax, status, balance, reversal) shares. */
#define RQ_INITIATOR(json_name)                                                                  \
    RQ_FIELD("initiator_name", json_name, RQ_TEXT, .flags = RQ_REQUIRED, .min = 1, .max = 64), \
        RQ_FIELD("security_credential", "SecurityCredential", RQ_SECRET, .flags = RQ_REQUIRED)
#define RQ_RESULT_URLS                                                          \
    RQ_FIELD("queue_timeout_url", "QueueTimeOutURL", RQ_URL, .flags = RQ_REQUIRED), \
        RQ_FIELD("result_url", "ResultURL", RQ_URL, .flags = RQ_REQUIRED)
#define RQ_REMARKS(default_) RQ_FIELD("remarks", "Remarks", RQ_TEXT, .min = 2, .max = 100, .fixed = (default_))

/* The field for keyword kw, or NULL. */
const RqField *rq_field(const RqApi *api, const char *kw);
/* The value slot for keyword kw, or NULL. */
RqValue *rq_value(const RqApi *api, RqValue *values, const char *kw);
/* Check the arguments and write the body; values has RQ_MAX_FIELDS slots. */
int rq_build(DarajaClient *c, const RqApi *api, PyObject *args, PyObject *kwargs, RqValue *values,
             JsonBuf *body);
/* Send a built body to path (NULL: the API's own) and return Daraja's answer. */
PyObject *rq_send(DarajaClient *c, const RqApi *api, const char *path, RqValue *values, const JsonBuf *body);
/* rq_build then rq_send: a whole Client method. */
PyObject *rq_call(PyObject *self, const RqApi *api, PyObject *args, PyObject *kwargs);

/* ---- C2B, payments, inquiries, QR (c2b.c, payments.c, inquiry.c, qr.c) -- */

/* Python: Client.c2b_register_urls / c2b_simulate / pull_register / pull_query */
PyObject *c2b_py_register_urls(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *c2b_py_simulate(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *c2b_py_pull_register(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *c2b_py_pull_query(PyObject *self, PyObject *args, PyObject *kwargs);
/* Python: Client.b2c_payment / b2b_payment / tax_remittance / reversal (they move money) */
PyObject *pm_py_b2c_payment(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *pm_py_b2b_payment(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *pm_py_tax_remittance(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *pm_py_reversal(PyObject *self, PyObject *args, PyObject *kwargs);
/* Python: Client.transaction_status / account_balance (read-only) */
PyObject *iq_py_transaction_status(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *iq_py_account_balance(PyObject *self, PyObject *args, PyObject *kwargs);
/* Python: Client.dynamic_qr */
PyObject *qr_py_dynamic_qr(PyObject *self, PyObject *args, PyObject *kwargs);

/* ---- Lipa na M-Pesa Express (express.c) -------------------------------- */

/* Python: stk_password(shortcode, passkey, timestamp) -> str */
PyObject *ex_py_stk_password(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
/* Python: Client.stk_push(*, shortcode, passkey, amount, phone, ...) -> dict */
PyObject *ex_py_stk_push(PyObject *self, PyObject *args, PyObject *kwargs);
/* Python: Client.stk_query(*, shortcode, passkey, checkout_request_id, timestamp=None) -> dict */
PyObject *ex_py_stk_query(PyObject *self, PyObject *args, PyObject *kwargs);

/* ---- callbacks (jsonread.c, callbacks.c) ------------------------------ */

/* Parse len bytes of strict JSON into Python objects (fractions as Decimal);
 * ValidationError (field "body") naming the fault and its byte offset on error. */
PyObject *jr_parse(DarajaState *st, const char *data, size_t len, size_t max_len);
/* Drop the reader's kept keys. */
void jr_clear_keys(DarajaState *st);
/* Add parse_callback, verify_callback, new_callback_secret, c2b_accept, c2b_reject
 * and ack to the module; needs st->Decimal, st->datetime and st->nairobi_tz. */
int cb_add_functions(PyObject *module);
/* Python: new_callback_secret() -> str (registered by callbacks.c) */
PyObject *vf_py_new_callback_secret(PyObject *module, PyObject *unused);
/* Python: verify_callback(expected_secret, given_secret, remote_addr, allowlist=None) -> bool */
PyObject *vf_py_verify_callback(PyObject *module, PyObject *args, PyObject *kwargs);

#endif /* DARAJA_H */
