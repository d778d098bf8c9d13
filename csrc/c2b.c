/*
 * c2b.c - customer to business: registering the confirmation and validation URLs,
 * simulating a payment in the sandbox, and the pull API that recovers C2B
 * transactions whose callbacks never came.
 */
#include "daraja.h"

#include <string.h>

#define REGISTER_V2 "/mpesa/c2b/v2/registerurl"
#define REGISTER_V1 "/mpesa/c2b/v1/registerurl"
#define NO_PRODUCT_CODE "401.003.01"  /* the app lacks the v2 product: "No apiproduct match found" */

static const char *const RESPONSE_TYPES[] = {"Completed", "Cancelled", NULL};
static const char *const C2B_COMMANDS[] = {"CustomerPayBillOnline", "CustomerBuyGoodsOnline", NULL};

static const RqField REGISTER_FIELDS[] = {
    RQ_FIELD("shortcode", "ShortCode", RQ_SHORTCODE, .flags = RQ_REQUIRED),
    RQ_FIELD("response_type", "ResponseType", RQ_CHOICE, .choices = RESPONSE_TYPES, .fixed = "Completed"),
    RQ_FIELD("confirmation_url", "ConfirmationURL", RQ_URL, .flags = RQ_REQUIRED),
    RQ_FIELD("validation_url", "ValidationURL", RQ_URL, .flags = RQ_REQUIRED),
    RQ_TABLE_END,
};

static const RqApi REGISTER = {"c2b_register_urls", REGISTER_V2, 1, REGISTER_FIELDS, NULL, NULL};

/* Is the raised error Daraja saying this app has no C2B v2 product? */
static int
lacks_v2_product(DarajaState *st, PyObject *exc)
{
    if (!PyObject_TypeCheck(exc, (PyTypeObject *)st->APIError)) {
        return 0;
    }
    PyObject *code = PyObject_GetAttrString(exc, "error_code");
    PyObject *message = PyObject_GetAttrString(exc, "error_message");
    const char *c = code != NULL && PyUnicode_Check(code) ? PyUnicode_AsUTF8(code) : NULL;
    const char *m = message != NULL && PyUnicode_Check(message) ? PyUnicode_AsUTF8(message) : NULL;
    int lacks = (c != NULL && strcmp(c, NO_PRODUCT_CODE) == 0) ||
                (m != NULL && strstr(m, "No apiproduct match found") != NULL);
    Py_XDECREF(code);
    Py_XDECREF(message);
    PyErr_Clear();
    return lacks;
}

/* Add "api_version" to the answer: which registration API took the URLs. */
static PyObject *
with_version(PyObject *answer, const char *version)
{
    if (answer == NULL) {
        return NULL;
    }
    PyObject *text = PyUnicode_FromString(version);
    if (text == NULL || PyDict_SetItemString(answer, "api_version", text) < 0) {
        Py_CLEAR(answer);
    }
    Py_XDECREF(text);
    return answer;
}

PyObject *
c2b_py_register_urls(PyObject *self, PyObject *args, PyObject *kwargs)
{
    DarajaClient *c = (DarajaClient *)self;
    DarajaState *st = dr_client_state(c);
    RqValue values[RQ_MAX_FIELDS];
    JsonBuf body;
    PyObject *answer = NULL;

    if (rq_build(c, &REGISTER, args, kwargs, values, &body) < 0) {
        goto done;
    }
    if ((answer = rq_send(c, &REGISTER, REGISTER_V2, values, &body)) != NULL) {
        answer = with_version(answer, "v2");
        goto done;
    }
    PyObject *exc = er_take_error();
    if (!lacks_v2_product(st, exc)) {
        er_restore_error(exc);
        goto done;
    }
    Py_DECREF(exc);
    answer = with_version(rq_send(c, &REGISTER, REGISTER_V1, values, &body), "v1");
done:
    jw_free(&body);
    return answer;
}

/* The simulator exists only in the sandbox; a paybill payment needs its account. */
static int
check_simulate(DarajaClient *c, const RqApi *api, RqValue *values)
{
    DarajaState *st = dr_client_state(c);
    if (strcmp(c->environment, "sandbox") != 0) {
        return er_validation_error(st, "environment", "c2b_simulate exists only in the sandbox");
    }
    if (strcmp(rq_value(api, values, "command_id")->text, C2B_COMMANDS[0]) == 0 &&
        !rq_value(api, values, "bill_ref_number")->present) {
        return er_validation_error(st, "bill_ref_number", "is required for CustomerPayBillOnline");
    }
    return 0;
}

static const RqField SIMULATE_FIELDS[] = {
    RQ_FIELD("shortcode", "ShortCode", RQ_SHORTCODE, .flags = RQ_REQUIRED),
    RQ_FIELD("command_id", "CommandID", RQ_CHOICE, .choices = C2B_COMMANDS, .fixed = "CustomerPayBillOnline"),
    RQ_FIELD("amount", "Amount", RQ_AMOUNT, .flags = RQ_REQUIRED),
    RQ_FIELD("phone", "Msisdn", RQ_PHONE, .flags = RQ_REQUIRED),
    RQ_FIELD("bill_ref_number", "BillRefNumber", RQ_TEXT, .min = 1, .max = 20),
    RQ_TABLE_END,
};

static const RqApi SIMULATE = {"c2b_simulate", "/mpesa/c2b/v1/simulate", 0, SIMULATE_FIELDS, check_simulate,
                               NULL};

static const RqField PULL_REGISTER_FIELDS[] = {
    RQ_FIELD("shortcode", "ShortCode", RQ_SHORTCODE, .flags = RQ_REQUIRED),
    RQ_FIELD(NULL, "RequestType", RQ_CONST, .fixed = "Pull"),
    RQ_FIELD("nominated_number", "NominatedNumber", RQ_PHONE, .flags = RQ_REQUIRED),
    RQ_FIELD("callback_url", "CallBackURL", RQ_URL, .flags = RQ_REQUIRED),
    RQ_TABLE_END,
};

/* Daraja's Pull API page shows the nominated number as the portal's KYC details do, in the
 * national form 07XXXXXXXX (its sample request: "NominatedNumber":"0722000000"): send the
 * normalised number in that form. */
static int
check_pull_register(DarajaClient *c, const RqApi *api, RqValue *values)
{
    (void)c;
    RqValue *v = rq_value(api, values, "nominated_number");
    char national[VA_PHONE_LEN];
    national[0] = '0';
    memcpy(national + 1, v->text + 3, VA_PHONE_LEN - 3);  /* 2547XXXXXXXX -> 07XXXXXXXX */
    memcpy(v->buf, national, VA_PHONE_LEN - 2);
    v->buf[VA_PHONE_LEN - 2] = '\0';
    v->text = v->buf;
    v->len = VA_PHONE_LEN - 2;
    return 0;
}

static const RqApi PULL_REGISTER = {"pull_register", "/pulltransactions/v1/register", 1, PULL_REGISTER_FIELDS,
                                    check_pull_register, NULL};

/* The window must run forwards: Daraja answers an inverted one with nothing. */
static int
check_pull_query(DarajaClient *c, const RqApi *api, RqValue *values)
{
    if (strcmp(rq_value(api, values, "start_date")->text, rq_value(api, values, "end_date")->text) > 0) {
        return er_validation_error(dr_client_state(c), "end_date", "must not be before start_date");
    }
    return 0;
}

static const RqField PULL_QUERY_FIELDS[] = {
    RQ_FIELD("shortcode", "ShortCode", RQ_SHORTCODE, .flags = RQ_REQUIRED),
    RQ_FIELD("start_date", "StartDate", RQ_DATETIME, .flags = RQ_REQUIRED),
    RQ_FIELD("end_date", "EndDate", RQ_DATETIME, .flags = RQ_REQUIRED),
    RQ_FIELD("offset", "OffSetValue", RQ_DIGITS, .min = 1, .max = 9, .fixed = "0"),
    RQ_TABLE_END,
};

static const RqApi PULL_QUERY = {"pull_query", "/pulltransactions/v1/query", 1, PULL_QUERY_FIELDS,
                                 check_pull_query, NULL};

PyObject *
c2b_py_simulate(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return rq_call(self, &SIMULATE, args, kwargs);
}

PyObject *
c2b_py_pull_register(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return rq_call(self, &PULL_REGISTER, args, kwargs);
}

PyObject *
c2b_py_pull_query(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return rq_call(self, &PULL_QUERY, args, kwargs);
}
