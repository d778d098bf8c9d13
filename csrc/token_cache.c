/*
 * token_cache.c - OAuth tokens, one entry per (host, consumer key, secret), shared
 * by every Client of the module: one process serves many Frappe sites, and each
 * site's clients reuse one token until it is DR_TOKEN_MARGIN seconds from expiry.
 *
 * Single flight: when no valid token is cached, one caller (the leader) fetches
 * while the others wait on a condition variable with the GIL released. The leader
 * first asks the Client's token_store (shared across worker processes), then the
 * network through the fetch its caller gave (a TcFetch); every new token is told
 * to the store.
 *
 * One deadline: the store counts against the call's deadline. A store method that
 * takes a `timeout` keyword (or **kwargs) is given the seconds left; one that does
 * not is called as before. A slow Python call cannot be interrupted, so the time is
 * checked again when it returns, and a call past its deadline ends with
 * TimeoutError (a token the store gave late is still kept for the next caller).
 * Waiters wake by their own deadline, not the leader's.
 *
 * Lock discipline: the cache lock is taken with or without the GIL, but never held
 * while waiting for the GIL, so it cannot deadlock against Python threads.
 * No I/O happens here; fetching is the caller's job.
 */
#include "daraja.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

struct TokenEntry {
    TokenEntry *next;
    char *base_url;
    char *consumer_key;
    unsigned char secret_digest[32];
    SecretBuf token;
    double expires_at;              /* epoch seconds */
    unsigned char rejected[32];     /* digest of the last token Daraja refused */
    int has_rejected;
    int in_flight;                  /* a leader is fetching */
    pthread_cond_t done;            /* signalled when in_flight drops */
    unsigned long flights;          /* fetches started so far */
    unsigned long failed_flight;    /* the last fetch that failed (0: none) */
    PyObject *failure_type;         /* its exception class (borrowed from the module state) */
    char failure[256];              /* and its message (never holds a secret) */
};

static double
now_epoch(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Which token_store methods take timeout= (DarajaClient.store_timeout). */
#define STORE_INSPECTED 1
#define LOAD_TAKES_TIMEOUT 2
#define STORE_TAKES_TIMEOUT 4

/* A condition variable timed on CLOCK_MONOTONIC, the clock deadlines are on. */
static void
init_cond(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

static void
fork_prepare(void *arg)
{
    pthread_mutex_lock(&((TokenCache *)arg)->lock);
}

static void
fork_parent(void *arg)
{
    pthread_mutex_unlock(&((TokenCache *)arg)->lock);
}

/* In the child no leader exists: clear in-flight marks so nobody waits for one. */
static void
fork_child(void *arg)
{
    TokenCache *tc = arg;
    for (TokenEntry *e = tc->entries; e != NULL; e = e->next) {
        e->in_flight = 0;
        init_cond(&e->done);
    }
    pthread_mutex_unlock(&tc->lock);
}

int
tc_init(TokenCache *tc)
{
    pthread_mutex_init(&tc->lock, NULL);
    tc->entries = NULL;
    tc->hook = (AfHook){fork_prepare, fork_parent, fork_child, tc, NULL, NULL};
    if (af_register(&tc->hook) < 0) {
        pthread_mutex_destroy(&tc->lock);
        return -1;
    }
    tc->ready = 1;
    return 0;
}

void
tc_clear(TokenCache *tc)
{
    if (!tc->ready) {
        return;
    }
    af_unregister(&tc->hook);
    TokenEntry *e = tc->entries;
    while (e != NULL) {
        TokenEntry *next = e->next;
        cr_secret_free(&e->token);
        pthread_cond_destroy(&e->done);
        free(e->base_url);
        free(e->consumer_key);
        free(e);
        e = next;
    }
    tc->entries = NULL;
    pthread_mutex_destroy(&tc->lock);
    tc->ready = 0;
}

TokenEntry *
tc_entry(TokenCache *tc, const char *base_url, const char *key, const SecretBuf *secret)
{
    unsigned char digest[32];
    TokenEntry *e;
    if (cr_sha256(NULL, secret->data, secret->len, digest) < 0) {
        return NULL;
    }
    pthread_mutex_lock(&tc->lock);
    for (e = tc->entries; e != NULL; e = e->next) {
        /* The secret must match too: knowing a consumer key is not enough to
         * borrow another site's token. */
        if (strcmp(e->base_url, base_url) == 0 && strcmp(e->consumer_key, key) == 0 &&
            CRYPTO_memcmp(e->secret_digest, digest, 32) == 0) {
            break;
        }
    }
    if (e == NULL && (e = calloc(1, sizeof(*e))) != NULL) {
        e->base_url = strdup(base_url);
        e->consumer_key = strdup(key);
        if (e->base_url == NULL || e->consumer_key == NULL) {
            free(e->base_url);
            free(e->consumer_key);
            free(e);
            e = NULL;
        }
        else {
            memcpy(e->secret_digest, digest, 32);
            init_cond(&e->done);
            e->next = tc->entries;
            tc->entries = e;
        }
    }
    pthread_mutex_unlock(&tc->lock);
    cr_wipe(digest, sizeof(digest));
    if (e == NULL) {
        PyErr_NoMemory();
    }
    return e;
}

/* Is the entry's token usable now? Caller holds the lock. */
static int
token_valid(const TokenEntry *e, double now)
{
    return e->token.data != NULL && now < e->expires_at - DR_TOKEN_MARGIN;
}

/* Describe the raised exception (which stays raised) as its class and message, so
 * that the fetch's waiters fail the same way instead of each sending a token request
 * of its own to a server that is failing. Called before taking the lock: str() may
 * run Python code. */
static PyObject *
describe_failure(char *message, size_t size)
{
    PyObject *exc = er_take_error();
    PyObject *text = exc != NULL ? PyObject_Str(exc) : NULL;
    const char *utf8 = text != NULL ? PyUnicode_AsUTF8(text) : NULL;
    PyObject *type = exc != NULL ? (PyObject *)Py_TYPE(exc) : NULL;
    PyOS_snprintf(message, size, "%s", utf8 != NULL ? utf8 : "unknown error");
    Py_XDECREF(text);
    PyErr_Clear();
    if (exc != NULL) {
        er_restore_error(exc);
    }
    return type;
}

/* Raise, for a waiter, the failure of the fetch it waited for; returns -1. */
static int
raise_shared_failure(DarajaClient *c, PyObject *type, const char *message)
{
    DarajaState *st = dr_client_state(c);
    int ours = type == st->AuthError || type == st->APIError || type == st->TransportError ||
               type == st->TimeoutError || type == st->TLSError || type == st->ValidationError;
    PyErr_Format(ours ? type : st->DarajaError, "the token request another thread made failed: %s", message);
    return -1;
}

/* Raise TimeoutError: the call's deadline passed `what` (nothing was sent); returns -1. */
static int
out_of_time(DarajaClient *c, const char *what)
{
    DarajaState *st = dr_client_state(c);
    return er_transport_error(st, st->TimeoutError, 0, "the call's time ran out %s", what);
}

/* Wait, without the GIL, until no leader is fetching; -1 with TimeoutError if the
 * caller's own deadline passes first (the leader's may be later). */
static int
wait_for_leader(DarajaClient *c, TokenCache *tc, TokenEntry *e, double deadline)
{
    struct timespec until;
    int rc = 0;
    if (deadline <= dr_monotonic()) {
        return out_of_time(c, "before another thread's token request ended");
    }
    until.tv_sec = (time_t)deadline;
    until.tv_nsec = (long)((deadline - (double)until.tv_sec) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&tc->lock);
    while (e->in_flight && rc != ETIMEDOUT) {
        rc = pthread_cond_timedwait(&e->done, &tc->lock, &until);
    }
    pthread_mutex_unlock(&tc->lock);
    Py_END_ALLOW_THREADS
    if (rc == ETIMEDOUT) {
        return out_of_time(c, "waiting for another thread's token request");
    }
    return 0;
}

/* Does store.<name> take a timeout keyword: a parameter named timeout that can be passed by
 * keyword, or **kwargs? 1 or 0 (a method inspect cannot read keeps the old signature);
 * -1 with an exception on error. */
static int
takes_timeout(PyObject *store, const char *name)
{
    PyObject *inspect, *method = NULL, *parameter = NULL, *sig = NULL, *params = NULL, *iter = NULL;
    PyObject *by_keyword = NULL, *keyword_only = NULL, *var_keyword = NULL, *p;
    int rc = -1;
    if ((inspect = PyImport_ImportModule("inspect")) == NULL ||
        (parameter = PyObject_GetAttrString(inspect, "Parameter")) == NULL ||
        (by_keyword = PyObject_GetAttrString(parameter, "POSITIONAL_OR_KEYWORD")) == NULL ||
        (keyword_only = PyObject_GetAttrString(parameter, "KEYWORD_ONLY")) == NULL ||
        (var_keyword = PyObject_GetAttrString(parameter, "VAR_KEYWORD")) == NULL ||
        (method = PyObject_GetAttrString(store, name)) == NULL) {
        goto done;
    }
    if ((sig = PyObject_CallMethod(inspect, "signature", "O", method)) == NULL) {
        if (PyErr_ExceptionMatches(PyExc_ValueError) || PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            rc = 0;
        }
        goto done;
    }
    if ((params = PyObject_GetAttrString(sig, "parameters")) == NULL ||
        (iter = PyObject_CallMethod(params, "values", NULL)) == NULL) {
        goto done;
    }
    Py_SETREF(iter, PyObject_GetIter(iter));
    if (iter == NULL) {
        goto done;
    }
    rc = 0;
    while ((p = PyIter_Next(iter)) != NULL) {
        PyObject *kind = PyObject_GetAttrString(p, "kind");
        PyObject *pname = PyObject_GetAttrString(p, "name");
        if (kind == NULL || pname == NULL) {
            rc = -1;
        }
        else if (kind == var_keyword ||
                 ((kind == by_keyword || kind == keyword_only) && PyUnicode_Check(pname) &&
                  PyUnicode_CompareWithASCIIString(pname, "timeout") == 0)) {
            rc = 1;
        }
        Py_XDECREF(kind);
        Py_XDECREF(pname);
        Py_DECREF(p);
        if (rc != 0) {
            break;
        }
    }
    if (rc == 0 && PyErr_Occurred()) {
        rc = -1;
    }
done:
    Py_XDECREF(iter);
    Py_XDECREF(params);
    Py_XDECREF(sig);
    Py_XDECREF(method);
    Py_XDECREF(var_keyword);
    Py_XDECREF(keyword_only);
    Py_XDECREF(by_keyword);
    Py_XDECREF(parameter);
    Py_XDECREF(inspect);
    return rc;
}

/* Call token_store.<name>(*args), with timeout=<seconds left> when it takes one; the answer
 * (new reference), or NULL with an exception (TimeoutError when no time is left). */
static PyObject *
call_store(DarajaClient *c, const char *name, int flag, PyObject *args, double deadline)
{
    PyObject *method = NULL, *kwargs = NULL, *answer = NULL;
    if (!(c->store_timeout & STORE_INSPECTED)) {
        int load = takes_timeout(c->token_store, "load");
        int store = load < 0 ? -1 : takes_timeout(c->token_store, "store");
        if (store < 0) {
            return NULL;
        }
        c->store_timeout =
            STORE_INSPECTED | (load ? LOAD_TAKES_TIMEOUT : 0) | (store ? STORE_TAKES_TIMEOUT : 0);
    }
    double left = deadline - dr_monotonic();
    if (left <= 0.0) {
        out_of_time(c, "before the token_store was asked");
        return NULL;
    }
    if ((method = PyObject_GetAttrString(c->token_store, name)) == NULL) {
        return NULL;
    }
    if ((c->store_timeout & flag) && (kwargs = Py_BuildValue("{s:d}", "timeout", left)) == NULL) {
        goto done;
    }
    answer = PyObject_Call(method, args, kwargs);
done:
    Py_XDECREF(kwargs);
    Py_DECREF(method);
    return answer;
}

/* Ask the token_store for a token. 1: *token and *expires_at filled; 0: none
 * usable; -1: the store raised or answered something malformed. */
static int
load_from_store(DarajaClient *c, TokenEntry *e, double deadline, SecretBuf *token, double *expires_at)
{
    DarajaState *st = dr_client_state(c);
    const char *text;
    Py_ssize_t len;
    int rc = -1;
    PyObject *none = PyTuple_New(0);
    PyObject *answer = none == NULL ? NULL : call_store(c, "load", LOAD_TAKES_TIMEOUT, none, deadline);
    Py_XDECREF(none);
    if (answer == NULL) {
        return -1;
    }
    if (answer == Py_None) {
        rc = 0;
        goto done;
    }
    if (!PyTuple_Check(answer) || PyTuple_GET_SIZE(answer) != 2 ||
        !PyUnicode_Check(PyTuple_GET_ITEM(answer, 0)) || !PyNumber_Check(PyTuple_GET_ITEM(answer, 1))) {
        er_validation_error(st, "token_store", "load() must return (token, expires_at_epoch) or None");
        goto done;
    }
    *expires_at = PyFloat_AsDouble(PyTuple_GET_ITEM(answer, 1));
    if (*expires_at == -1.0 && PyErr_Occurred()) {
        goto done;
    }
    if ((text = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(answer, 0), &len)) == NULL) {
        goto done;
    }
    if (len > 0 && !va_is_token(text, len)) {
        er_validation_error(st, "token_store", "load() returned a token that is not visible ASCII");
        goto done;
    }
    rc = 0;
    if (len == 0 || !(now_epoch() < *expires_at - DR_TOKEN_MARGIN)) {
        goto done;
    }
    if (e->has_rejected) {
        unsigned char digest[32];
        if (cr_sha256(st, text, (size_t)len, digest) < 0) {
            rc = -1;
            goto done;
        }
        if (CRYPTO_memcmp(digest, e->rejected, 32) == 0) {
            goto done;  /* the store still holds the token Daraja refused */
        }
    }
    rc = cr_secret_set(token, text, (size_t)len) < 0 ? -1 : 1;
done:
    Py_DECREF(answer);
    return rc;
}

/* Tell the token_store about a new token, by deadline (not called when no time is left). */
static int
save_to_store(DarajaClient *c, const SecretBuf *token, double expires_at, double deadline)
{
    PyObject *args = Py_BuildValue("(s#d)", token->data, (Py_ssize_t)token->len, expires_at);
    if (args == NULL) {
        return -1;
    }
    PyObject *r = call_store(c, "store", STORE_TAKES_TIMEOUT, args, deadline);
    Py_DECREF(args);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return dr_monotonic() < deadline ? 0 : out_of_time(c, "while the token_store's store() ran");
}

/* As the leader: get a token from the store, or through fetch, into *token by deadline.
 * *late: the store gave a usable token, but only after the deadline. *own: the failure is
 * this caller's deadline passing around the store, which says nothing about Daraja. */
static int
lead_fetch(DarajaClient *c, TokenEntry *e, double deadline, TcFetch fetch, SecretBuf *token,
           double *expires_at, int *is_new, int *late, int *own)
{
    double expires_in;
    *is_new = 0;
    *late = 0;
    *own = 0;
    if (c->token_store != NULL) {
        int found = load_from_store(c, e, deadline, token, expires_at);
        int over = dr_monotonic() >= deadline;
        if (found < 0 || (over && !found)) {
            *own = over;
            return found < 0 ? -1 : out_of_time(c, "while the token_store's load() ran");
        }
        if (over) {
            *late = 1;
            return 0;
        }
        if (found) {
            return 0;
        }
    }
    if (fetch(c, deadline, token, &expires_in) < 0) {
        return -1;
    }
    *expires_at = now_epoch() + expires_in;
    *is_new = 1;
    return 0;
}

int
tc_get(DarajaClient *c, double deadline, TcFetch fetch, SecretBuf *out)
{
    TokenCache *tc = &dr_client_state(c)->tokens;
    TokenEntry *e = c->token;
    SecretBuf fresh = {0};
    double expires_at = 0.0;
    int is_new = 0, late = 0, own = 0, rc;

    for (;;) {
        pthread_mutex_lock(&tc->lock);
        if (token_valid(e, now_epoch())) {
            rc = cr_secret_set(out, e->token.data, e->token.len);
            pthread_mutex_unlock(&tc->lock);
            return rc;
        }
        if (!e->in_flight) {
            e->in_flight = 1;
            e->flights++;
            pthread_mutex_unlock(&tc->lock);
            break;
        }
        unsigned long awaited = e->flights;
        pthread_mutex_unlock(&tc->lock);
        if (wait_for_leader(c, tc, e, deadline) < 0) {
            return -1;
        }
        pthread_mutex_lock(&tc->lock);
        if (e->failed_flight == awaited && !token_valid(e, now_epoch())) {
            char message[sizeof(e->failure)];
            PyObject *type = e->failure_type;
            memcpy(message, e->failure, sizeof(message));
            pthread_mutex_unlock(&tc->lock);
            return raise_shared_failure(c, type, message);
        }
        pthread_mutex_unlock(&tc->lock);
    }

    rc = lead_fetch(c, e, deadline, fetch, &fresh, &expires_at, &is_new, &late, &own);
    char failure[sizeof(e->failure)];
    PyObject *failure_type = rc < 0 ? describe_failure(failure, sizeof(failure)) : NULL;
    pthread_mutex_lock(&tc->lock);
    if (rc == 0) {
        cr_secret_free(&e->token);
        e->token = fresh;
        e->expires_at = expires_at;
        rc = cr_secret_set(out, fresh.data, fresh.len);
    }
    else if (!own) {
        /* Shared, so the waiters do not each ask a failing Daraja again. A leader whose own
         * time ran out around the store is not shared: a waiter with time left leads next. */
        e->failed_flight = e->flights;
        e->failure_type = failure_type;
        memcpy(e->failure, failure, sizeof(failure));
    }
    e->in_flight = 0;
    pthread_cond_broadcast(&e->done);
    pthread_mutex_unlock(&tc->lock);
    if (rc == 0 && late) {
        cr_secret_free(out);  /* kept in the cache for the next caller; this call is over */
        return out_of_time(c, "while the token_store's load() ran");
    }
    if (rc == 0 && is_new && c->token_store != NULL && save_to_store(c, out, expires_at, deadline) < 0) {
        cr_secret_free(out);
        return -1;
    }
    if (rc < 0 && fresh.data != NULL && e->token.data != fresh.data) {
        cr_secret_free(&fresh);
    }
    return rc;
}

void
tc_reject(DarajaClient *c, const SecretBuf *token)
{
    TokenCache *tc = &dr_client_state(c)->tokens;
    TokenEntry *e = c->token;
    unsigned char digest[32];
    if (cr_sha256(NULL, token->data, token->len, digest) < 0) {
        PyErr_Clear();
        return;
    }
    pthread_mutex_lock(&tc->lock);
    memcpy(e->rejected, digest, 32);
    e->has_rejected = 1;
    if (cr_equal(e->token.data, e->token.len, token->data, token->len)) {
        cr_secret_free(&e->token);
        e->expires_at = 0.0;
    }
    pthread_mutex_unlock(&tc->lock);
}
