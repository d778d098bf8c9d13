/*
 * express.c - Lipa na M-Pesa Express: the STK push that prompts a customer's
 * phone for their PIN, and the STK query that asks for its result.
 *
 * Every field is checked before anything touches the network. The push moves
 * money, so it is never resent automatically; the query is read-only.
 */
#include "daraja.h"

#include <stdlib.h>
#include <string.h>

#define STK_PUSH_PATH "/mpesa/stkpush/v1/processrequest"
#define STK_QUERY_PATH "/mpesa/stkpushquery/v1/query"
#define MAX_AMOUNT 999999999LL  /* beyond every M-Pesa limit: Daraja enforces the real one */

static const char *const TRANSACTION_TYPES[] = {"CustomerPayBillOnline", "CustomerBuyGoodsOnline", NULL};

/* Password = base64(shortcode + passkey + timestamp), into a secret buffer. */
static int
stk_password(DarajaState *st, const char *shortcode, const char *passkey, size_t passkey_len,
             const char *timestamp, SecretBuf *out)
{
    size_t slen = strlen(shortcode), tlen = strlen(timestamp), n = slen + passkey_len + tlen;
    unsigned char *joined = malloc(n);
    size_t encoded_len;
    if (joined == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(joined, shortcode, slen);
    memcpy(joined + slen, passkey, passkey_len);
    memcpy(joined + slen + passkey_len, timestamp, tlen);
    char *encoded = cr_base64(st, joined, n, &encoded_len);
    cr_wipe(joined, n);
    free(joined);
    if (encoded == NULL) {
        return -1;
    }
    cr_secret_free(out);
    out->data = encoded;
    out->len = encoded_len;
    return 0;
}

/* Raise TypeError for a missing keyword argument; returns -1. */
static int
require(const char *method, const char *const *names, PyObject *const *values, int count)
{
    for (int i = 0; i < count; i++) {
        if (values[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required keyword argument '%s'", method, names[i]);
            return -1;
        }
    }
    return 0;
}

PyObject *
ex_py_stk_password(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    DarajaState *st = PyModule_GetState(module);
    char shortcode[8], timestamp[VA_TIMESTAMP_LEN + 1];
    const char *passkey;
    Py_ssize_t passkey_len;
    SecretBuf password = {0};

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "stk_password(shortcode, passkey, timestamp) takes 3 arguments");
        return NULL;
    }
    if (args[2] == Py_None) {
        md_validation_error(st, "timestamp", "is required: the Password is only valid with its Timestamp");
        return NULL;
    }
    if (va_shortcode(st, "shortcode", args[0], shortcode) < 0 ||
        va_secret(st, "passkey", args[1], &passkey, &passkey_len) < 0 ||
        va_timestamp(st, "timestamp", args[2], timestamp) < 0) {
        return NULL;
    }
    if (stk_password(st, shortcode, passkey, (size_t)passkey_len, timestamp, &password) < 0) {
        return NULL;
    }
    PyObject *result = PyUnicode_FromStringAndSize(password.data, (Py_ssize_t)password.len);
    cr_secret_free(&password);
    return result;
}

PyObject *
ex_py_stk_push(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"shortcode", "passkey", "amount", "phone", "callback_url", "account_reference",
                             "description", "transaction_type", "party_b", "timestamp", NULL};
    DarajaClient *c = (DarajaClient *)self;
    DarajaState *st = md_client_state(c);
    PyObject *v[10] = {NULL};
    char shortcode[8], party_b[8], phone[VA_PHONE_LEN + 1], timestamp[VA_TIMESTAMP_LEN + 1];
    const char *passkey, *url, *reference, *description, *type = TRANSACTION_TYPES[0];
    Py_ssize_t passkey_len, url_len, reference_len, description_len;
    long long amount;
    SecretBuf password = {0};
    JsonBuf body;
    PyObject *result = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|$OOOOOOOOOO:stk_push", kwlist, &v[0], &v[1], &v[2],
                                     &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) ||
        require("stk_push", (const char *const *)kwlist, v, 7) < 0) {
        return NULL;
    }
    if (va_shortcode(st, "shortcode", v[0], shortcode) < 0 ||
        va_secret(st, "passkey", v[1], &passkey, &passkey_len) < 0 ||
        va_amount(st, "amount", v[2], 1, MAX_AMOUNT, &amount) < 0 ||
        va_phone(st, "phone", v[3], phone) < 0 ||
        va_callback_url(st, "callback_url", v[4], &url, &url_len) < 0 ||
        va_text(st, "account_reference", v[5], 1, 12, &reference, &reference_len) < 0 ||
        va_text(st, "description", v[6], 1, 13, &description, &description_len) < 0 ||
        (v[7] != NULL && va_choice(st, "transaction_type", v[7], TRANSACTION_TYPES, &type) < 0) ||
        va_timestamp(st, "timestamp", v[9], timestamp) < 0) {
        return NULL;
    }
    if (v[8] != NULL && v[8] != Py_None) {
        if (va_shortcode(st, "party_b", v[8], party_b) < 0) {
            return NULL;
        }
    }
    else if (type != TRANSACTION_TYPES[0]) {
        md_validation_error(st, "party_b", "the till number is required for %s", type);
        return NULL;
    }
    else {
        memcpy(party_b, shortcode, sizeof(shortcode));
    }
    if (stk_password(st, shortcode, passkey, (size_t)passkey_len, timestamp, &password) < 0) {
        return NULL;
    }

    jw_begin(&body);
    jw_str(&body, "BusinessShortCode", shortcode, strlen(shortcode));
    jw_str(&body, "Password", password.data, password.len);
    jw_str(&body, "Timestamp", timestamp, VA_TIMESTAMP_LEN);
    jw_str(&body, "TransactionType", type, strlen(type));
    jw_int(&body, "Amount", amount);
    jw_str(&body, "PartyA", phone, VA_PHONE_LEN);
    jw_str(&body, "PartyB", party_b, strlen(party_b));
    jw_str(&body, "PhoneNumber", phone, VA_PHONE_LEN);
    jw_str(&body, "CallBackURL", url, (size_t)url_len);
    jw_str(&body, "AccountReference", reference, (size_t)reference_len);
    jw_str(&body, "TransactionDesc", description, (size_t)description_len);
    if (jw_end(st, &body) == 0) {
        result = cl_post(c, STK_PUSH_PATH, body.data, body.len, 0);
    }
    jw_free(&body);
    cr_secret_free(&password);
    return result;
}

/* A CheckoutRequestID: Daraja's ws_CO_... identifier, letters, digits, '_' and '-'. */
static int
checkout_request_id(DarajaState *st, PyObject *v, const char **out, Py_ssize_t *len)
{
    if (va_text(st, "checkout_request_id", v, 1, 64, out, len) < 0) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < *len; i++) {
        char ch = (*out)[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
              ch == '-')) {
            return md_validation_error(st, "checkout_request_id", "must be letters, digits, '_' or '-'");
        }
    }
    return 0;
}

PyObject *
ex_py_stk_query(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"shortcode", "passkey", "checkout_request_id", "timestamp", NULL};
    DarajaClient *c = (DarajaClient *)self;
    DarajaState *st = md_client_state(c);
    PyObject *v[4] = {NULL};
    char shortcode[8], timestamp[VA_TIMESTAMP_LEN + 1];
    const char *passkey, *checkout;
    Py_ssize_t passkey_len, checkout_len;
    SecretBuf password = {0};
    JsonBuf body;
    PyObject *result = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|$OOOO:stk_query", kwlist, &v[0], &v[1], &v[2], &v[3]) ||
        require("stk_query", (const char *const *)kwlist, v, 3) < 0) {
        return NULL;
    }
    if (va_shortcode(st, "shortcode", v[0], shortcode) < 0 ||
        va_secret(st, "passkey", v[1], &passkey, &passkey_len) < 0 ||
        checkout_request_id(st, v[2], &checkout, &checkout_len) < 0 ||
        va_timestamp(st, "timestamp", v[3], timestamp) < 0 ||
        stk_password(st, shortcode, passkey, (size_t)passkey_len, timestamp, &password) < 0) {
        return NULL;
    }
    jw_begin(&body);
    jw_str(&body, "BusinessShortCode", shortcode, strlen(shortcode));
    jw_str(&body, "Password", password.data, password.len);
    jw_str(&body, "Timestamp", timestamp, VA_TIMESTAMP_LEN);
    jw_str(&body, "CheckoutRequestID", checkout, (size_t)checkout_len);
    if (jw_end(st, &body) == 0) {
        result = cl_post(c, STK_QUERY_PATH, body.data, body.len, 1);
    }
    jw_free(&body);
    cr_secret_free(&password);
    return result;
}
