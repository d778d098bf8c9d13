/*
 * transport.c - libcurl only.
 *
 * A Transport is a Client's pool of easy handles. A handle is used by one thread
 * at a time (libcurl's rule) and goes back to the pool with its open connection,
 * so calls reuse connections; TLS sessions and DNS answers are shared between the
 * pool's handles through a share handle (never connections, which libcurl does
 * not allow across threads). The CA store, loaded once per CA file and module
 * (cr_load_ca_store) and shared read-only, is handed to each new TLS context.
 *
 * The pool follows concurrency: a handle is made only when none is idle, and every
 * handle given back is kept (up to DR_POOL_MAX), so the pool holds as many handles
 * as were ever in use at once. Handles idle longer than MAX_IDLE_SECONDS, whose
 * connections libcurl would not reuse anyway, are closed when a handle comes back:
 * the pool shrinks again when the load falls.
 *
 * One transfer sends its request once: if a reused connection dies before any
 * answer, libcurl would otherwise resend the request on a new connection by
 * itself. A pre-request callback refuses a second request in one transfer, so the
 * transfer fails instead and the caller decides: read-only calls are retried
 * (counted), money-moving calls are not, and their error says the outcome is
 * unknown.
 */
#include "daraja.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ssl.h>

#define MAX_IDLE_SECONDS 30L  /* older idle connections are not reused: they may be closing */

double
dr_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void
tr_sleep(double seconds)
{
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    Py_BEGIN_ALLOW_THREADS
    while (nanosleep(&ts, &ts) != 0) {
    }
    Py_END_ALLOW_THREADS
}

/* What each easy handle keeps for itself (its CURLOPT_PRIVATE), so the options that point
 * into it are set once, when the handle is made, and never point into a finished call's stack. */
typedef struct {
    TrResponse *resp;               /* the current transfer's answer; NULL between transfers */
    int requests;                   /* requests sent in the current transfer (one_request_only) */
    char errbuf[CURL_ERROR_SIZE];   /* libcurl's message for the current transfer */
    char *url;                      /* the CURLOPT_URL last set, or NULL */
} TrHandle;

static TrHandle *
handle_state(CURL *h)
{
    TrHandle *th = NULL;
    curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&th);
    return th;
}

/* curl_easy_cleanup and the handle's own state. */
static void
close_handle(CURL *h)
{
    TrHandle *th = handle_state(h);
    curl_easy_cleanup(h);
    if (th != NULL) {
        free(th->url);
        free(th);
    }
}

/* ---- response body ----------------------------------------------------- */

/* Append a chunk to the response, refusing to grow past DR_MAX_RESPONSE. */
static size_t
write_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    TrResponse *resp = ((TrHandle *)userdata)->resp;
    size_t n = size * nmemb;
    if (n > DR_MAX_RESPONSE || resp->len + n > DR_MAX_RESPONSE) {
        resp->overflow = 1;
        return 0;  /* makes libcurl stop with CURLE_WRITE_ERROR */
    }
    if (resp->len + n + 1 > resp->cap) {
        size_t cap = resp->cap ? resp->cap : 1024;
        while (cap < resp->len + n + 1) {
            cap *= 2;
        }
        /* Not realloc: the old block may hold a token answer's bytes, wiped before it goes. */
        char *body = malloc(cap);
        if (body == NULL) {
            return 0;
        }
        if (resp->body != NULL) {
            memcpy(body, resp->body, resp->len);
            cr_wipe(resp->body, resp->cap);
            free(resp->body);
        }
        resp->body = body;
        resp->cap = cap;
    }
    memcpy(resp->body + resp->len, ptr, n);
    resp->len += n;
    resp->body[resp->len] = '\0';
    return n;
}

/* Wipe and free the body (a token request's answer holds the token); keep the rest. */
static void
drop_body(TrResponse *resp)
{
    if (resp->body != NULL) {
        cr_wipe(resp->body, resp->cap);
        free(resp->body);
    }
    resp->body = NULL;
    resp->len = resp->cap = 0;
}

void
tr_response_free(TrResponse *resp)
{
    drop_body(resp);
    memset(resp, 0, sizeof(*resp));
}

/* ---- one request per transfer ------------------------------------------ */

/* Let the first request of a transfer go out and abort any second one: libcurl
 * asks again only when it is about to resend on a new connection. */
static int
one_request_only(void *clientp, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    int *requests = clientp;
    return (*requests)++ == 0 ? CURL_PREREQFUNC_OK : CURL_PREREQFUNC_ABORT;
}

/* ---- TLS and sharing ---------------------------------------------------- */

/* Give a new TLS context the Transport's CA store (loaded once, shared by reference). */
static CURLcode
install_ca_store(CURL *curl, void *ssl_ctx, void *userptr)
{
    (void)curl;
    Transport *t = userptr;
    if (X509_STORE_up_ref(t->ca_store) != 1) {
        return CURLE_OUT_OF_MEMORY;
    }
    SSL_CTX_set_cert_store((SSL_CTX *)ssl_ctx, t->ca_store);
    return CURLE_OK;
}

static void
share_lock(CURL *handle, curl_lock_data data, curl_lock_access access, void *userptr)
{
    (void)handle;
    (void)access;
    pthread_mutex_lock(&((Transport *)userptr)->share_locks[data]);
}

static void
share_unlock(CURL *handle, curl_lock_data data, void *userptr)
{
    (void)handle;
    pthread_mutex_unlock(&((Transport *)userptr)->share_locks[data]);
}

/* A share handle for TLS sessions and DNS; NULL (no exception: no GIL) on error. */
static CURLSH *
new_share(Transport *t)
{
    CURLSH *share = curl_share_init();
    if (share == NULL) {
        return NULL;
    }
    if (curl_share_setopt(share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
        curl_share_setopt(share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
        curl_share_setopt(share, CURLSHOPT_USERDATA, t) != CURLSHE_OK ||
        curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK ||
        curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK) {
        curl_share_cleanup(share);
        return NULL;
    }
    return share;
}

/* ---- secure defaults ---------------------------------------------------- */

#define SETOPT(h, opt, value)                              \
    do {                                                   \
        if (curl_easy_setopt((h), (opt), (value)) != CURLE_OK) { \
            goto error;                                    \
        }                                                  \
    } while (0)

/* A new easy handle with every security default set once: https only, peer and
 * host verified, TLS 1.2 or newer, no redirects, no proxy from the environment,
 * timeouts always on, the response size capped. NULL on error (no GIL). */
static CURL *
new_handle(Transport *t, CURLSH *share)
{
    TrHandle *th = calloc(1, sizeof(*th));
    CURL *h = th != NULL ? curl_easy_init() : NULL;
    if (h == NULL) {
        free(th);
        return NULL;
    }
    if (curl_easy_setopt(h, CURLOPT_PRIVATE, th) != CURLE_OK) {
        curl_easy_cleanup(h);
        free(th);
        return NULL;
    }
#if LIBCURL_VERSION_NUM >= 0x075500
    SETOPT(h, CURLOPT_PROTOCOLS_STR, "https");
    SETOPT(h, CURLOPT_REDIR_PROTOCOLS_STR, "https");
#else
    SETOPT(h, CURLOPT_PROTOCOLS, (long)CURLPROTO_HTTPS);
    SETOPT(h, CURLOPT_REDIR_PROTOCOLS, (long)CURLPROTO_HTTPS);
#endif
    SETOPT(h, CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(h, CURLOPT_SSL_VERIFYPEER, 1L);
    SETOPT(h, CURLOPT_SSL_VERIFYHOST, 2L);
    SETOPT(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    SETOPT(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SETOPT(h, CURLOPT_NOSIGNAL, 1L);
    SETOPT(h, CURLOPT_PROXY, "");
    /* No host goes through a proxy. This also spares libcurl reading no_proxy and NO_PROXY
     * from the environment on every transfer. */
    SETOPT(h, CURLOPT_NOPROXY, "*");
    SETOPT(h, CURLOPT_CONNECTTIMEOUT_MS, t->connect_timeout_ms);
    SETOPT(h, CURLOPT_TIMEOUT_MS, t->timeout_ms);
    SETOPT(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)DR_MAX_RESPONSE);
    SETOPT(h, CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(h, CURLOPT_MAXAGE_CONN, MAX_IDLE_SECONDS);
    /* libcurl allocates and frees both buffers on every transfer, and both hold secrets (the
     * request's Authorization and Password, the token answer), so every byte is wiped on free:
     * so both are kept small: the smallest upload buffer libcurl takes (16 KiB; Daraja's bodies
     * are under 2 KiB) and a 4 KiB receive buffer (a larger answer takes a few more reads). */
    SETOPT(h, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
    SETOPT(h, CURLOPT_BUFFERSIZE, 4096L);
    SETOPT(h, CURLOPT_WRITEFUNCTION, write_body);
    SETOPT(h, CURLOPT_WRITEDATA, th);
    SETOPT(h, CURLOPT_PREREQFUNCTION, one_request_only);
    SETOPT(h, CURLOPT_PREREQDATA, &th->requests);
    SETOPT(h, CURLOPT_ERRORBUFFER, th->errbuf);
    SETOPT(h, CURLOPT_SHARE, share);
    /* Our CA store replaces libcurl's file loading, so no CA file is read per connection. */
    SETOPT(h, CURLOPT_CAINFO, NULL);
    SETOPT(h, CURLOPT_CAPATH, NULL);
    SETOPT(h, CURLOPT_SSL_CTX_FUNCTION, install_ca_store);
    SETOPT(h, CURLOPT_SSL_CTX_DATA, t);
    return h;
error:
    close_handle(h);
    return NULL;
}

/* ---- the pool ------------------------------------------------------------ */

/* Take an idle handle (the most recently used) or make one; NULL on error (no GIL).
 * After a fork the parent's handles and share are abandoned, never closed: closing
 * would write a TLS close_notify into a socket the parent still uses. */
static CURL *
acquire_handle(Transport *t)
{
    CURL *h = NULL;
    pthread_mutex_lock(&t->lock);
    if (t->stale) {
        t->n_idle = 0;
        t->share = new_share(t);
        t->stale = 0;
    }
    if (t->n_idle > 0) {
        h = t->idle[--t->n_idle].handle;
    }
    else if (t->share != NULL) {
        h = new_handle(t, t->share);
    }
    pthread_mutex_unlock(&t->lock);
    return h;
}

/* Push h on the idle stack, growing it up to DR_POOL_MAX; 0, or -1 when full or out of
 * memory (no GIL). Caller holds the lock. */
static int
push_idle(Transport *t, CURL *h, double now)
{
    if (t->n_idle == t->cap_idle) {
        int cap = t->cap_idle ? t->cap_idle * 2 : 4;
        cap = cap > DR_POOL_MAX ? DR_POOL_MAX : cap;
        TrIdle *idle = cap > t->cap_idle ? realloc(t->idle, (size_t)cap * sizeof(*idle)) : NULL;
        if (idle == NULL) {
            return -1;
        }
        t->idle = idle;
        t->cap_idle = cap;
    }
    t->idle[t->n_idle++] = (TrIdle){h, now};
    return 0;
}

/* Move the handles idle since before now - MAX_IDLE_SECONDS (the bottom of the stack)
 * into out, for the caller to close without the lock; their number. Caller holds the lock. */
static int
take_expired(Transport *t, double now, CURL *out[DR_POOL_MAX])
{
    int n = 0;
    while (n < t->n_idle && t->idle[n].since < now - (double)MAX_IDLE_SECONDS) {
        out[n] = t->idle[n].handle;
        n++;
    }
    if (n > 0) {
        memmove(t->idle, t->idle + n, (size_t)(t->n_idle - n) * sizeof(*t->idle));
        t->n_idle -= n;
    }
    return n;
}

/* Give a handle back to the pool, or close it if the pool is full or it came from
 * before a fork; close the handles that have been idle too long. */
static void
release_handle(Transport *t, CURL *h, int keep)
{
    CURL *expired[DR_POOL_MAX];
    int n_expired = 0;
    double now = dr_monotonic();
    pthread_mutex_lock(&t->lock);
    int stale = t->stale;
    if (keep && !stale && push_idle(t, h, now) == 0) {
        h = NULL;
    }
    if (!stale) {
        n_expired = take_expired(t, now, expired);
    }
    pthread_mutex_unlock(&t->lock);
    if (h != NULL && !stale) {
        close_handle(h);
    }
    for (int i = 0; i < n_expired; i++) {
        close_handle(expired[i]);
    }
}

static void
fork_prepare(void *arg)
{
    Transport *t = arg;
    pthread_mutex_lock(&t->lock);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) {
        pthread_mutex_lock(&t->share_locks[i]);
    }
}

static void
fork_parent(void *arg)
{
    Transport *t = arg;
    for (int i = CURL_LOCK_DATA_LAST - 1; i >= 0; i--) {
        pthread_mutex_unlock(&t->share_locks[i]);
    }
    pthread_mutex_unlock(&t->lock);
}

static void
fork_child(void *arg)
{
    Transport *t = arg;
    t->stale = 1;
    fork_parent(arg);
}

Transport *
tr_new(DarajaState *st, const char *ca_file, double connect_timeout, double timeout)
{
    Transport *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) {
        pthread_mutex_init(&t->share_locks[i], NULL);
    }
    t->connect_timeout_ms = (long)(connect_timeout * 1000.0);
    t->timeout_ms = (long)(timeout * 1000.0);
    t->hook = (AfHook){fork_prepare, fork_parent, fork_child, t, NULL, NULL};
    if ((t->ca_store = cr_load_ca_store(st, ca_file)) == NULL) {
        goto error;
    }
    if ((t->share = new_share(t)) == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "libcurl share handle could not be created");
        goto error;
    }
    /* Fail now, not at the first payment, if libcurl lacks what we rely on. */
    CURL *probe = new_handle(t, t->share);
    if (probe == NULL) {
        PyErr_SetString(PyExc_ImportError,
                        "libcurl lacks a required option (it must be built with OpenSSL)");
        goto error;
    }
    if (push_idle(t, probe, dr_monotonic()) < 0) {
        close_handle(probe);
        PyErr_NoMemory();
        goto error;
    }
    if (af_register(&t->hook) < 0) {
        goto error;
    }
    return t;
error:
    tr_free(t);
    return NULL;
}

void
tr_free(Transport *t)
{
    af_unregister(&t->hook);
    if (!t->stale) {
        for (int i = 0; i < t->n_idle; i++) {
            close_handle(t->idle[i].handle);
        }
        if (t->share != NULL) {
            curl_share_cleanup(t->share);
        }
    }
    free(t->idle);
    X509_STORE_free(t->ca_store);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) {
        pthread_mutex_destroy(&t->share_locks[i]);
    }
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* ---- one transfer ------------------------------------------------------- */

/* The request's headers as a list on the caller's stack. libcurl only reads the list,
 * so no copy of the Authorization header is made in memory we could not wipe, and no
 * allocation happens per request. Bodies stay far below libcurl's 1 MiB threshold for
 * "Expect: 100-continue", so no header is needed to turn it off. */
static struct curl_slist *
build_headers(const TrRequest *req, struct curl_slist lines[3])
{
    /* A fixed line, not CURLOPT_USERAGENT, which libcurl formats anew for every request. */
    static char user_agent[] = "User-Agent: frappe_mpesa (libcurl)";
    static char content_type[] = "Content-Type: application/json";
    lines[2] = (struct curl_slist){(char *)req->auth_header, NULL};
    lines[1] = (struct curl_slist){content_type, &lines[2]};
    lines[0] = (struct curl_slist){user_agent, req->body != NULL ? &lines[1] : &lines[2]};
    return &lines[0];
}

/* Set the per-request options: URL (unless the handle has it already), headers, method, body
 * and the time left; reset the handle's state for a new transfer. */
static CURLcode
prepare_request(CURL *h, TrHandle *th, Transport *t, const TrRequest *req, struct curl_slist *headers,
                TrResponse *resp, long left_ms)
{
    CURLcode rc;
#define TRY(opt, value)                                           \
    if ((rc = curl_easy_setopt(h, (opt), (value))) != CURLE_OK) { \
        return rc;                                                \
    }
    th->resp = resp;
    th->requests = 0;
    th->errbuf[0] = '\0';
    if (th->url == NULL || strcmp(th->url, req->url) != 0) {
        free(th->url);
        th->url = NULL;
        TRY(CURLOPT_URL, req->url);
        th->url = strdup(req->url);  /* without it the URL is only set again next time */
    }
    TRY(CURLOPT_HTTPHEADER, headers);
    TRY(CURLOPT_TIMEOUT_MS, left_ms);
    TRY(CURLOPT_CONNECTTIMEOUT_MS, left_ms < t->connect_timeout_ms ? left_ms : t->connect_timeout_ms);
    if (req->body == NULL) {
        TRY(CURLOPT_HTTPGET, 1L);
    }
    else {
        TRY(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        TRY(CURLOPT_POSTFIELDS, req->body);
    }
#undef TRY
    return CURLE_OK;
}

static int
is_tls_error(CURLcode rc)
{
    switch (rc) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_USE_SSL_FAILED:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
        return 1;
    default:
        return 0;
    }
}

/* Failures of the connection itself, which a new attempt may not meet again. */
static int
is_connection_failure(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_ABORTED_BY_CALLBACK:  /* one_request_only stopped a resend */
        return 1;
    default:
        return 0;
    }
}

int
tr_retryable(const TrRequest *req, const TrResponse *resp)
{
    return is_connection_failure(resp->code) && !resp->overflow && (req->idempotent || !resp->sent);
}

/* Map a failed transfer to our exceptions; always returns -1. */
static int
raise_transfer_error(DarajaState *st, const TrRequest *req, const TrResponse *resp, const char *errbuf,
                     long left_ms)
{
    CURLcode rc = resp->code;
    int sent = resp->sent;
    const char *detail = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    const char *unknown = sent && !req->idempotent
                              ? "; the request may have reached Daraja, so its outcome is unknown and it "
                                "was not resent: check it with a status query or wait for its callback"
                              : "";
    if (resp->overflow || rc == CURLE_FILESIZE_EXCEEDED) {
        return er_transport_error(st, st->TransportError, sent, "%s: response larger than %d bytes refused%s",
                                  req->url, DR_MAX_RESPONSE, unknown);
    }
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        return er_transport_error(st, st->TimeoutError, sent, "%s: no answer within %ld ms (%s)%s", req->url,
                                  left_ms, detail, unknown);
    }
    if (is_tls_error(rc)) {
        return er_transport_error(st, st->TLSError, sent, "%s: TLS failed: %s%s", req->url, detail, unknown);
    }
    return er_transport_error(st, st->TransportError, sent, "%s: %s%s", req->url, detail, unknown);
}

int
tr_perform(DarajaState *st, Transport *t, const TrRequest *req, TrResponse *resp)
{
    char errbuf[CURL_ERROR_SIZE];
    long sent_bytes = 0;
    long left_ms = (long)((req->deadline - dr_monotonic()) * 1000.0);
    CURLcode rc;
    CURL *h;
    TrHandle *th = NULL;
    struct curl_slist lines[3];
    struct curl_slist *headers = build_headers(req, lines);

    memset(resp, 0, sizeof(*resp));
    if (left_ms < 1) {
        resp->code = CURLE_OPERATION_TIMEDOUT;
        return er_transport_error(st, st->TimeoutError, 0, "%s: the call's time ran out before it was sent",
                                  req->url);
    }
    Py_BEGIN_ALLOW_THREADS
    h = acquire_handle(t);
    th = h != NULL ? handle_state(h) : NULL;
    rc = th == NULL ? CURLE_FAILED_INIT : prepare_request(h, th, t, req, headers, resp, left_ms);
    if (rc == CURLE_OK) {
        rc = curl_easy_perform(h);
    }
    if (h != NULL) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
        curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &sent_bytes);
        errbuf[0] = '\0';
        if (rc != CURLE_OK && th != NULL) {  /* the handle may serve another thread once released */
            memcpy(errbuf, th->errbuf, sizeof(errbuf));
            errbuf[sizeof(errbuf) - 1] = '\0';
        }
        /* Drop the pointers into this call's stack, the caller's body and the header list. */
        if (th != NULL) {
            th->resp = NULL;
        }
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
        release_handle(t, h, rc == CURLE_OK);
    }
    Py_END_ALLOW_THREADS
    if (rc == CURLE_OK) {
        return 0;
    }
    resp->code = rc;
    resp->sent = sent_bytes > 0;
    drop_body(resp);
    if (h == NULL) {
        PyErr_SetString(PyExc_MemoryError, "no libcurl handle could be made");
        return -1;
    }
    return raise_transfer_error(st, req, resp, errbuf, left_ms);
}
