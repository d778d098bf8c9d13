/*
 * validate.c - the input rules Daraja enforces, checked here before any network
 * I/O so that bad input fails fast with a ValidationError naming the field.
 *
 * Messages never echo a value that could be a secret or personal data (passkeys,
 * phone numbers); they say what the rule is.
 */
#include "daraja.h"

#include <limits.h>
#include <math.h>
#include <string.h>
#include <time.h>

#define NAIROBI_UTC_OFFSET (3 * 3600)  /* East Africa Time, no daylight saving */

/* Words Daraja refuses anywhere in a callback URL, any case (words_starting() indexes them). */
static const char *const BANNED_URL_WORDS[] = {"mpesa", "m-pesa", "safaricom", "exe", "exec",
                                               "cmd", "sql", "query", NULL};

static int
all_digits(const char *s, size_t n)
{
    if (n == 0) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }
    return 1;
}

int
va_is_token(const char *s, Py_ssize_t n)
{
    if (n <= 0 || n > 4096) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) {
            return 0;
        }
    }
    return 1;
}

int
va_digits_value(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* An int (never a bool) or a str; anything else is refused naming the field. */
static int
check_int_or_str(DarajaState *st, const char *field, PyObject *v)
{
    if (PyBool_Check(v) || !(PyLong_Check(v) || PyUnicode_Check(v))) {
        return er_validation_error(st, field, "must be a str or an int, not %s", Py_TYPE(v)->tp_name);
    }
    return 0;
}

/* The decimal digits of a non-negative int into out[size] without str(): str() of a huge int
 * raises ValueError and costs time; -1 (no exception) if v is negative or too long for out. */
static int
int_digits(PyObject *v, char *out, size_t size)
{
    int overflow;
    long long value = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || value < 0) {
        return -1;  /* a value above LLONG_MAX has more digits than any field takes */
    }
    int n = PyOS_snprintf(out, size, "%lld", value);
    return n > 0 && (size_t)n < size ? n : -1;
}

/* Digits of a non-negative int or a str into out[size]; -1 with an error otherwise. */
static int
digits_of(DarajaState *st, const char *field, PyObject *v, char *out, size_t size, size_t *len)
{
    const char *s;
    Py_ssize_t n = 0;

    if (check_int_or_str(st, field, v) < 0) {
        return -1;
    }
    if (PyLong_Check(v)) {
        int digits = int_digits(v, out, size);
        if (digits < 0) {
            return er_validation_error(st, field, "must be digits only");
        }
        *len = (size_t)digits;
        return 0;
    }
    s = PyUnicode_AsUTF8AndSize(v, &n);
    if (s == NULL || (size_t)n >= size || !all_digits(s, (size_t)n)) {
        PyErr_Clear();
        return er_validation_error(st, field, "must be digits only");
    }
    memcpy(out, s, (size_t)n + 1);
    *len = (size_t)n;
    return 0;
}

int
va_digits(DarajaState *st, const char *field, PyObject *v, size_t min, size_t max, char *out, size_t size)
{
    char buf[32];
    size_t n = 0;
    if (digits_of(st, field, v, buf, sizeof(buf), &n) < 0) {
        return -1;
    }
    if (n < min || n > max || n >= size) {
        return er_validation_error(st, field, "must be %zu to %zu digits", min, max);
    }
    memcpy(out, buf, n + 1);
    return 0;
}

int
va_shortcode(DarajaState *st, const char *field, PyObject *v, char out[8])
{
    char buf[32];
    size_t n = 0;
    if (digits_of(st, field, v, buf, sizeof(buf), &n) < 0) {
        return -1;
    }
    if (n < 5 || n > 7) {
        return er_validation_error(st, field, "must be a shortcode of 5 to 7 digits");
    }
    memcpy(out, buf, n + 1);
    return 0;
}

/* Parse a digit string with an optional all-zero fraction ("100", "100.00"). */
static int
parse_whole_number(const char *s, size_t n, long long *out)
{
    size_t i = 0;
    long long value = 0;
    if (n == 0 || n > 24) {
        return -1;
    }
    for (; i < n && s[i] != '.'; i++) {
        if (s[i] < '0' || s[i] > '9' || value > (LLONG_MAX - 9) / 10) {
            return -1;
        }
        value = value * 10 + (s[i] - '0');
    }
    if (i == 0) {
        return -1;
    }
    if (i < n) {
        if (i + 1 == n) {
            return -1;
        }
        for (i++; i < n; i++) {
            if (s[i] != '0') {
                return -1;
            }
        }
    }
    *out = value;
    return 0;
}

#define WHOLE_MAX_DIGITS 18  /* any amount fits; so does a long long */

/* The value of the Decimal v when it is a whole number; 0, or -1 (no exception) if not.
 * Reads sign, digits and exponent through decimal.Decimal.as_tuple itself (a subclass cannot
 * override it) and checks the exponent before any arithmetic: as_integer_ratio() of
 * Decimal("1E+999999999") would build a billion-digit int with the GIL held. */
static int
whole_decimal(DarajaState *st, PyObject *v, long long *out)
{
    PyObject *as_tuple = NULL, *parts = NULL;
    int rc = -1;

    if ((as_tuple = PyObject_GetAttrString(st->Decimal, "as_tuple")) == NULL ||
        (parts = PyObject_CallOneArg(as_tuple, v)) == NULL || !PyTuple_Check(parts) ||
        PyTuple_GET_SIZE(parts) != 3) {
        goto done;
    }
    PyObject *sign = PyTuple_GET_ITEM(parts, 0), *digits = PyTuple_GET_ITEM(parts, 1);
    PyObject *exponent = PyTuple_GET_ITEM(parts, 2);
    if (!PyLong_CheckExact(sign) || !PyTuple_Check(digits) || !PyLong_CheckExact(exponent)) {
        goto done;  /* NaN, sNaN and Infinity have a str exponent */
    }
    int overflow;
    long exp = PyLong_AsLongAndOverflow(exponent, &overflow);
    Py_ssize_t n = PyTuple_GET_SIZE(digits);
    if (overflow || exp > WHOLE_MAX_DIGITS || exp < -(long)n) {
        /* Too large, or (digits are never all zero past the first) a fraction. Zero is
         * (0,) with any exponent: only the digits could tell, and zero is never an amount. */
        goto done;
    }
    Py_ssize_t whole = n + exp;  /* digits before the point */
    if (whole > WHOLE_MAX_DIGITS) {
        goto done;
    }
    long long value = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyTuple_GET_ITEM(digits, i);
        long digit = PyLong_CheckExact(d) ? PyLong_AsLong(d) : -1;
        if (digit < 0 || digit > 9 || (i >= whole && digit != 0)) {
            goto done;
        }
        if (i < whole) {
            value = value * 10 + digit;
        }
    }
    for (long i = 0; i < exp; i++) {
        value *= 10;
    }
    *out = PyLong_AsLong(sign) == 1 ? -value : value;
    rc = 0;
done:
    Py_XDECREF(parts);
    Py_XDECREF(as_tuple);
    return rc;
}

/* The value of an int (any int subclass, never a bool), or -1 (no exception) if out of range. */
static int
whole_int(PyObject *v, long long *out)
{
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (*out == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return -1;
    }
    return 0;
}

/* The value of v when it is a whole number; 0 on success, -1 (no exception) if not.
 * Types are checked before any user code runs, and user code runs at most once: an
 * integer-like object's __index__, or another number's as_integer_ratio(), whose
 * answer must be two plain ints. Nothing here recurses on what a user object returns. */
static int
whole_number(DarajaState *st, PyObject *v, long long *out)
{
    if (PyBool_Check(v)) {
        return -1;
    }
    if (PyLong_Check(v)) {
        return whole_int(v, out);
    }
    if (PyFloat_Check(v)) {
        double d = PyFloat_AS_DOUBLE(v);
        if (!isfinite(d) || d != floor(d) || fabs(d) > 9e15) {
            return -1;
        }
        *out = (long long)d;
        return 0;
    }
    if (PyUnicode_Check(v)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(v, &n);
        return s == NULL ? -1 : parse_whole_number(s, (size_t)n, out);
    }
    if (PyObject_TypeCheck(v, (PyTypeObject *)st->Decimal)) {
        return whole_decimal(st, v, out);
    }
    if (PyIndex_Check(v)) {
        /* numpy integers and friends; PyNumber_Index refuses an answer that is not an int. */
        PyObject *index = PyNumber_Index(v);
        int rc = index != NULL && !PyBool_Check(index) ? whole_int(index, out) : -1;
        Py_XDECREF(index);
        return rc;
    }
    /* Fraction and friends: exact, through as_integer_ratio(), called once. */
    PyObject *ratio = PyObject_CallMethod(v, "as_integer_ratio", NULL);
    int rc = -1;
    if (ratio != NULL && PyTuple_CheckExact(ratio) && PyTuple_GET_SIZE(ratio) == 2 &&
        PyLong_CheckExact(PyTuple_GET_ITEM(ratio, 0)) && PyLong_CheckExact(PyTuple_GET_ITEM(ratio, 1))) {
        long long denominator;
        if (whole_int(PyTuple_GET_ITEM(ratio, 1), &denominator) == 0 && denominator == 1) {
            rc = whole_int(PyTuple_GET_ITEM(ratio, 0), out);
        }
    }
    Py_XDECREF(ratio);
    return rc;
}

int
va_amount(DarajaState *st, const char *field, PyObject *v, long long min, long long max, long long *out)
{
    long long value;
    if (whole_number(st, v, &value) < 0) {
        PyErr_Clear();
        return er_validation_error(st, field, "must be a whole number of shillings");
    }
    if (value < min || value > max) {
        return er_validation_error(st, field, "must be between %lld and %lld shillings", min, max);
    }
    *out = value;
    return 0;
}

/* Does s[0..n) hold a byte below 0x20 or 0x7f? Eight bytes a test, the rest one. */
static int
has_control(const char *s, size_t n)
{
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        uint64_t w = dr_load8(s + i);
        if (dr_any_below(w, 0x20) | dr_any_equal(w, 0x7f)) {
            return 1;
        }
    }
    for (; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            return 1;
        }
    }
    return 0;
}

int
va_text(DarajaState *st, const char *field, PyObject *v, Py_ssize_t min, Py_ssize_t max, const char **out,
        Py_ssize_t *len)
{
    if (!PyUnicode_Check(v)) {
        return er_validation_error(st, field, "must be a str, not %s", Py_TYPE(v)->tp_name);
    }
    Py_ssize_t chars = PyUnicode_GetLength(v);
    if (chars < min || chars > max) {
        if (min == max) {
            return er_validation_error(st, field, "must be %zd characters long", min);
        }
        return er_validation_error(st, field, "must be %zd to %zd characters long", min, max);
    }
    const char *s = PyUnicode_AsUTF8AndSize(v, len);
    if (s == NULL) {
        PyErr_Clear();
        return er_validation_error(st, field, "must be valid Unicode text");
    }
    /* In UTF-8 every control character is a single byte below 0x20, or 0x7f. */
    if (has_control(s, (size_t)*len)) {
        return er_validation_error(st, field, "must not contain control characters");
    }
    *out = s;
    return 0;
}

int
va_secret(DarajaState *st, const char *field, PyObject *v, const char **out, Py_ssize_t *len)
{
    if (!PyUnicode_Check(v)) {
        return er_validation_error(st, field, "must be a str, not %s", Py_TYPE(v)->tp_name);
    }
    const char *s = PyUnicode_AsUTF8AndSize(v, len);
    if (s == NULL) {
        PyErr_Clear();
        return er_validation_error(st, field, "must be valid Unicode text");
    }
    if (*len == 0 || *len > 1024) {
        return er_validation_error(st, field, "must be 1 to 1024 bytes long");
    }
    if (strlen(s) != (size_t)*len) {
        return er_validation_error(st, field, "must not contain NUL characters");
    }
    *out = s;
    return 0;
}

/* Is s[0..n) printable ASCII without spaces ('!' to '~')? Eight bytes a test, the rest one. */
static int
printable_ascii(const char *s, size_t n)
{
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        uint64_t w = dr_load8(s + i);
        if ((w & DR_HIGHS) | dr_any_below(w, 0x21) | dr_any_equal(w, 0x7f)) {
            return 0;
        }
    }
    for (; i < n; i++) {
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f) {
            return 0;
        }
    }
    return 1;
}

/* The words of BANNED_URL_WORDS that start with the letter c (either case), as a bit mask
 * by index: 0 for every other byte, so most of a URL costs one test a byte. */
static unsigned
words_starting(char c)
{
    switch (c | 0x20) {
    case 'm':
        return 1u << 0 | 1u << 1;  /* mpesa, m-pesa */
    case 's':
        return 1u << 2 | 1u << 6;  /* safaricom, sql */
    case 'e':
        return 1u << 3 | 1u << 4;  /* exe, exec */
    case 'c':
        return 1u << 5;            /* cmd */
    case 'q':
        return 1u << 7;            /* query */
    default:
        return 0;
    }
}

/* The first of BANNED_URL_WORDS (in the list's order) found in url[0..n), any case, or NULL.
 * The URL is printable ASCII here, so ch | 0x20 equals a word's letter (or '-') only when ch
 * is that letter in either case (or '-'). */
static const char *
banned_url_word(const char *url, size_t n)
{
    unsigned found = 0;
    for (size_t i = 0; i < n; i++) {
        for (unsigned todo = words_starting(url[i]) & ~found; todo != 0; todo &= todo - 1) {
            unsigned w = (unsigned)__builtin_ctz(todo);
            const char *word = BANNED_URL_WORDS[w];
            size_t k = 1;
            while (word[k] != '\0' && i + k < n && (char)(url[i + k] | 0x20) == word[k]) {
                k++;
            }
            if (word[k] == '\0') {
                found |= 1u << w;
            }
        }
    }
    for (unsigned w = 0; BANNED_URL_WORDS[w] != NULL; w++) {
        if (found & (1u << w)) {
            return BANNED_URL_WORDS[w];
        }
    }
    return NULL;
}

int
va_callback_url(DarajaState *st, const char *field, PyObject *v, const char **out, Py_ssize_t *len)
{
    const char *url;
    Py_ssize_t n;
    if (va_text(st, field, v, 12, 1024, &url, &n) < 0) {
        return -1;
    }
    if (strncmp(url, "https://", 8) != 0) {
        return er_validation_error(st, field, "must start with https:// (lowercase)");
    }
    if (url[8] == '/' || url[8] == ':' || url[8] == '\0') {
        return er_validation_error(st, field, "has no host");
    }
    if (!printable_ascii(url, (size_t)n)) {
        return er_validation_error(st, field, "must be plain ASCII without spaces");
    }
    const char *word = banned_url_word(url, (size_t)n);
    if (word != NULL) {
        return er_validation_error(st, field, "contains '%s', a word Daraja refuses in callback URLs", word);
    }
    *out = url;
    *len = n;
    return 0;
}

/* Normalise s[0..n) (spaces and dashes ignored) into out, or return -1. */
static int
normalise_phone(const char *s, size_t n, char out[VA_PHONE_LEN + 1])
{
    char digits[24];
    size_t d = 0, start;
    int plus = 0;

    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == ' ' || ch == '-') {
            continue;
        }
        if (ch == '+' && d == 0 && !plus) {
            plus = 1;
            continue;
        }
        if (ch < '0' || ch > '9' || d + 1 >= sizeof(digits)) {
            return -1;
        }
        digits[d++] = ch;
    }
    digits[d] = '\0';
    if (d == 12 && strncmp(digits, "254", 3) == 0) {
        start = 3;
    }
    else if (d == 10 && digits[0] == '0' && !plus) {
        start = 1;
    }
    else if (d == 9 && !plus) {
        start = 0;  /* the national number without its 0, as customers often type it */
    }
    else {
        return -1;
    }
    if (digits[start] != '7' && digits[start] != '1') {
        return -1;
    }
    memcpy(out, "254", 3);
    memcpy(out + 3, digits + start, 9);
    out[VA_PHONE_LEN] = '\0';
    return 0;
}

int
va_phone(DarajaState *st, const char *field, PyObject *v, char out[VA_PHONE_LEN + 1])
{
    char digits[24];
    const char *s = NULL;
    Py_ssize_t n = 0;

    if (check_int_or_str(st, field, v) < 0) {
        return -1;
    }
    if (PyLong_Check(v)) {
        /* Negative or huge ints are refused here, never formatted with their sign. */
        int len = int_digits(v, digits, sizeof(digits));
        if (len >= 0) {
            s = digits;
            n = len;
        }
    }
    else if ((s = PyUnicode_AsUTF8AndSize(v, &n)) == NULL) {
        PyErr_Clear();
    }
    if (s == NULL || normalise_phone(s, (size_t)n, out) < 0) {
        return er_validation_error(st, field,
                                   "must be a Kenyan mobile number: 07XXXXXXXX, 01XXXXXXXX, "
                                   "7XXXXXXXX, +2547XXXXXXXX or 2547XXXXXXXX");
    }
    return 0;
}

/* Write value as width digits at out. */
static void
put_digits(char *out, int value, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        out[i] = (char)('0' + value % 10);
        value /= 10;
    }
}

void
va_now_nairobi(char out[VA_TIMESTAMP_LEN + 1])
{
    long long now = (long long)time(NULL) + NAIROBI_UTC_OFFSET;
    long long days = now >= 0 ? now / 86400 : (now - 86399) / 86400;
    int secs = (int)(now - days * 86400);
    /* By hand, and without gmtime_r (which takes a lock and walks tables) or strftime (which
     * consults the locale): this runs on every request. Days since 1970-01-01 to a civil date,
     * the proleptic Gregorian calendar in 400-year eras (H. Hinnant's days_from_civil inverse). */
    long long z = days + 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;
    int day = (int)(doy - (153 * mp + 2) / 5 + 1);
    int month = (int)(mp < 10 ? mp + 3 : mp - 9);
    int year = (int)(yoe + era * 400 + (month <= 2));
    put_digits(out, year, 4);
    put_digits(out + 4, month, 2);
    put_digits(out + 6, day, 2);
    put_digits(out + 8, secs / 3600, 2);
    put_digits(out + 10, secs / 60 % 60, 2);
    put_digits(out + 12, secs % 60, 2);
    out[VA_TIMESTAMP_LEN] = '\0';
}

int
va_timestamp(DarajaState *st, const char *field, PyObject *v, char out[VA_TIMESTAMP_LEN + 1])
{
    if (v == NULL || v == Py_None) {
        va_now_nairobi(out);
        return 0;
    }
    const char *s;
    Py_ssize_t n;
    if (va_text(st, field, v, VA_TIMESTAMP_LEN, VA_TIMESTAMP_LEN, &s, &n) < 0) {
        return -1;
    }
    if (!all_digits(s, (size_t)n)) {
        return er_validation_error(st, field, "must be YYYYMMDDHHmmss digits");
    }
    memcpy(out, s, VA_TIMESTAMP_LEN + 1);
    return 0;
}

int
va_choice(DarajaState *st, const char *field, PyObject *v, const char *const *allowed, const char **out)
{
    if (PyUnicode_Check(v)) {
        const char *s = PyUnicode_AsUTF8(v);
        if (s == NULL) {
            PyErr_Clear();
        }
        for (const char *const *a = allowed; s != NULL && *a != NULL; a++) {
            if (strcmp(s, *a) == 0) {
                *out = *a;
                return 0;
            }
        }
    }
    char list[256] = "";
    for (const char *const *a = allowed; *a != NULL; a++) {
        if (a != allowed) {
            strncat(list, ", ", sizeof(list) - strlen(list) - 1);
        }
        strncat(list, *a, sizeof(list) - strlen(list) - 1);
    }
    return er_validation_error(st, field, "must be one of %s", list);
}

PyObject *
va_py_normalize_phone(PyObject *module, PyObject *arg)
{
    char out[VA_PHONE_LEN + 1];
    if (va_phone(PyModule_GetState(module), "phone", arg, out) < 0) {
        return NULL;
    }
    return PyUnicode_FromStringAndSize(out, VA_PHONE_LEN);
}

PyObject *
va_py_timestamp(PyObject *module, PyObject *Py_UNUSED(unused))
{
    (void)module;
    char out[VA_TIMESTAMP_LEN + 1];
    va_now_nairobi(out);
    return PyUnicode_FromStringAndSize(out, VA_TIMESTAMP_LEN);
}
