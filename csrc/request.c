/*
 * request.c - Daraja requests described as tables. Each API is an RqApi: its path,
 * whether it moves money, and its fields in the order Daraja documents them, each
 * with a rule (shortcode, amount, phone, URL, text length, choice...). One engine
 * reads the keyword arguments, checks every rule before anything touches the
 * network, writes the JSON body and sends it through the Client's request cycle.
 *
 * Rules that involve several fields (a till required for Buy Goods, a phone or a
 * shortcode depending on IdentifierType) live in each API's `check` hook; values
 * computed from others (the STK Password) in its `derive` hook.
 */
#include "daraja.h"

#include <string.h>

#include <openssl/rand.h>

#define MAX_AMOUNT 999999999LL  /* beyond every M-Pesa limit: Daraja enforces the real one */

/* The field named kw searched from row `from` on, wrapping around; NULL if none. */
static const RqField *
find_field(const RqApi *api, const char *kw, int from, int rows)
{
    for (int n = 0, i = from; n < rows; n++, i = i + 1 == rows ? 0 : i + 1) {
        const RqField *f = &api->fields[i];
        if (f->kw != NULL && f->kw[0] == kw[0] && strcmp(f->kw, kw) == 0) {
            return f;
        }
    }
    return NULL;
}

const RqField *
rq_field(const RqApi *api, const char *kw)
{
    /* The hooks name fields with the same literals as their tables, which the compiler
     * merges: a pointer comparison finds them without reading a string. */
    int rows = 0;
    for (const RqField *f = api->fields; f->kind != RQ_END; f++, rows++) {
        if (f->kw == kw) {
            return f;
        }
    }
    return find_field(api, kw, 0, rows);
}

RqValue *
rq_value(const RqApi *api, RqValue *values, const char *kw)
{
    const RqField *f = rq_field(api, kw);
    return f == NULL ? NULL : &values[f - api->fields];
}

/* Keep a copy of s in the value's own buffer (for values made here, not borrowed). */
static void
own_text(RqValue *v, const char *s, size_t n)
{
    if (n >= sizeof(v->buf)) {
        n = sizeof(v->buf) - 1;
    }
    memcpy(v->buf, s, n);
    v->buf[n] = '\0';
    v->text = v->buf;
    v->len = (Py_ssize_t)n;
}

/* A fresh random UUID4, as Daraja's OriginatorConversationID examples use. */
static int
new_uuid4(RqValue *v)
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1) {
        PyErr_SetString(PyExc_RuntimeError, "the random generator failed");
        return -1;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    PyOS_snprintf(v->buf, sizeof(v->buf),
                  "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
                  b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    v->text = v->buf;
    v->len = 36;
    return 0;
}

/* An identifier: letters, digits, '_', '-' and '.', min..max characters. */
static int
check_identifier(DarajaState *st, const RqField *f, PyObject *obj, RqValue *v)
{
    if (va_text(st, f->kw, obj, f->min ? f->min : 1, f->max ? f->max : 64, &v->text, &v->len) < 0) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < v->len; i++) {
        char ch = v->text[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
              ch == '-' || ch == '.')) {
            return er_validation_error(st, f->kw, "must be letters, digits, '_', '-' or '.'");
        }
    }
    return 0;
}

/* A choice; ints are accepted for choices made of digits (IdentifierType 4). */
static int
check_choice(DarajaState *st, const RqField *f, PyObject *obj, RqValue *v)
{
    PyObject *text = NULL;
    if (PyLong_Check(obj) && !PyBool_Check(obj)) {
        if ((text = PyObject_Str(obj)) == NULL) {
            return -1;
        }
        obj = text;
    }
    int rc = va_choice(st, f->kw, obj, f->choices, &v->text);
    Py_XDECREF(text);
    if (rc == 0) {
        v->len = (Py_ssize_t)strlen(v->text);
    }
    return rc;
}

/* A date and time for the pull API: "YYYY-MM-DD HH:MM:SS" text (Nairobi time), or an aware
 * datetime, converted to Nairobi time. A naive datetime is refused: its meaning depends on
 * the server's zone, and a window read three hours off misses the transactions it is for. */
static int
check_datetime(DarajaState *st, const RqField *f, PyObject *obj, RqValue *v)
{
    PyObject *local = NULL, *text = NULL, *offset = NULL;
    int rc = -1;
    if (PyObject_HasAttrString(obj, "strftime") && !PyUnicode_Check(obj)) {
        if ((offset = PyObject_CallMethod(obj, "utcoffset", NULL)) == NULL) {
            PyErr_Clear();
            return er_validation_error(st, f->kw, "must be a datetime or 'YYYY-MM-DD HH:MM:SS'");
        }
        if (offset == Py_None) {
            Py_DECREF(offset);
            return er_validation_error(st, f->kw,
                                       "must be an aware datetime (a naive one has no zone) or "
                                       "'YYYY-MM-DD HH:MM:SS' in Nairobi time");
        }
        Py_DECREF(offset);
        local = PyObject_CallMethod(obj, "astimezone", "O", st->nairobi_tz);
        if (local == NULL || (text = PyObject_CallMethod(local, "strftime", "s", "%Y-%m-%d %H:%M:%S")) == NULL) {
            PyErr_Clear();
            er_validation_error(st, f->kw, "must be a datetime or 'YYYY-MM-DD HH:MM:SS'");
            goto done;
        }
        obj = text;
    }
    const char *s;
    Py_ssize_t n;
    if (va_text(st, f->kw, obj, 19, 19, &s, &n) < 0) {
        goto done;
    }
    static const char shape[] = "dddd-dd-dd dd:dd:dd";
    for (int i = 0; i < 19; i++) {
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i]) {
            er_validation_error(st, f->kw, "must be 'YYYY-MM-DD HH:MM:SS'");
            goto done;
        }
    }
    own_text(v, s, (size_t)n);
    rc = 0;
done:
    Py_XDECREF(text);
    Py_XDECREF(local);
    return rc;
}

/* Check one supplied value against its field's rule into *v. */
static int
check_value(DarajaState *st, const RqField *f, PyObject *obj, RqValue *v)
{
    char buf[32];
    switch (f->kind) {
    case RQ_SHORTCODE:
        if (va_shortcode(st, f->kw, obj, buf) < 0) {
            return -1;
        }
        own_text(v, buf, strlen(buf));
        return 0;
    case RQ_AMOUNT:
        return va_amount(st, f->kw, obj, f->min ? f->min : 1, f->max ? f->max : MAX_AMOUNT, &v->number);
    case RQ_PHONE:
        if (va_phone(st, f->kw, obj, buf) < 0) {
            return -1;
        }
        own_text(v, buf, VA_PHONE_LEN);
        return 0;
    case RQ_URL:
        return va_callback_url(st, f->kw, obj, &v->text, &v->len);
    case RQ_TEXT:
        return va_text(st, f->kw, obj, f->min, f->max, &v->text, &v->len);
    case RQ_DIGITS:
        if (va_digits(st, f->kw, obj, (size_t)f->min, (size_t)f->max, buf, sizeof(buf)) < 0) {
            return -1;
        }
        own_text(v, buf, strlen(buf));
        return 0;
    case RQ_SECRET:
        return va_secret(st, f->kw, obj, &v->text, &v->len);
    case RQ_CHOICE:
        return check_choice(st, f, obj, v);
    case RQ_ID:
    case RQ_UUID:
        return check_identifier(st, f, obj, v);
    case RQ_TIMESTAMP:
        if (va_timestamp(st, f->kw, obj, buf) < 0) {
            return -1;
        }
        own_text(v, buf, VA_TIMESTAMP_LEN);
        return 0;
    case RQ_DATETIME:
        return check_datetime(st, f, obj, v);
    case RQ_RAW:
        v->object = obj;
        return 0;
    default:
        PyErr_SetString(PyExc_SystemError, "a field rule is not handled");
        return -1;
    }
}

/* A value for a field that was not supplied: its default, or nothing. */
static int
default_value(DarajaState *st, const RqApi *api, const RqField *f, RqValue *v)
{
    if (f->flags & RQ_REQUIRED) {
        PyErr_Format(PyExc_TypeError, "%s() missing required keyword argument '%s'", api->name, f->kw);
        return -1;
    }
    if (f->kind == RQ_UUID) {
        v->present = 1;
        return new_uuid4(v);
    }
    if (f->kind == RQ_TIMESTAMP) {
        return check_value(st, f, NULL, v) < 0 ? -1 : (v->present = 1, 0);
    }
    if (f->fixed != NULL) {
        v->text = f->fixed;
        v->len = (Py_ssize_t)strlen(f->fixed);
        v->present = 1;
    }
    return 0;
}

/* The index of the field named by a keyword argument, searched from row `from` on (callers
 * pass their keywords in much the table's order); -1 with TypeError if none. */
static int
field_index(const RqApi *api, PyObject *key, int from, int rows)
{
    const char *name = PyUnicode_Check(key) ? PyUnicode_AsUTF8(key) : NULL;
    const RqField *f = name != NULL ? find_field(api, name, from, rows) : NULL;
    if (f == NULL) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument %R", api->name, key);
        return -1;
    }
    return (int)(f - api->fields);
}

/* Read every field's value from kwargs (or its default) and check it. */
static int
read_values(DarajaClient *c, const RqApi *api, int rows, PyObject *args, PyObject *kwargs, RqValue *values)
{
    DarajaState *st = dr_client_state(c);
    PyObject *given[RQ_MAX_FIELDS] = {NULL};
    PyObject *key, *obj;
    Py_ssize_t pos = 0;

    if (args != NULL && PyTuple_GET_SIZE(args) != 0) {
        PyErr_Format(PyExc_TypeError, "%s() takes keyword arguments only", api->name);
        return -1;
    }
    int next = 0;
    while (kwargs != NULL && PyDict_Next(kwargs, &pos, &key, &obj)) {
        int i = field_index(api, key, next, rows);
        if (i < 0) {
            return -1;
        }
        given[i] = obj;
        next = i + 1 == rows ? 0 : i + 1;
    }
    for (const RqField *f = api->fields; f->kind != RQ_END; f++) {
        RqValue *v = &values[f - api->fields];
        obj = given[f - api->fields];
        if (f->kind == RQ_CONST) {
            v->text = f->fixed;
            v->len = (Py_ssize_t)strlen(f->fixed);
            v->present = 1;
            continue;
        }
        if (f->kw == NULL) {
            continue;  /* derived: filled by api->derive */
        }
        if (obj == NULL || (obj == Py_None && !(f->flags & RQ_REQUIRED))) {
            if (default_value(st, api, f, v) < 0) {
                return -1;
            }
            continue;
        }
        if (check_value(st, f, obj, v) < 0) {
            return -1;
        }
        v->present = 1;
    }
    return 0;
}

/* Write the body: every present field with a Daraja name, in the table's order. */
static int
write_body(DarajaClient *c, const RqApi *api, RqValue *values, JsonBuf *body, SecretBuf *derived)
{
    DarajaState *st = dr_client_state(c);
    jw_begin(body);
    for (const RqField *f = api->fields; f->kind != RQ_END; f++) {
        RqValue *v = &values[f - api->fields];
        if (f->json == NULL) {
            continue;
        }
        if (f->kind == RQ_DERIVED) {
            if (api->derive(st, api, values, f, derived) < 0) {
                return -1;
            }
            jw_str(body, f->json, derived->data, derived->len);
        }
        else if (!v->present) {
            continue;
        }
        else if (f->kind == RQ_AMOUNT) {
            jw_int(body, f->json, v->number);
        }
        else {
            jw_str(body, f->json, v->text, (size_t)v->len);
        }
    }
    return jw_end(st, body);
}

/* Copy fields marked RQ_ECHO into the answer when Daraja left them out. */
static int
echo_values(const RqApi *api, RqValue *values, PyObject *answer)
{
    for (const RqField *f = api->fields; f->kind != RQ_END; f++) {
        RqValue *v = &values[f - api->fields];
        if (!(f->flags & RQ_ECHO) || !v->present || PyDict_GetItemString(answer, f->json) != NULL) {
            continue;
        }
        PyObject *text = PyUnicode_FromStringAndSize(v->text, v->len);
        if (text == NULL || PyDict_SetItemString(answer, f->json, text) < 0) {
            Py_XDECREF(text);
            return -1;
        }
        Py_DECREF(text);
    }
    return 0;
}

int
rq_build(DarajaClient *c, const RqApi *api, PyObject *args, PyObject *kwargs, RqValue *values, JsonBuf *body)
{
    SecretBuf derived = {0};
    int rc = -1;
    body->data = NULL;  /* jw_free is safe from here on */
    body->len = body->cap = 0;
    int rows = 0;
    while (rows < RQ_MAX_FIELDS && api->fields[rows].kind != RQ_END) {
        rows++;
    }
    if (rows == RQ_MAX_FIELDS) {
        PyErr_Format(PyExc_SystemError, "%s: field table longer than %d rows", api->name, RQ_MAX_FIELDS - 1);
        return -1;
    }
    memset(values, 0, sizeof(RqValue) * (size_t)rows);
    if (read_values(c, api, rows, args, kwargs, values) < 0 || (api->check != NULL && api->check(c, api, values) < 0)) {
        goto done;
    }
    rc = write_body(c, api, values, body, &derived);
done:
    cr_secret_free(&derived);
    return rc;
}

PyObject *
rq_send(DarajaClient *c, const RqApi *api, const char *path, RqValue *values, const JsonBuf *body)
{
    PyObject *answer = cl_post(c, path ? path : api->path, body->data, body->len, api->idempotent);
    if (answer != NULL && echo_values(api, values, answer) < 0) {
        Py_CLEAR(answer);
    }
    return answer;
}

PyObject *
rq_call(PyObject *self, const RqApi *api, PyObject *args, PyObject *kwargs)
{
    DarajaClient *c = (DarajaClient *)self;
    RqValue values[RQ_MAX_FIELDS];
    JsonBuf body;
    PyObject *answer = NULL;
    if (rq_build(c, api, args, kwargs, values, &body) == 0) {
        answer = rq_send(c, api, NULL, values, &body);
    }
    jw_free(&body);
    return answer;
}
