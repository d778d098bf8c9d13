/*
 * client.c - a Client's request cycle: the OAuth request itself, and for every
 * other call: a valid token, one transfer, one retry when Daraja says the token
 * is invalid, then Daraja's JSON decoded into a dict or into our exceptions.
 *
 * Retries, all within the call's one deadline (now + the Client's timeout):
 * - after the gateway refused the token, once, with a new token. For money-moving
 *   calls only when the refusal is a 4xx answer with a documented gateway code
 *   (404.001.03 and its variants): the gateway refused the request before the
 *   payment system saw it. A 5xx, whatever its text, may come from behind the
 *   gateway: never resent. Read-only calls also renew on a bare 401 or the
 *   "Invalid Access Token" text;
 * - read-only calls, after a connection failure or a 5xx answer, up to
 *   MAX_ATTEMPTS in all, with exponential backoff and jitter;
 * - money-moving calls only when the connection failed before any byte was sent.
 *
 * The token cache gets its fetch from here (fetch_token, a TcFetch), so the
 * dependency goes one way: this file asks the cache, the cache never names us.
 */
#include "daraja.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#define TOKEN_PATH "/oauth/v1/generate?grant_type=client_credentials"
#define MAX_ATTEMPTS 3
#define FIRST_BACKOFF 0.1  /* seconds; doubled for each further attempt */
#define PENDING_CODE "500.001.1001"  /* a final answer too: "still being processed" and friends */

/* Daraja's error envelope, and the other shapes its errors come in. */
typedef struct {
    PyObject *parsed;        /* the decoded body, or NULL when it is not JSON */
    const char *code;        /* borrowed from parsed */
    const char *message;
    const char *request_id;
} Envelope;

/* Join base_url and path into a new buffer; NULL with MemoryError. */
static char *
make_url(DarajaClient *c, const char *path)
{
    size_t base = strlen(c->base_url), tail = strlen(path);
    char *url = malloc(base + tail + 1);
    if (url == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(url, c->base_url, base);
    memcpy(url + base, path, tail + 1);
    return url;
}

/* Concatenate n parts into a secret buffer we wipe later. */
static int
secret_concat(SecretBuf *out, const char *const *parts, const size_t *lens, int n)
{
    size_t total = 0, pos = 0;
    for (int i = 0; i < n; i++) {
        total += lens[i];
    }
    char *buf = malloc(total + 1);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < n; i++) {
        memcpy(buf + pos, parts[i], lens[i]);
        pos += lens[i];
    }
    buf[total] = '\0';
    cr_secret_free(out);
    out->data = buf;
    out->len = total;
    return 0;
}

/* "Authorization: <scheme> <value>" as a secret buffer. */
static int
auth_header(SecretBuf *out, const char *scheme, const char *value, size_t len)
{
    const char *parts[] = {"Authorization: ", scheme, " ", value};
    const size_t lens[] = {15, strlen(scheme), 1, len};
    return secret_concat(out, parts, lens, 4);
}

/* The body as a decoded JSON value (new reference), or NULL with no exception
 * when it is not JSON. */
static PyObject *
decode_json(DarajaState *st, const TrResponse *resp)
{
    if (resp->len == 0) {
        return NULL;
    }
    PyObject *value = jr_parse(st, resp->body, resp->len, DR_MAX_RESPONSE);
    if (value == NULL) {
        PyErr_Clear();
    }
    return value;
}

/* The first of `keys` present in dict d as a str (borrowed UTF-8), or NULL. */
static const char *
first_string(PyObject *d, const char *const *keys)
{
    for (; *keys != NULL; keys++) {
        PyObject *v = PyDict_GetItemString(d, *keys);
        if (v != NULL && PyUnicode_Check(v)) {
            const char *s = PyUnicode_AsUTF8(v);
            if (s == NULL) {
                PyErr_Clear();
            }
            return s;
        }
        if (v != NULL && PyLong_Check(v)) {
            /* Numeric codes are rare here; report them as absent rather than guess. */
            continue;
        }
    }
    return NULL;
}

static void
read_envelope(DarajaState *st, const TrResponse *resp, Envelope *env)
{
    static const char *const code_keys[] = {"errorCode", "resultCode", "ResponseCode", NULL};
    static const char *const message_keys[] = {"errorMessage", "resultDesc", "ResponseDescription",
                                               "ResultDesc", NULL};
    static const char *const id_keys[] = {"requestId", "RequestID", NULL};
    memset(env, 0, sizeof(*env));
    env->parsed = decode_json(st, resp);
    /* A success carries no envelope: only errors are searched for one. */
    if (resp->status / 100 != 2 && env->parsed != NULL && PyDict_Check(env->parsed)) {
        env->code = first_string(env->parsed, code_keys);
        env->message = first_string(env->parsed, message_keys);
        env->request_id = first_string(env->parsed, id_keys);
    }
}

/* Is this answer Daraja's gateway refusing the token (expired, revoked, wrong environment)?
 * strict (money-moving requests): only a 4xx answer with a documented gateway code, which
 * the gateway gives before the payment system sees the request. Otherwise also a bare 401
 * or the "Invalid Access Token" text, in any status. "No apiproduct match found" shares a
 * code with it but means the app lacks the API product: a new token would not help. */
static int
token_refused(const TrResponse *resp, const Envelope *env, int strict)
{
    static const char *const codes[] = {"404.001.03", "400.003.01", "401.002.01", "401.003.01", NULL};
    int documented = 0;
    if (env->message != NULL && strstr(env->message, "apiproduct") != NULL) {
        return 0;
    }
    for (const char *const *code = codes; env->code != NULL && *code != NULL; code++) {
        documented |= strcmp(env->code, *code) == 0;
    }
    if (strict) {
        return documented && resp->status >= 400 && resp->status < 500;
    }
    return documented || resp->status == 401 ||
           (env->message != NULL && strstr(env->message, "Invalid Access Token") != NULL);
}

/* Raise the APIError (or `type`) an error answer stands for; returns NULL. */
static PyObject *
raise_answer(DarajaState *st, PyObject *type, const TrResponse *resp, const Envelope *env, const char *url)
{
    char fallback[160];
    const char *message = env->message;
    if (message == NULL) {
        PyOS_snprintf(fallback, sizeof(fallback), "%s answered HTTP %ld with %s", url, resp->status,
                      env->parsed ? "JSON of an unknown shape"
                                  : resp->len ? "a body that is not JSON" : "an empty body");
        message = fallback;
    }
    return er_api_error(st, type, resp->status, env->code, env->request_id, message);
}

/* The dict a successful answer carries (new reference), or an APIError. */
static PyObject *
success_dict(DarajaState *st, const TrResponse *resp, Envelope *env, const char *url)
{
    if (env->parsed == NULL || !PyDict_Check(env->parsed)) {
        char message[160];
        PyOS_snprintf(message, sizeof(message), "%s answered HTTP %ld with %s", url, resp->status,
                      env->parsed ? "JSON that is not an object" : "malformed JSON");
        return er_api_error(st, st->APIError, resp->status, NULL, NULL, message);
    }
    PyObject *d = env->parsed;
    env->parsed = NULL;
    return d;
}

/* Parse the OAuth answer's expires_in: "3599" as Daraja sends it, or a number. */
static int
parse_expires_in(PyObject *v, double *out)
{
    if (v == NULL) {
        return -1;
    }
    if (PyUnicode_Check(v)) {
        const char *s = PyUnicode_AsUTF8(v);
        char *end;
        if (s == NULL) {
            PyErr_Clear();
            return -1;
        }
        *out = strtod(s, &end);
        if (end == s || *end != '\0') {
            return -1;
        }
    }
    else if (!PyBool_Check(v) && PyNumber_Check(v)) {  /* int, or Decimal from the JSON reader */
        PyObject *f = PyNumber_Float(v);
        if (f == NULL) {
            PyErr_Clear();
            return -1;
        }
        *out = PyFloat_AS_DOUBLE(f);
        Py_DECREF(f);
    }
    else {
        return -1;
    }
    return *out > 0 && *out <= 366.0 * 86400 ? 0 : -1;
}

/* Sleep before attempt `attempt` + 1; 0 if the deadline leaves no room for it. */
static int
back_off(int attempt, double deadline)
{
    unsigned char jitter = 0;
    double delay = FIRST_BACKOFF * (double)(1 << (attempt - 1));
    if (RAND_bytes(&jitter, 1) == 1) {
        delay *= 0.5 + (double)jitter / 510.0;  /* 50% to 100% of the step */
    }
    if (dr_monotonic() + delay + 0.05 >= deadline) {
        return 0;
    }
    tr_sleep(delay);
    return 1;
}

/* Perform req, retrying what may be retried, and read the answer's envelope.
 * 0: an answer arrived (any HTTP status); -1: an exception is set. */
static int
exchange(DarajaClient *c, const TrRequest *req, TrResponse *resp, Envelope *env)
{
    DarajaState *st = dr_client_state(c);
    for (int attempt = 1;; attempt++) {
        if (tr_perform(st, c->transport, req, resp) < 0) {
            if (attempt < MAX_ATTEMPTS && tr_retryable(req, resp) && back_off(attempt, req->deadline)) {
                PyErr_Clear();
                continue;
            }
            return -1;
        }
        read_envelope(st, resp, env);
        int pending = env->code != NULL && strncmp(env->code, PENDING_CODE, strlen(PENDING_CODE)) == 0;
        if (resp->status >= 500 && req->idempotent && !pending && attempt < MAX_ATTEMPTS &&
            back_off(attempt, req->deadline)) {
            Py_CLEAR(env->parsed);
            tr_response_free(resp);
            continue;
        }
        return 0;
    }
}

/* GET the OAuth endpoint with the Client's Basic credentials by deadline; fill token and
 * its lifetime in seconds (a TcFetch, given to the token cache). */
static int
fetch_token(DarajaClient *c, double deadline, SecretBuf *token, double *expires_in)
{
    DarajaState *st = dr_client_state(c);
    SecretBuf credentials = {0}, header = {0};
    TrResponse resp = {0};
    Envelope env = {0};
    char *url = NULL, *basic = NULL;
    size_t basic_len = 0;
    int rc = -1;

    const char *parts[] = {c->consumer_key, ":", c->consumer_secret.data};
    const size_t lens[] = {strlen(c->consumer_key), 1, c->consumer_secret.len};
    if ((url = make_url(c, TOKEN_PATH)) == NULL || secret_concat(&credentials, parts, lens, 3) < 0 ||
        (basic = cr_base64(st, (unsigned char *)credentials.data, credentials.len, &basic_len)) == NULL ||
        auth_header(&header, "Basic", basic, basic_len) < 0) {
        goto done;
    }
    TrRequest req = {url, header.data, NULL, 0, 1, deadline};
    if (exchange(c, &req, &resp, &env) < 0) {
        goto done;
    }
    if (resp.status != 200) {
        raise_answer(st, resp.status >= 500 ? st->APIError : st->AuthError, &resp, &env, TOKEN_PATH);
        goto done;
    }
    PyObject *access = env.parsed && PyDict_Check(env.parsed)
                           ? PyDict_GetItemString(env.parsed, "access_token") : NULL;
    Py_ssize_t access_len = 0;
    const char *access_text = access && PyUnicode_Check(access) ? PyUnicode_AsUTF8AndSize(access, &access_len)
                                                                : NULL;
    if (access_text == NULL || !va_is_token(access_text, access_len) ||
        parse_expires_in(PyDict_GetItemString(env.parsed, "expires_in"), expires_in) < 0) {
        PyErr_Clear();
        er_api_error(st, st->AuthError, resp.status, NULL, NULL,
                     "the token answer lacks a usable access_token or expires_in");
        goto done;
    }
    rc = cr_secret_set(token, access_text, (size_t)access_len);
done:
    Py_XDECREF(env.parsed);
    tr_response_free(&resp);
    if (basic != NULL) {
        cr_wipe(basic, basic_len);
        free(basic);
    }
    cr_secret_free(&header);
    cr_secret_free(&credentials);
    free(url);
    return rc;
}

/* "Authorization: Bearer <token>" into buf, which has room for any token va_is_token accepts;
 * -1 with ValueError if the token is longer. */
#define BEARER_PREFIX "Authorization: Bearer "
#define BEARER_HEADER_SIZE (sizeof(BEARER_PREFIX) + DR_MAX_TOKEN)

static int
bearer_header(char buf[BEARER_HEADER_SIZE], const SecretBuf *token)
{
    if (token->len > DR_MAX_TOKEN) {
        PyErr_SetString(PyExc_ValueError, "the access token is longer than any Daraja issues");
        return -1;
    }
    memcpy(buf, BEARER_PREFIX, sizeof(BEARER_PREFIX) - 1);
    memcpy(buf + sizeof(BEARER_PREFIX) - 1, token->data, token->len);
    buf[sizeof(BEARER_PREFIX) - 1 + token->len] = '\0';
    return 0;
}

int
cl_access_token(DarajaClient *c, SecretBuf *out)
{
    return tc_get(c, dr_monotonic() + c->timeout, fetch_token, out);
}

PyObject *
cl_post(DarajaClient *c, const char *path, const char *body, size_t body_len, int idempotent)
{
    DarajaState *st = dr_client_state(c);
    SecretBuf token = {0};
    char header[BEARER_HEADER_SIZE];  /* on the stack, wiped below: no allocation per call */
    size_t header_len = 0;
    TrResponse resp = {0};
    Envelope env = {0};
    PyObject *result = NULL;
    double deadline = dr_monotonic() + c->timeout;
    char *url = make_url(c, path);

    if (url == NULL) {
        return NULL;
    }
    for (int renewed = 0;; renewed = 1) {
        if (tc_get(c, deadline, fetch_token, &token) < 0 || bearer_header(header, &token) < 0) {
            goto done;
        }
        if (sizeof(BEARER_PREFIX) + token.len > header_len) {  /* a renewed token may be shorter */
            header_len = sizeof(BEARER_PREFIX) + token.len;
        }
        TrRequest req = {url, header, body, body_len, idempotent, deadline};
        if (exchange(c, &req, &resp, &env) < 0) {
            goto done;
        }
        if (resp.status / 100 == 2) {
            result = success_dict(st, &resp, &env, path);
            goto done;
        }
        /* A refused token is dropped either way, so the next call does not meet it again. */
        int refused = token_refused(&resp, &env, 0);
        if (refused) {
            tc_reject(c, &token);
        }
        if (renewed || !refused || (!idempotent && !token_refused(&resp, &env, 1))) {
            raise_answer(st, st->APIError, &resp, &env, path);
            goto done;
        }
        Py_CLEAR(env.parsed);
        tr_response_free(&resp);
    }
done:
    Py_XDECREF(env.parsed);
    tr_response_free(&resp);
    cr_wipe(header, header_len);
    cr_secret_free(&token);
    free(url);
    return result;
}
