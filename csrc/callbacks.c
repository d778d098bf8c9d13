/*
 * callbacks.c - what Daraja POSTs to our callback URLs, and what we answer.
 *
 * parse_callback() reads a body with the strict reader in jsonread.c, checks the
 * fields each kind must carry, flattens Daraja's Name/Key-Value item lists into plain
 * fields and gives every known field one type whatever shape it arrived in:
 *
 *   text     ids, receipts, shortcodes, MSISDN: str (a JSON integer becomes its digits)
 *   code     ResultCode: int or str exactly as given (0, "0", 2001, "R000002")
 *   amount   decimal.Decimal built from the exact text; "" or no value gives None
 *   date     an aware datetime in Nairobi time (UTC+3); "" or no value gives None
 *            (FinalisedTime and Daraja's other spelling, FinalizedTime, alike)
 *   balances the AccountBalance string as one dict per account
 *   charges  DebitPartyCharges: an amount, or "Label|KES|22.40&..." as one dict per charge
 *
 * Result items are also kept whole, in order and with repeats, as (Key, value) pairs in
 * "parameters" and "references"; the flat fields keep the first of a repeated Key, and an
 * item named like a Result field is flattened as "ResultParameter.<Key>" so it neither
 * replaces that field nor is lost.
 *
 * Unknown fields pass through as the reader produced them. Error messages name the
 * JSON path of the field and the rule, never the value: bodies carry personal data.
 *
 * The checks that come before parsing (secret, allowlist) live in verify.c; this
 * file registers their Python functions with its own.
 */
#include "daraja.h"

/* datetime.h defines a file-level PyDateTimeAPI for its macros; this file keeps the
 * capsule in the module state instead (st->cb_cache) and never sets that one. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-variable"
#include <datetime.h>
#pragma GCC diagnostic pop
#include <stdarg.h>
#include <string.h>

#define PATH_MAX_LEN 256        /* longest JSON path named in an error */
#define NAIROBI_OFFSET_MIN 180  /* UTC+3, no daylight saving */

/* ---- field types ------------------------------------------------------- */

typedef enum { FT_ANY, FT_TEXT, FT_CODE, FT_AMOUNT, FT_DATE, FT_BALANCES, FT_CHARGES } FieldType;

typedef struct {
    const char *name;
    FieldType type;
} FieldRule;

/* Field names as Daraja spells them; any name ending in "AvailableFunds" is an amount too. */
static const FieldRule FIELD_RULES[] = {
    {"ResultCode", FT_CODE},
    {"ResultDesc", FT_TEXT},
    {"MerchantRequestID", FT_TEXT},
    {"CheckoutRequestID", FT_TEXT},
    {"OriginatorConversationID", FT_TEXT},
    {"ConversationID", FT_TEXT},
    {"TransactionID", FT_TEXT},
    {"TransID", FT_TEXT},
    {"ThirdPartyTransID", FT_TEXT},
    {"OriginalTransactionID", FT_TEXT},
    {"BusinessShortCode", FT_TEXT},
    {"BillRefNumber", FT_TEXT},
    {"InvoiceNumber", FT_TEXT},
    {"MSISDN", FT_TEXT},
    {"PhoneNumber", FT_TEXT},
    {"MpesaReceiptNumber", FT_TEXT},
    {"TransactionReceipt", FT_TEXT},
    {"ReceiptNo", FT_TEXT},
    {"ResponseRefID", FT_TEXT},
    {"transactionId", FT_TEXT},
    {"msisdn", FT_TEXT},
    {"billreference", FT_TEXT},
    {"Amount", FT_AMOUNT},
    {"TransAmount", FT_AMOUNT},
    {"TransactionAmount", FT_AMOUNT},
    {"OrgAccountBalance", FT_AMOUNT},
    {"Balance", FT_AMOUNT},
    {"DebitPartyCharges", FT_CHARGES},
    {"Charge", FT_AMOUNT},
    {"amount", FT_AMOUNT},
    {"TransTime", FT_DATE},
    {"TransactionDate", FT_DATE},
    {"TransactionCompletedDateTime", FT_DATE},
    {"TransCompletedTime", FT_DATE},
    {"InitiatedTime", FT_DATE},
    {"FinalisedTime", FT_DATE},
    {"FinalizedTime", FT_DATE},
    {"BOCompletedTime", FT_DATE},
    {"trxDate", FT_DATE},
    {"AccountBalance", FT_BALANCES},
    {NULL, FT_ANY},
};

/* ---- cached objects ----------------------------------------------------- */

/* Every key parse_callback looks up or sets, made once (interned) at import: a lookup with
 * PyDict_GetItemString would build and hash a temporary str each time. */
#define CB_KEYS(X)                                                                                \
    X(Body) X(stkCallback) X(CallbackMetadata) X(Item) X(Name) X(Value) X(Key) X(Result)          \
    X(ResultParameters) X(ResultParameter) X(ReferenceData) X(ReferenceItem) X(ResultCode)        \
    X(ResultDesc) X(MerchantRequestID) X(CheckoutRequestID) X(OriginatorConversationID)           \
    X(ConversationID) X(TransID) X(TransAmount) X(BusinessShortCode) X(TransactionType)           \
    X(TransTime) X(MSISDN) X(ResponseRefID) X(Response) X(kind) X(success) X(parameters)          \
    X(references) X(transactions) X(stk) X(c2b_validation) X(c2b_confirmation) X(result)          \
    X(timeout) X(pull)

enum {
#define CB_ENUM(name) K_##name,
    CB_KEYS(CB_ENUM)
#undef CB_ENUM
    K_TYPES,        /* dict: field name -> FieldType as int */
    K_DATETIME_API, /* capsule of the datetime C API */
    K_COUNT
};

static const char *const KEY_NAMES[] = {
#define CB_NAME(name) #name,
    CB_KEYS(CB_NAME)
#undef CB_NAME
};

/* The cached object at index k (borrowed). */
#define KEY(st, k) PyTuple_GET_ITEM((st)->cb_cache, (k))

/* Build st->cb_cache: the interned keys, the field types by name and the datetime C API. */
static int
make_cache(DarajaState *st)
{
    PyObject *cache = PyTuple_New(K_COUNT), *types = NULL;
    if (cache == NULL) {
        return -1;
    }
    for (int k = 0; k < K_TYPES; k++) {
        PyObject *key = PyUnicode_InternFromString(KEY_NAMES[k]);
        if (key == NULL) {
            goto error;
        }
        PyTuple_SET_ITEM(cache, k, key);
    }
    if ((types = PyDict_New()) == NULL) {
        goto error;
    }
    PyTuple_SET_ITEM(cache, K_TYPES, types);
    for (const FieldRule *rule = FIELD_RULES; rule->name != NULL; rule++) {
        PyObject *type = PyLong_FromLong(rule->type);
        int rc = type == NULL ? -1 : PyDict_SetItemString(types, rule->name, type);
        Py_XDECREF(type);
        if (rc < 0) {
            goto error;
        }
    }
    PyObject *module = PyImport_ImportModule("datetime");
    PyObject *api = module == NULL ? NULL : PyObject_GetAttrString(module, "datetime_CAPI");
    Py_XDECREF(module);
    if (api == NULL || PyCapsule_GetPointer(api, PyDateTime_CAPSULE_NAME) == NULL) {
        Py_XDECREF(api);
        goto error;
    }
    PyTuple_SET_ITEM(cache, K_DATETIME_API, api);
    Py_XSETREF(st->cb_cache, cache);
    return 0;
error:
    Py_DECREF(cache);
    return -1;
}

/* The type of the field `key`, whose UTF-8 is name[0..n). */
static FieldType
field_type(DarajaState *st, PyObject *key, const char *name, size_t n)
{
    static const char suffix[] = "AvailableFunds";
    const size_t suffix_len = sizeof(suffix) - 1;
    PyObject *type = PyDict_GetItemWithError(KEY(st, K_TYPES), key);
    if (type != NULL) {
        return (FieldType)PyLong_AsLong(type);
    }
    PyErr_Clear();  /* a str key's lookup cannot fail; be safe anyway */
    if (n > suffix_len && memcmp(name + n - suffix_len, suffix, suffix_len) == 0) {
        return FT_AMOUNT;
    }
    return FT_ANY;
}

/* Where a field sits, for an error message: "prefix.name". Paths are only written out when
 * a value is refused, never on the way to success. */
typedef struct {
    const char *prefix;
    const char *name;
    size_t len;
} FieldPath;

/* Write "prefix.key" (or "key" when prefix is empty) into buf; bytes outside printable
 * ASCII become '?', so an error's field is always valid text. */
static void
make_path(char buf[PATH_MAX_LEN], const char *prefix, const char *key, size_t key_len)
{
    size_t n = (size_t)PyOS_snprintf(buf, PATH_MAX_LEN, "%s%s", prefix, *prefix ? "." : "");
    if (n >= PATH_MAX_LEN) {
        n = PATH_MAX_LEN - 1;
    }
    for (size_t i = 0; i < key_len && n + 1 < PATH_MAX_LEN; i++) {
        unsigned char c = (unsigned char)key[i];
        buf[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    buf[n] = '\0';
}

/* Raise ValidationError naming the field at `at`; always returns -1. */
static int
field_error(DarajaState *st, const FieldPath *at, const char *fmt, ...)
{
    char path[PATH_MAX_LEN], message[256];
    va_list ap;
    va_start(ap, fmt);
    PyOS_vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    make_path(path, at->prefix, at->name, at->len);
    return er_validation_error(st, path, "%s", message);
}

/* Is v an int and not a bool? */
static int
is_int(PyObject *v)
{
    return PyLong_Check(v) && !PyBool_Check(v);
}

/* ---- text and codes ---------------------------------------------------- */

/* A str as given, or the digits of an int (new reference); None stays None. */
static PyObject *
text_value(DarajaState *st, PyObject *v, const FieldPath *path)
{
    if (v == Py_None || PyUnicode_Check(v)) {
        return Py_NewRef(v);
    }
    if (is_int(v)) {
        return PyObject_Str(v);
    }
    field_error(st, path, "must be a string, not %s", Py_TYPE(v)->tp_name);
    return NULL;
}

/* A ResultCode exactly as given: an int or a str (new reference). */
static PyObject *
code_value(DarajaState *st, PyObject *v, const FieldPath *path)
{
    if (is_int(v) || PyUnicode_Check(v)) {
        return Py_NewRef(v);
    }
    field_error(st, path, "must be a number or a string, not %s", Py_TYPE(v)->tp_name);
    return NULL;
}

/* 1 when a ResultCode means success: the number 0 or the string "0". */
static int
code_is_success(PyObject *code)
{
    if (is_int(code)) {
        int overflow;
        long v = PyLong_AsLongAndOverflow(code, &overflow);
        return !overflow && v == 0;
    }
    if (PyUnicode_Check(code)) {
        return PyUnicode_CompareWithASCIIString(code, "0") == 0;
    }
    return 0;
}

/* ---- amounts ----------------------------------------------------------- */

/* Is s[0..n) a plain decimal: optional '-', digits, optionally '.' and digits? */
static int
is_decimal_text(const char *s, size_t n)
{
    size_t i = 0, digits = 0;
    if (i < n && s[i] == '-') {
        i++;
    }
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        digits++;
    }
    if (digits == 0) {
        return 0;
    }
    if (i < n && s[i] == '.') {
        size_t fraction = 0;
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            fraction++;
        }
        if (fraction == 0) {
            return 0;
        }
    }
    return i == n;
}

/* Decimal of the decimal text s[0..n), or None when empty (new reference). */
static PyObject *
decimal_from_text(DarajaState *st, const char *s, size_t n, const FieldPath *path)
{
    if (n == 0) {
        Py_RETURN_NONE;
    }
    if (!is_decimal_text(s, n)) {
        field_error(st, path, "must be a decimal amount such as 5.00");
        return NULL;
    }
    PyObject *text = PyUnicode_FromStringAndSize(s, (Py_ssize_t)n);
    if (text == NULL) {
        return NULL;
    }
    PyObject *result = PyObject_CallOneArg(st->Decimal, text);
    Py_DECREF(text);
    return result;
}

/* An amount as an exact Decimal from a JSON number or a numeric string; "" and None give None. */
static PyObject *
amount_value(DarajaState *st, PyObject *v, const FieldPath *path)
{
    if (v == Py_None) {
        Py_RETURN_NONE;
    }
    if (PyObject_TypeCheck(v, (PyTypeObject *)st->Decimal)) {
        return Py_NewRef(v);    /* the reader built it from the literal: already exact */
    }
    if (is_int(v)) {
        return PyObject_CallOneArg(st->Decimal, v);
    }
    if (PyUnicode_Check(v)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(v, &n);
        if (s == NULL) {
            return NULL;
        }
        return decimal_from_text(st, s, (size_t)n, path);
    }
    field_error(st, path, "must be a decimal amount, not %s", Py_TYPE(v)->tp_name);
    return NULL;
}

/* ---- dates ------------------------------------------------------------- */

typedef struct {
    int year, month, day, hour, minute, second, micro;
    int has_offset;
    int offset_min;     /* east of UTC */
} Stamp;

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static long long
days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The proleptic Gregorian date of a day count since 1970-01-01. */
static void
civil_from_days(long long z, int *y, int *m, int *d)
{
    z += 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static int
days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* Parse the optional ".fraction" and "Z" / "+HH:MM" / "+HHMM" after an ISO time. */
static int
parse_iso_tail(const char *s, size_t n, Stamp *t)
{
    size_t i = 0;
    if (i < n && s[i] == '.') {
        int digits = 0, micro = 0;
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
            if (digits < 6) {
                micro = micro * 10 + (s[i] - '0');
            }
        }
        if (digits == 0 || digits > 9) {
            return -1;
        }
        for (; digits < 6; digits++) {
            micro *= 10;
        }
        t->micro = micro;
    }
    if (i == n) {
        return 0;
    }
    if (s[i] == 'Z' && i + 1 == n) {
        t->has_offset = 1;
        return 0;
    }
    if (s[i] != '+' && s[i] != '-') {
        return -1;
    }
    int sign = s[i] == '-' ? -1 : 1, hh, mm;
    const char *o = s + i + 1;
    size_t rest = n - i - 1;
    if (rest == 5 && o[2] == ':') {
        hh = va_digits_value(o, 2);
        mm = va_digits_value(o + 3, 2);
    }
    else if (rest == 4) {
        hh = va_digits_value(o, 2);
        mm = va_digits_value(o + 2, 2);
    }
    else {
        return -1;
    }
    if (hh < 0 || hh > 23 || mm < 0 || mm > 59) {
        return -1;
    }
    t->has_offset = 1;
    t->offset_min = sign * (hh * 60 + mm);
    return 0;
}

/* Read one of Daraja's date forms into *t; -1 (no exception) if s is none of them:
 *   YYYYMMDDHHmmss                      TransTime, TransactionDate, ...CompletedTime
 *   DD.MM.YYYY HH:MM:SS                 TransactionCompletedDateTime
 *   YYYY-MM-DD[T ]HH:MM:SS[.f][offset]  pull trxDate */
static int
parse_stamp(const char *s, size_t n, Stamp *t)
{
    memset(t, 0, sizeof(*t));
    if (n == 14) {
        t->year = va_digits_value(s, 4);
        t->month = va_digits_value(s + 4, 2);
        t->day = va_digits_value(s + 6, 2);
        t->hour = va_digits_value(s + 8, 2);
        t->minute = va_digits_value(s + 10, 2);
        t->second = va_digits_value(s + 12, 2);
    }
    else if (n == 19 && s[2] == '.' && s[5] == '.' && s[10] == ' ' && s[13] == ':' && s[16] == ':') {
        t->day = va_digits_value(s, 2);
        t->month = va_digits_value(s + 3, 2);
        t->year = va_digits_value(s + 6, 4);
        t->hour = va_digits_value(s + 11, 2);
        t->minute = va_digits_value(s + 14, 2);
        t->second = va_digits_value(s + 17, 2);
    }
    else if (n >= 19 && s[4] == '-' && s[7] == '-' && (s[10] == ' ' || s[10] == 'T') && s[13] == ':' &&
             s[16] == ':') {
        t->year = va_digits_value(s, 4);
        t->month = va_digits_value(s + 5, 2);
        t->day = va_digits_value(s + 8, 2);
        t->hour = va_digits_value(s + 11, 2);
        t->minute = va_digits_value(s + 14, 2);
        t->second = va_digits_value(s + 17, 2);
        if (parse_iso_tail(s + 19, n - 19, t) < 0) {
            return -1;
        }
    }
    else {
        return -1;
    }
    if (t->year < 1 || t->month < 1 || t->month > 12 || t->day < 1 ||
        t->day > days_in_month(t->year, t->month) || t->hour < 0 || t->hour > 23 || t->minute < 0 ||
        t->minute > 59 || t->second < 0 || t->second > 59) {
        return -1;
    }
    return 0;
}

/* Move a stamp with an explicit UTC offset to Nairobi's wall clock; -1 if out of range. */
static int
to_nairobi(Stamp *t)
{
    if (!t->has_offset || t->offset_min == NAIROBI_OFFSET_MIN) {
        return 0;
    }
    long long minutes = days_from_civil(t->year, t->month, t->day) * 1440 + t->hour * 60 + t->minute -
                        t->offset_min + NAIROBI_OFFSET_MIN;
    long long days = minutes >= 0 ? minutes / 1440 : -((-minutes + 1439) / 1440);
    long long rest = minutes - days * 1440;
    civil_from_days(days, &t->year, &t->month, &t->day);
    t->hour = (int)(rest / 60);
    t->minute = (int)(rest % 60);
    return t->year >= 1 && t->year <= 9999 ? 0 : -1;
}

/* Nairobi datetime of the date text s[0..n), or None when empty (new reference). */
static PyObject *
date_from_text(DarajaState *st, const char *s, size_t n, const FieldPath *path)
{
    Stamp t;
    if (n == 0) {
        Py_RETURN_NONE;
    }
    if (parse_stamp(s, n, &t) < 0 || to_nairobi(&t) < 0) {
        field_error(st, path,
                    "must be a valid date as YYYYMMDDHHmmss, DD.MM.YYYY HH:MM:SS or "
                    "YYYY-MM-DD HH:MM:SS");
        return NULL;
    }
    PyDateTime_CAPI *api = PyCapsule_GetPointer(KEY(st, K_DATETIME_API), PyDateTime_CAPSULE_NAME);
    if (api == NULL) {
        return NULL;
    }
    return api->DateTime_FromDateAndTime(t.year, t.month, t.day, t.hour, t.minute, t.second, t.micro,
                                         st->nairobi_tz, api->DateTimeType);
}

/* Digits of a non-negative int small enough for a date into buf; length, or -1 if none. */
static int
date_digits(PyObject *v, char buf[24])
{
    int overflow;
    long long value = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || value < 0) {
        return -1;
    }
    char rev[24];
    int n = 0;
    do {
        rev[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value > 0);
    for (int i = 0; i < n; i++) {
        buf[i] = rev[n - 1 - i];
    }
    return n;
}

/* A date from a str or a 14-digit int, as an aware Nairobi datetime; "" and None give None. */
static PyObject *
date_value(DarajaState *st, PyObject *v, const FieldPath *path)
{
    if (v == Py_None) {
        Py_RETURN_NONE;
    }
    if (is_int(v)) {
        char digits[24];
        int n = date_digits(v, digits);
        if (n < 0) {
            field_error(st, path, "must be a valid date as YYYYMMDDHHmmss");
            return NULL;
        }
        return date_from_text(st, digits, (size_t)n, path);
    }
    if (!PyUnicode_Check(v)) {
        field_error(st, path, "must be a date string or number, not %s", Py_TYPE(v)->tp_name);
        return NULL;
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(v, &n);
    return s == NULL ? NULL : date_from_text(st, s, (size_t)n, path);
}

/* ---- account balances and charges ------------------------------------ */

/* The columns of one '|'-separated record: the first `text` are str, the rest amounts. */
typedef struct {
    const char *const *keys;
    int columns;
    int text;
} RecordFormat;

static const char *const BALANCE_KEYS[] = {"account", "currency", "current", "available", "reserved",
                                           "uncleared"};
static const RecordFormat BALANCE_FORMAT = {BALANCE_KEYS, 6, 2};
static const char *const CHARGE_KEYS[] = {"label", "currency", "amount"};
static const RecordFormat CHARGE_FORMAT = {CHARGE_KEYS, 3, 2};

/* One '|'-separated record s[0..n) as a dict. Missing columns give None; columns past
 * the format's are ignored. */
static PyObject *
pipe_record(DarajaState *st, const char *s, size_t n, const RecordFormat *format, const FieldPath *path)
{
    PyObject *record = PyDict_New(), *value = NULL;
    size_t start = 0;
    if (record == NULL) {
        return NULL;
    }
    for (int col = 0; col < format->columns; col++) {
        if (start > n) {
            value = Py_NewRef(Py_None);
        }
        else {
            const char *bar = memchr(s + start, '|', n - start);
            size_t end = bar != NULL ? (size_t)(bar - s) : n;
            if (col < format->text) {
                value = PyUnicode_DecodeUTF8(s + start, (Py_ssize_t)(end - start), "strict");
            }
            else {
                value = decimal_from_text(st, s + start, end - start, path);
            }
            start = end + 1;
        }
        if (value == NULL || PyDict_SetItemString(record, format->keys[col], value) < 0) {
            Py_XDECREF(value);
            Py_DECREF(record);
            return NULL;
        }
        Py_CLEAR(value);
    }
    return record;
}

/* '&'-separated records s[0..n) as a list of dicts; empty records are skipped. */
static PyObject *
pipe_records(DarajaState *st, const char *s, size_t n, const RecordFormat *format, const FieldPath *path)
{
    PyObject *list = PyList_New(0);
    size_t start = 0;
    if (list == NULL) {
        return NULL;
    }
    while (start < n) {
        const char *amp = memchr(s + start, '&', n - start);
        size_t end = amp != NULL ? (size_t)(amp - s) : n;
        if (end > start) {
            PyObject *record = pipe_record(st, s + start, end - start, format, path);
            if (record == NULL || PyList_Append(list, record) < 0) {
                Py_XDECREF(record);
                Py_DECREF(list);
                return NULL;
            }
            Py_DECREF(record);
        }
        start = end + 1;
    }
    return list;
}

/* The UTF-8 of a str field, or NULL after raising for another type. */
static const char *
field_text(DarajaState *st, PyObject *v, const FieldPath *path, Py_ssize_t *n)
{
    if (!PyUnicode_Check(v)) {
        field_error(st, path, "must be a string, not %s", Py_TYPE(v)->tp_name);
        return NULL;
    }
    return PyUnicode_AsUTF8AndSize(v, n);
}

/* The AccountBalance string as a list of {account, currency, current, available,
 * reserved, uncleared}, one per '&'-separated account. */
static PyObject *
balances_value(DarajaState *st, PyObject *v, const FieldPath *path)
{
    Py_ssize_t n;
    if (v == Py_None) {
        Py_RETURN_NONE;
    }
    const char *s = field_text(st, v, path, &n);
    return s == NULL ? NULL : pipe_records(st, s, (size_t)n, &BALANCE_FORMAT, path);
}

/* DebitPartyCharges: a plain amount gives a Decimal, "" or None give None, and the
 * "Fee For B2C Payment|KES|22.40&..." form gives a list of {label, currency, amount}. */
static PyObject *
charges_value(DarajaState *st, PyObject *v, const FieldPath *path)
{
    Py_ssize_t n;
    if (!PyUnicode_Check(v)) {
        return amount_value(st, v, path);
    }
    const char *s = field_text(st, v, path, &n);
    if (s == NULL) {
        return NULL;
    }
    if (memchr(s, '|', (size_t)n) == NULL) {
        return decimal_from_text(st, s, (size_t)n, path);
    }
    return pipe_records(st, s, (size_t)n, &CHARGE_FORMAT, path);
}

/* ---- records ----------------------------------------------------------- */

/* The typed value of the field `key` (new reference); ValidationError names prefix.key. */
static PyObject *
typed_value(DarajaState *st, PyObject *key, PyObject *v, const char *prefix)
{
    Py_ssize_t n;
    const char *name = PyUnicode_AsUTF8AndSize(key, &n);
    if (name == NULL) {
        return NULL;
    }
    FieldType type = field_type(st, key, name, (size_t)n);
    if (type == FT_ANY) {
        return Py_NewRef(v);
    }
    FieldPath path = {prefix, name, (size_t)n};
    switch (type) {
    case FT_TEXT:
        return text_value(st, v, &path);
    case FT_CODE:
        return code_value(st, v, &path);
    case FT_AMOUNT:
        return amount_value(st, v, &path);
    case FT_DATE:
        return date_value(st, v, &path);
    case FT_BALANCES:
        return balances_value(st, v, &path);
    case FT_CHARGES:
        return charges_value(st, v, &path);
    default:
        return Py_NewRef(v);
    }
}

/* Is the str key one of the cached keys listed in skip (ended by -1)? */
static int
key_in(DarajaState *st, PyObject *key, const int *skip)
{
    for (; skip != NULL && *skip >= 0; skip++) {
        PyObject *name = KEY(st, *skip);
        if (key == name || (PyUnicode_GET_LENGTH(key) == PyUnicode_GET_LENGTH(name) &&
                            PyUnicode_Compare(key, name) == 0)) {
            return 1;
        }
    }
    return 0;
}

/* Copy every member of `record` except `skip` into out, typed. */
static int
copy_fields(DarajaState *st, PyObject *out, PyObject *record, const char *prefix, const int *skip)
{
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(record, &pos, &key, &value)) {
        if (key_in(st, key, skip)) {
            continue;
        }
        PyObject *typed = typed_value(st, key, value, prefix);
        if (typed == NULL || PyDict_SetItem(out, key, typed) < 0) {
            Py_XDECREF(typed);
            return -1;
        }
        Py_DECREF(typed);
    }
    return 0;
}

/* d[KEY(k)] (borrowed) or NULL; a str key's lookup in a dict of str keys cannot fail. */
static PyObject *
get_key(DarajaState *st, PyObject *d, int k)
{
    return PyDict_GetItemWithError(d, KEY(st, k));
}

/* Each cached key in `names` (ended by -1) must be in out and not None; ValidationError
 * names prefix.name. */
static int
check_required(DarajaState *st, PyObject *out, const char *prefix, const int *names)
{
    char path[PATH_MAX_LEN];
    for (; *names >= 0; names++) {
        PyObject *v = get_key(st, out, *names);
        if (v == NULL || v == Py_None) {
            if (PyErr_Occurred()) {
                return -1;
            }
            const char *name = KEY_NAMES[*names];
            make_path(path, prefix, name, strlen(name));
            return er_validation_error(st, path, v == NULL ? "is missing" : "must not be empty");
        }
    }
    return 0;
}

/* Set *out to parent[KEY(k)] (borrowed), which must be a JSON object; path names it on error. */
static int
get_object(DarajaState *st, PyObject *parent, int k, const char *path, PyObject **out)
{
    PyObject *v = get_key(st, parent, k);
    if (v == NULL) {
        return PyErr_Occurred() ? -1 : er_validation_error(st, path, "is missing");
    }
    if (!PyDict_Check(v)) {
        return er_validation_error(st, path, "must be an object");
    }
    *out = v;
    return 0;
}

/* A list of items being flattened: where it is, what its items are called, and where every
 * item goes besides the flat fields. */
typedef struct {
    const char *container_path; /* "Result.ResultParameters" */
    int list_key;               /* K_ResultParameter */
    int name_key;               /* K_Key or K_Name */
    PyObject *top;              /* record whose own fields an item must not shadow, or NULL */
    PyObject *all;              /* list that gets every (name, value) in order, or NULL */
} ItemList;

/* Raise ValidationError for item `index` (-1: the only one) of the list, or its name field
 * when `member` is set; always returns -1. */
static int
item_error(DarajaState *st, const ItemList *list, Py_ssize_t index, int member, const char *what)
{
    char path[PATH_MAX_LEN + 48];
    int n = index < 0 ? PyOS_snprintf(path, sizeof(path), "%s.%s", list->container_path,
                                      KEY_NAMES[list->list_key])
                      : PyOS_snprintf(path, sizeof(path), "%s.%s[%zd]", list->container_path,
                                      KEY_NAMES[list->list_key], index);
    if (member && n > 0 && (size_t)n < sizeof(path)) {
        PyOS_snprintf(path + n, sizeof(path) - (size_t)n, ".%s", KEY_NAMES[list->name_key]);
    }
    return er_validation_error(st, path, "%s", what);
}

/* The flat name of an item whose name is a field of list->top ("ResultParameter.Name"): an
 * item must never replace a top-level field, and must not be lost either (new reference). */
static PyObject *
shadowed_name(DarajaState *st, const ItemList *list, PyObject *name)
{
    return PyUnicode_FromFormat("%U.%U", KEY(st, list->list_key), name);
}

/* Add one {name_key: str, "Value": any} item to out, and to list->all when set. In out an
 * item never replaces a field already there (the first item of a name wins); one that
 * shares its name with a field of list->top goes under shadowed_name instead. Structural
 * faults name the item; a mistyped value names container_path.Name. */
static int
flatten_item(DarajaState *st, PyObject *out, const ItemList *list, PyObject *item, Py_ssize_t index)
{
    PyObject *flat = NULL, *typed = NULL, *pair = NULL;
    int rc = -1;
    if (!PyDict_Check(item)) {
        return item_error(st, list, index, 0, "must be an object");
    }
    PyObject *name = get_key(st, item, list->name_key);
    if (name == NULL || !PyUnicode_Check(name)) {
        return PyErr_Occurred() ? -1 : item_error(st, list, index, 1, name == NULL ? "is missing" : "must be a string");
    }
    PyObject *value = get_key(st, item, K_Value);
    if (value == NULL && PyErr_Occurred()) {
        return -1;
    }
    flat = Py_NewRef(name);
    if (list->top != NULL) {
        int shadows = PyDict_Contains(list->top, name);
        if (shadows < 0) {
            goto done;
        }
        if (shadows || key_in(st, name, (const int[]){K_kind, K_success, K_parameters, K_references, -1})) {
            Py_SETREF(flat, shadowed_name(st, list, name));
            if (flat == NULL) {
                goto done;
            }
        }
    }
    int present = PyDict_Contains(out, flat);
    if (present < 0) {
        goto done;
    }
    if (present && list->all == NULL) {
        rc = 0;  /* nothing more to keep: skip typing it */
        goto done;
    }
    if ((typed = typed_value(st, name, value != NULL ? value : Py_None, list->container_path)) == NULL) {
        goto done;
    }
    if (!present && PyDict_SetItem(out, flat, typed) < 0) {
        goto done;
    }
    if (list->all != NULL &&
        ((pair = PyTuple_Pack(2, name, typed)) == NULL || PyList_Append(list->all, pair) < 0)) {
        goto done;
    }
    rc = 0;
done:
    Py_XDECREF(pair);
    Py_XDECREF(typed);
    Py_XDECREF(flat);
    return rc;
}

/* Flatten container[list_key] - one item or a list of them - into out. A missing or
 * null container or list adds nothing. Items are {name_key, Value}; Value may be absent. */
static int
flatten_items(DarajaState *st, PyObject *out, PyObject *container, const ItemList *list)
{
    if (container == NULL || container == Py_None) {
        return PyErr_Occurred() ? -1 : 0;
    }
    if (!PyDict_Check(container)) {
        return er_validation_error(st, list->container_path, "must be an object");
    }
    PyObject *items = get_key(st, container, list->list_key);
    if (items == NULL || items == Py_None) {
        return PyErr_Occurred() ? -1 : 0;
    }
    if (PyDict_Check(items)) {
        return flatten_item(st, out, list, items, -1);
    }
    if (!PyList_Check(items)) {
        return item_error(st, list, -1, 0, "must be an object or a list of objects");
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        if (flatten_item(st, out, list, PyList_GET_ITEM(items, i), i) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Set out["kind"] (the cached str at index kind) and out["success"]. */
static int
set_kind(DarajaState *st, PyObject *out, int kind, int success)
{
    return PyDict_SetItem(out, KEY(st, K_kind), KEY(st, kind)) < 0 ||
                   PyDict_SetItem(out, KEY(st, K_success), success ? Py_True : Py_False) < 0
               ? -1
               : 0;
}

/* ---- kinds ------------------------------------------------------------- */

/* {"Body": {"stkCallback": {..., "CallbackMetadata": {"Item": [...]}}}} */
static int
parse_stk(DarajaState *st, PyObject *root, PyObject *out)
{
    static const int skip[] = {K_CallbackMetadata, -1};
    static const int required[] = {K_MerchantRequestID, K_CheckoutRequestID, K_ResultCode, K_ResultDesc, -1};
    const ItemList items = {"Body.stkCallback.CallbackMetadata", K_Item, K_Name, NULL, NULL};
    const char *prefix = "Body.stkCallback";
    PyObject *body = NULL, *callback = NULL;
    if (get_object(st, root, K_Body, "Body", &body) < 0 ||
        get_object(st, body, K_stkCallback, prefix, &callback) < 0 ||
        copy_fields(st, out, callback, prefix, skip) < 0 || check_required(st, out, prefix, required) < 0 ||
        set_kind(st, out, K_stk, code_is_success(get_key(st, out, K_ResultCode))) < 0) {
        return -1;
    }
    return flatten_items(st, out, get_key(st, callback, K_CallbackMetadata), &items);
}

/* The flat C2B validation or confirmation body. */
static int
parse_c2b(DarajaState *st, PyObject *root, PyObject *out, int kind)
{
    static const int validation_required[] = {K_TransID, K_TransAmount, K_BusinessShortCode, -1};
    static const int confirmation_required[] = {K_TransID, K_TransAmount, K_BusinessShortCode,
                                                K_TransactionType, K_TransTime, K_MSISDN, -1};
    if (copy_fields(st, out, root, "", NULL) < 0 ||
        check_required(st, out, "", kind == K_c2b_confirmation ? confirmation_required : validation_required) < 0) {
        return -1;
    }
    return set_kind(st, out, kind, 1);
}

/* {"Result": {..., "ResultParameters": {"ResultParameter": ...}, "ReferenceData": {"ReferenceItem": ...}}}:
 * every item, in order and with repeats, also goes to out["parameters"] / out["references"]. */
static int
parse_result(DarajaState *st, PyObject *root, PyObject *out, int kind)
{
    static const int skip[] = {K_ResultParameters, K_ReferenceData, -1};
    static const int required[] = {K_ResultCode, K_ResultDesc, K_OriginatorConversationID, K_ConversationID, -1};
    PyObject *result = NULL, *parameters = NULL, *references = NULL;
    int rc = -1;
    if (get_object(st, root, K_Result, "Result", &result) < 0 ||
        copy_fields(st, out, result, "Result", skip) < 0 || check_required(st, out, "Result", required) < 0 ||
        set_kind(st, out, kind, code_is_success(get_key(st, out, K_ResultCode))) < 0 ||
        (parameters = PyList_New(0)) == NULL || (references = PyList_New(0)) == NULL) {
        goto done;
    }
    const ItemList parameter_items = {"Result.ResultParameters", K_ResultParameter, K_Key, result, parameters};
    const ItemList reference_items = {"Result.ReferenceData", K_ReferenceItem, K_Key, result, references};
    if (flatten_items(st, out, get_key(st, result, K_ResultParameters), &parameter_items) < 0 ||
        flatten_items(st, out, get_key(st, result, K_ReferenceData), &reference_items) < 0 ||
        PyDict_SetItem(out, KEY(st, K_parameters), parameters) < 0 ||
        PyDict_SetItem(out, KEY(st, K_references), references) < 0) {
        goto done;
    }
    rc = 0;
done:
    Py_XDECREF(references);
    Py_XDECREF(parameters);
    return rc;
}

/* Append one pull transaction, typed, to list. */
static int
append_transaction(DarajaState *st, PyObject *list, PyObject *tx, const char *path)
{
    if (!PyDict_Check(tx)) {
        return er_validation_error(st, path, "must be an object");
    }
    PyObject *typed = PyDict_New();
    int rc = typed == NULL || copy_fields(st, typed, tx, path, NULL) < 0 || PyList_Append(list, typed) < 0
                 ? -1
                 : 0;
    Py_XDECREF(typed);
    return rc;
}

/* {"ResponseRefID", "ResponseCode", "ResponseMessage", "Response": [[{transaction}, ...]]}:
 * the transactions, whether nested one or two lists deep, become out["transactions"]. */
static int
parse_pull(DarajaState *st, PyObject *root, PyObject *out)
{
    static const int skip[] = {K_Response, -1};
    static const int required[] = {K_ResponseRefID, -1};
    char path[PATH_MAX_LEN];
    PyObject *list = NULL;
    int rc = -1;

    if (copy_fields(st, out, root, "", skip) < 0 || check_required(st, out, "", required) < 0 ||
        set_kind(st, out, K_pull, 1) < 0 || (list = PyList_New(0)) == NULL) {
        goto done;
    }
    PyObject *response = get_key(st, root, K_Response);
    if (response == NULL && PyErr_Occurred()) {
        goto done;
    }
    if (response != NULL && response != Py_None) {
        if (!PyList_Check(response)) {
            er_validation_error(st, "Response", "must be a list");
            goto done;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(response); i++) {
            PyObject *entry = PyList_GET_ITEM(response, i);
            if (!PyList_Check(entry)) {
                PyOS_snprintf(path, sizeof(path), "Response[%zd]", i);
                if (append_transaction(st, list, entry, path) < 0) {
                    goto done;
                }
                continue;
            }
            for (Py_ssize_t j = 0; j < PyList_GET_SIZE(entry); j++) {
                PyOS_snprintf(path, sizeof(path), "Response[%zd][%zd]", i, j);
                if (append_transaction(st, list, PyList_GET_ITEM(entry, j), path) < 0) {
                    goto done;
                }
            }
        }
    }
    rc = PyDict_SetItem(out, KEY(st, K_transactions), list);
done:
    Py_XDECREF(list);
    return rc;
}

/* ---- Python: parse_callback ------------------------------------------- */

/* In the order of their cached keys, K_stk to K_pull. */
static const char *const KINDS[] = {"stk", "c2b_validation", "c2b_confirmation", "result", "timeout",
                                    "pull", NULL};

/* The index in KINDS of a pointer va_choice returned. */
static Py_ssize_t
kind_index(const char *kind)
{
    Py_ssize_t i = 0;
    while (KINDS[i] != kind) {
        i++;
    }
    return i;
}

/* The bytes of a body given as bytes-like or str (UTF-8); fills view. */
static int
body_bytes(DarajaState *st, PyObject *obj, Py_buffer *view)
{
    if (PyUnicode_Check(obj)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(obj, &n);
        if (s == NULL) {
            PyErr_Clear();
            return er_validation_error(st, "body", "is not valid Unicode text");
        }
        return PyBuffer_FillInfo(view, obj, (void *)s, n, 1, PyBUF_SIMPLE);
    }
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return er_validation_error(st, "body", "must be bytes or str, not %s", Py_TYPE(obj)->tp_name);
    }
    return 0;
}

static PyObject *
cb_parse_callback(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"body", "kind", NULL};
    DarajaState *st = PyModule_GetState(module);
    PyObject *body_obj, *kind_obj, *root = NULL, *out = NULL;
    Py_buffer view = {0};
    const char *kind;
    int rc = -1;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:parse_callback", kwlist, &body_obj, &kind_obj)) {
        return NULL;
    }
    if (va_choice(st, "kind", kind_obj, KINDS, &kind) < 0 || body_bytes(st, body_obj, &view) < 0) {
        return NULL;
    }
    if ((root = jr_parse(st, view.buf, (size_t)view.len, DR_MAX_CALLBACK)) == NULL) {
        goto done;
    }
    if (!PyDict_Check(root)) {
        er_validation_error(st, "body", "must be a JSON object");
        goto done;
    }
    if ((out = PyDict_New()) == NULL) {
        goto done;
    }
    int k = K_stk + (int)(kind_index(kind));
    if (k == K_stk) {
        rc = parse_stk(st, root, out);
    }
    else if (k == K_c2b_validation || k == K_c2b_confirmation) {
        rc = parse_c2b(st, root, out, k);
    }
    else if (k == K_pull) {
        rc = parse_pull(st, root, out);
    }
    else {
        rc = parse_result(st, root, out, k);
    }
done:
    if (rc < 0) {
        Py_CLEAR(out);
    }
    Py_XDECREF(root);
    PyBuffer_Release(&view);
    return out;
}

/* ---- Python: what Daraja expects back ---------------------------------- */

static const char *const REJECT_REASONS[] = {"C2B00011", "C2B00012", "C2B00013", "C2B00014",
                                             "C2B00015", "C2B00016", NULL};

static PyObject *
cb_c2b_accept(PyObject *module, PyObject *Py_UNUSED(unused))
{
    (void)module;
    return PyUnicode_FromString("{\"ResultCode\":\"0\",\"ResultDesc\":\"Accepted\"}");
}

static PyObject *
cb_c2b_reject(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"reason", NULL};
    PyObject *reason_obj;
    const char *reason;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:c2b_reject", kwlist, &reason_obj)) {
        return NULL;
    }
    if (va_choice(PyModule_GetState(module), "reason", reason_obj, REJECT_REASONS, &reason) < 0) {
        return NULL;
    }
    return PyUnicode_FromFormat("{\"ResultCode\":\"%s\",\"ResultDesc\":\"Rejected\"}", reason);
}

static PyObject *
cb_ack(PyObject *module, PyObject *Py_UNUSED(unused))
{
    (void)module;
    return PyUnicode_FromString("{\"ResultCode\":0,\"ResultDesc\":\"Success\"}");
}

/* ---- registration ------------------------------------------------------ */

static PyMethodDef cb_methods[] = {
    {"parse_callback", (PyCFunction)(void (*)(void))cb_parse_callback, METH_VARARGS | METH_KEYWORDS,
     "parse_callback(body, kind) -> dict\n\n"
     "Parse and type a callback body (bytes or str, at most 64 KiB, strict JSON nested at\n"
     "most 32 deep). kind is one of 'stk', 'c2b_validation', 'c2b_confirmation', 'result'\n"
     "(B2C, B2B, tax, status, balance, reversal), 'timeout' or 'pull'.\n\n"
     "Returns one flat dict keyed by Daraja's own field names, plus 'kind' and 'success'\n"
     "(ResultCode 0 or \"0\" for stk/result/timeout; always True for c2b and pull):\n"
     "- stk: the Body.stkCallback fields and each CallbackMetadata.Item by Name\n"
     "  (Amount, MpesaReceiptNumber, TransactionDate, PhoneNumber, Balance...);\n"
     "- c2b_*: the body's fields (TransID, TransAmount, MSISDN, ...);\n"
     "- result/timeout: the Result fields; each ResultParameter and ReferenceItem by Key (the\n"
     "  first of a repeated Key; one named like a Result field, e.g. a status result's\n"
     "  OriginatorConversationID of the queried transaction, as 'ResultParameter.<Key>' or\n"
     "  'ReferenceItem.<Key>'); and 'parameters' and 'references': every item as a\n"
     "  (Key, typed value) pair, in order, repeats kept;\n"
     "- pull: ResponseRefID, ResponseCode, ResponseMessage and 'transactions', a list of\n"
     "  typed dicts from Response (one or two lists deep).\n"
     "Items may be one object or a list; an item without Value gives None; an item never\n"
     "replaces a top-level field. Numbers with an exponent beyond 100 are refused. Types: ResultCode as given (int or str); ids, receipts,\n"
     "shortcodes, MSISDN and PhoneNumber as str (opaque: masked or hashed MSISDNs kept);\n"
     "amounts as exact decimal.Decimal ('' gives None); dates as aware datetimes in\n"
     "Nairobi time (UTC+3); AccountBalance as a list of {'account', 'currency', 'current',\n"
     "'available', 'reserved', 'uncleared'} (missing columns None). Other values as in\n"
     "the JSON (fractions as Decimal, never float).\n\n"
     "Raises ValidationError: field 'body' for size, depth, UTF-8 or JSON faults (with the\n"
     "byte offset), 'kind' for an unknown kind, otherwise the JSON path of the missing or\n"
     "mistyped field, e.g. 'Body.stkCallback.CheckoutRequestID'."},
    {"verify_callback", (PyCFunction)(void (*)(void))vf_py_verify_callback, METH_VARARGS | METH_KEYWORDS,
     "verify_callback(expected_secret, given_secret, remote_addr, allowlist=None) -> bool\n\n"
     "True iff given_secret equals expected_secret (compared in constant time, lengths\n"
     "included) and, when allowlist is not None, remote_addr lies in one of its networks.\n"
     "given_secret may be str, bytes or None (None or empty is never a match). remote_addr\n"
     "is the IPv4 or IPv6 address your own proxy saw; IPv4-mapped IPv6 addresses count as\n"
     "IPv4, and anything unparseable is simply not allowed. allowlist is an iterable of\n"
     "'a.b.c.d', 'a.b.c.d/nn', 'x:y::/nn' strings, or one str of them separated by commas\n"
     "or whitespace; an empty allowlist allows nothing. Raises ValidationError for an empty\n"
     "expected_secret or a malformed allowlist entry (field 'allowlist')."},
    {"new_callback_secret", (PyCFunction)vf_py_new_callback_secret, METH_NOARGS,
     "new_callback_secret() -> str\n\n"
     "256 bits from the OS CSPRNG as 43 URL-safe base64 characters (no padding)."},
    {"c2b_accept", (PyCFunction)cb_c2b_accept, METH_NOARGS,
     "c2b_accept() -> str\n\n"
     "The C2B validation reply that accepts: {\"ResultCode\":\"0\",\"ResultDesc\":\"Accepted\"}."},
    {"c2b_reject", (PyCFunction)(void (*)(void))cb_c2b_reject, METH_VARARGS | METH_KEYWORDS,
     "c2b_reject(reason) -> str\n\n"
     "The C2B validation reply that rejects, {\"ResultCode\":reason,\"ResultDesc\":\"Rejected\"};\n"
     "reason is C2B00011 (MSISDN), C2B00012 (account), C2B00013 (amount), C2B00014 (KYC),\n"
     "C2B00015 (shortcode) or C2B00016 (other)."},
    {"ack", (PyCFunction)cb_ack, METH_NOARGS,
     "ack() -> str\n\n"
     "The acknowledgement for every other callback: {\"ResultCode\":0,\"ResultDesc\":\"Success\"}."},
    {NULL, NULL, 0, NULL},
};

int
cb_add_functions(PyObject *module)
{
    if (make_cache(PyModule_GetState(module)) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, cb_methods);
}
