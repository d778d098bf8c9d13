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

static const char *const TRANSACTION_TYPES[] = {"CustomerPayBillOnline", "CustomerBuyGoodsOnline", NULL};

/* Password = base64(shortcode + passkey + timestamp), into a secret buffer. */
static int
stk_password(DarajaState *st, const char *shortcode, const char *passkey, size_t passkey_len,
             const char *timestamp, SecretBuf *out)
{
    unsigned char small[256];  /* a 64-character passkey fits: no allocation */
    size_t slen = strlen(shortcode), tlen = strlen(timestamp), n = slen + passkey_len + tlen;
    unsigned char *joined = n <= sizeof(small) ? small : malloc(n);
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
    if (joined != small) {
        free(joined);
    }
    if (encoded == NULL) {
        return -1;
    }
    cr_secret_free(out);
    out->data = encoded;
    out->len = encoded_len;
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
        er_validation_error(st, "timestamp", "is required: the Password is only valid with its Timestamp");
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

/* STK rules across fields: a till for Buy Goods, otherwise PartyB is the shortcode. */
static int
check_push(DarajaClient *c, const RqApi *api, RqValue *values)
{
    RqValue *party_b = rq_value(api, values, "party_b");
    RqValue *type = rq_value(api, values, "transaction_type");
    if (party_b->present) {
        return 0;
    }
    if (strcmp(type->text, TRANSACTION_TYPES[0]) != 0) {
        return er_validation_error(dr_client_state(c), "party_b", "the till number is required for %s",
                                   type->text);
    }
    *party_b = *rq_value(api, values, "shortcode");
    party_b->text = party_b->buf;
    return 0;
}

/* Password from shortcode, passkey and Timestamp; PhoneNumber repeats PartyA. */
static int
derive_express(DarajaState *st, const RqApi *api, RqValue *values, const RqField *f, SecretBuf *out)
{
    if (strcmp(f->json, "PhoneNumber") == 0) {
        RqValue *phone = rq_value(api, values, "phone");
        return cr_secret_set(out, phone->text, (size_t)phone->len);
    }
    RqValue *passkey = rq_value(api, values, "passkey");
    return stk_password(st, rq_value(api, values, "shortcode")->text, passkey->text, (size_t)passkey->len,
                        rq_value(api, values, "timestamp")->text, out);
}

static const RqField STK_PUSH_FIELDS[] = {
    RQ_FIELD("shortcode", "BusinessShortCode", RQ_SHORTCODE, .flags = RQ_REQUIRED),
    RQ_FIELD(NULL, "Password", RQ_DERIVED),
    RQ_FIELD("timestamp", "Timestamp", RQ_TIMESTAMP),
    RQ_FIELD("transaction_type", "TransactionType", RQ_CHOICE, .choices = TRANSACTION_TYPES, .fixed = "CustomerPayBillOnline"),
    RQ_FIELD("amount", "Amount", RQ_AMOUNT, .flags = RQ_REQUIRED),
    RQ_FIELD("phone", "PartyA", RQ_PHONE, .flags = RQ_REQUIRED),
    RQ_FIELD("party_b", "PartyB", RQ_SHORTCODE),
    RQ_FIELD(NULL, "PhoneNumber", RQ_DERIVED),
    RQ_FIELD("callback_url", "CallBackURL", RQ_URL, .flags = RQ_REQUIRED),
    RQ_FIELD("account_reference", "AccountReference", RQ_TEXT, .flags = RQ_REQUIRED, .min = 1, .max = 12),
    RQ_FIELD("description", "TransactionDesc", RQ_TEXT, .flags = RQ_REQUIRED, .min = 1, .max = 13),
    RQ_FIELD("passkey", NULL, RQ_SECRET, .flags = RQ_REQUIRED),
    RQ_TABLE_END,
};

static const RqApi STK_PUSH = {"stk_push", STK_PUSH_PATH, 0, STK_PUSH_FIELDS, check_push, derive_express};

static const RqField STK_QUERY_FIELDS[] = {
    RQ_FIELD("shortcode", "BusinessShortCode", RQ_SHORTCODE, .flags = RQ_REQUIRED),
    RQ_FIELD(NULL, "Password", RQ_DERIVED),
    RQ_FIELD("timestamp", "Timestamp", RQ_TIMESTAMP),
    RQ_FIELD("checkout_request_id", "CheckoutRequestID", RQ_ID, .flags = RQ_REQUIRED),
    RQ_FIELD("passkey", NULL, RQ_SECRET, .flags = RQ_REQUIRED),
    RQ_TABLE_END,
};

static const RqApi STK_QUERY = {"stk_query", STK_QUERY_PATH, 1, STK_QUERY_FIELDS, NULL, derive_express};

PyObject *
ex_py_stk_push(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return rq_call(self, &STK_PUSH, args, kwargs);
}

PyObject *
ex_py_stk_query(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return rq_call(self, &STK_QUERY, args, kwargs);
}
