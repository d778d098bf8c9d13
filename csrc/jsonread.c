/*
 * jsonread.c - a strict RFC 8259 JSON reader for callback bodies, written for this
 * module: the bodies come from the public internet, so the reader refuses anything
 * the RFC does not allow rather than guessing, and every refusal is a
 * ValidationError (field "body") whose message says what is wrong and at which
 * byte offset.
 *
 * Limits and choices:
 * - at most max_len bytes (the caller's cap) and DR_MAX_DEPTH nested arrays/objects;
 * - strings must be valid UTF-8 (no overlongs, no UTF-8-encoded surrogates, nothing
 *   above U+10FFFF) without raw control characters; \u escapes must pair surrogates;
 * - a leading byte order mark is refused (RFC 8259 section 8.1 forbids sending one,
 *   Daraja never does, and Python's json.loads refuses it too);
 * - a duplicate key in an object: the last one wins, as with Python's json;
 * - integers become int (any size Python's int() accepts); numbers with a fraction
 *   or an exponent become decimal.Decimal built from the literal text, never float;
 *   an exponent is at most 100 either way (1e101 is refused, with its offset).
 *
 * The reader recurses once per nesting level, so DR_MAX_DEPTH also bounds the C stack.
 */
#include "daraja.h"

#include <string.h>

typedef struct {
    DarajaState *st;
    const unsigned char *data;
    size_t len;
    size_t pos;
    int depth;
    char *scratch;  /* decoded string with escapes; never longer than the input */
} Reader;

static PyObject *read_value(Reader *r);

/* Raise ValidationError for the body at byte offset `at`; returns NULL. */
static PyObject *
fail_at(Reader *r, size_t at, const char *what)
{
    er_validation_error(r->st, "body", "invalid JSON at byte %zu: %s", at, what);
    return NULL;
}

/* Skip the four whitespace bytes RFC 8259 allows. */
static void
skip_ws(Reader *r)
{
    while (r->pos < r->len) {
        unsigned char c = r->data[r->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            break;
        }
        r->pos++;
    }
}

/* Length of the well-formed UTF-8 sequence at s[0..n) (RFC 3629 table 4), 0 if none. */
static size_t
utf8_sequence(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t need;

    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    }
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) {
            lo = 0xA0;  /* no overlongs */
        }
        else if (c == 0xED) {
            hi = 0x9F;  /* no surrogates */
        }
    }
    else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) {
            lo = 0x90;  /* no overlongs */
        }
        else if (c == 0xF4) {
            hi = 0x8F;  /* nothing above U+10FFFF */
        }
    }
    else {
        return 0;       /* continuation byte, C0, C1 or F5..FF */
    }
    if (n < need || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < need; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF) {
            return 0;
        }
    }
    return need;
}

/* Four hex digits at r->pos into *out; -1 if they are not there (no exception). */
static int
read_hex4(Reader *r, unsigned *out)
{
    unsigned v = 0;
    if (r->len - r->pos < 4) {
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        unsigned char c = r->data[r->pos + i];
        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= (unsigned)(c - '0');
        }
        else if (c >= 'a' && c <= 'f') {
            v |= (unsigned)(c - 'a' + 10);
        }
        else if (c >= 'A' && c <= 'F') {
            v |= (unsigned)(c - 'A' + 10);
        }
        else {
            return -1;
        }
    }
    r->pos += 4;
    *out = v;
    return 0;
}

/* Append code point cp as UTF-8 at out; return the bytes written. */
static size_t
put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The byte a one-letter escape stands for; 0 for 'u' (four hex digits follow), -1 if invalid. */
static int
simple_escape(unsigned char e)
{
    static const char from[] = "\"\\/bfnrt";
    static const char to[] = "\"\\/\b\f\n\r\t";
    if (e == 'u') {
        return 0;
    }
    const char *hit = e != '\0' ? memchr(from, e, sizeof(from) - 1) : NULL;
    return hit == NULL ? -1 : (unsigned char)to[hit - from];
}

/* Decode the \u escape whose 'u' was just consumed (surrogate pairs joined) into out.
 * Return the bytes written, or 0 after raising. */
static size_t
read_unicode_escape(Reader *r, char *out)
{
    size_t start = r->pos - 2;
    unsigned cp, low;
    if (read_hex4(r, &cp) < 0) {
        fail_at(r, start, "\\u must be followed by four hex digits");
        return 0;
    }
    if (cp >= 0xDC00 && cp <= 0xDFFF) {
        fail_at(r, start, "lone low surrogate escape");
        return 0;
    }
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (r->len - r->pos < 2 || r->data[r->pos] != '\\' || r->data[r->pos + 1] != 'u') {
            fail_at(r, start, "high surrogate escape without a low surrogate");
            return 0;
        }
        r->pos += 2;
        if (read_hex4(r, &low) < 0) {
            fail_at(r, r->pos - 2, "\\u must be followed by four hex digits");
            return 0;
        }
        if (low < 0xDC00 || low > 0xDFFF) {
            fail_at(r, start, "high surrogate escape without a low surrogate");
            return 0;
        }
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    return put_utf8(out, cp);
}

/* Bytes a string may hold as they are in the fast path: printable ASCII but '"' and '\\'. */
#define PLAIN(c) ((c) >= 0x20 && (c) < 0x80 && (c) != '"' && (c) != '\\')

/* A str of n ASCII bytes without the UTF-8 decoder; new reference or NULL. */
static PyObject *
ascii_str(const unsigned char *s, size_t n)
{
    PyObject *str = PyUnicode_New((Py_ssize_t)n, 127);
    if (str != NULL) {
        memcpy(PyUnicode_1BYTE_DATA(str), s, n);
    }
    return str;
}

/* Advance r->pos over plain ASCII bytes (PLAIN): eight bytes a test, the rest one. */
static void
skip_plain(Reader *r)
{
    while (r->len - r->pos >= 8) {
        uint64_t w = dr_load8(r->data + r->pos);
        if ((w & DR_HIGHS) | dr_any_below(w, 0x20) | dr_any_equal(w, '"') | dr_any_equal(w, '\\')) {
            break;
        }
        r->pos += 8;
    }
    while (r->pos < r->len && PLAIN(r->data[r->pos])) {
        r->pos++;
    }
}

/* Read the string whose opening quote is at r->pos, the first `plain` bytes of which
 * skip_plain has passed already; return a new str or NULL. */
static PyObject *
read_string_from(Reader *r, size_t plain)
{
    size_t start = ++r->pos;
    size_t out = 0;
    int escaped = 0;

    /* Most of Daraja's strings are plain ASCII. */
    r->pos += plain;
    skip_plain(r);
    if (r->pos < r->len && r->data[r->pos] == '"') {
        return ascii_str(r->data + start, r->pos++ - start);
    }
    for (;;) {
        if (r->pos >= r->len) {
            return fail_at(r, start - 1, "unterminated string");
        }
        unsigned char c = r->data[r->pos];
        if (c == '"') {
            break;
        }
        if (c < 0x20) {
            return fail_at(r, r->pos, "control character in string (must be escaped)");
        }
        if (c == '\\') {
            if (!escaped) {
                /* Everything before the first escape is copied once, then decoding
                 * continues into the scratch buffer. */
                if (r->scratch == NULL && (r->scratch = PyMem_Malloc(r->len)) == NULL) {
                    PyErr_NoMemory();
                    return NULL;
                }
                out = r->pos - start;
                memcpy(r->scratch, r->data + start, out);
                escaped = 1;
            }
            if (r->pos + 1 >= r->len) {
                return fail_at(r, start - 1, "unterminated string");
            }
            int simple = simple_escape(r->data[r->pos + 1]);
            if (simple == -1) {
                return fail_at(r, r->pos, "invalid escape sequence");
            }
            r->pos += 2;
            if (simple != 0) {
                r->scratch[out++] = (char)simple;
            }
            else {
                size_t n = read_unicode_escape(r, r->scratch + out);
                if (n == 0) {
                    return NULL;
                }
                out += n;
            }
            continue;
        }
        size_t n = utf8_sequence(r->data + r->pos, r->len - r->pos);
        if (n == 0) {
            return fail_at(r, r->pos, "invalid UTF-8 in string");
        }
        if (escaped) {
            memcpy(r->scratch + out, r->data + r->pos, n);
            out += n;
        }
        r->pos += n;
    }
    size_t end = r->pos++;
    /* The bytes were checked above, so strict decoding cannot fail on content. */
    if (escaped) {
        return PyUnicode_DecodeUTF8(r->scratch, (Py_ssize_t)out, "strict");
    }
    return PyUnicode_DecodeUTF8((const char *)r->data + start, (Py_ssize_t)(end - start), "strict");
}

/* Read the string whose opening quote is at r->pos; return a new str or NULL. */
static PyObject *
read_string(Reader *r)
{
    return read_string_from(r, 0);
}

/* The slot of the key s[0..n) among the kept keys. */
static unsigned
key_slot(const unsigned char *s, size_t n)
{
    return (unsigned)(n * 31u + s[0] * 7u + s[n / 2] * 3u + s[n - 1]) % DR_KEY_SLOTS;
}

/* Read an object key (its quote at r->pos); a new reference or NULL. The same few keys come
 * in every Daraja answer and callback, so plain ASCII keys up to DR_KEY_MAX bytes are kept in
 * the module state and handed out again: no new str, and its hash is already computed when
 * the dict takes it. */
static PyObject *
read_key(Reader *r)
{
    size_t quote = r->pos, start = quote + 1;
    r->pos = start;
    skip_plain(r);
    size_t n = r->pos - start;
    if (r->pos >= r->len || r->data[r->pos] != '"' || n == 0 || n > DR_KEY_MAX) {
        r->pos = quote;
        return read_string_from(r, n);
    }
    const unsigned char *s = r->data + start;
    PyObject **slot = &r->st->json_keys[key_slot(s, n)];
    r->pos++;
    if (*slot != NULL && (size_t)PyUnicode_GET_LENGTH(*slot) == n && memcmp(PyUnicode_1BYTE_DATA(*slot), s, n) == 0) {
        return Py_NewRef(*slot);
    }
    PyObject *key = ascii_str(s, n);
    if (key != NULL) {
        Py_XSETREF(*slot, Py_NewRef(key));
    }
    return key;
}

void
jr_clear_keys(DarajaState *st)
{
    for (int i = 0; i < DR_KEY_SLOTS; i++) {
        Py_CLEAR(st->json_keys[i]);
    }
}

/* Advance over a run of digits; return how many there were. */
static size_t
skip_digits(Reader *r)
{
    size_t n = 0;
    while (r->pos < r->len && r->data[r->pos] >= '0' && r->data[r->pos] <= '9') {
        r->pos++;
        n++;
    }
    return n;
}

/* Read a number: int for integers, decimal.Decimal from the literal otherwise. */
static PyObject *
read_number(Reader *r)
{
    size_t start = r->pos;
    int integral = 1;

    if (r->data[r->pos] == '-') {
        r->pos++;
    }
    if (r->pos < r->len && r->data[r->pos] == '0') {
        r->pos++;
        if (r->pos < r->len && r->data[r->pos] >= '0' && r->data[r->pos] <= '9') {
            return fail_at(r, start, "number with a leading zero");
        }
    }
    else if (skip_digits(r) == 0) {
        return fail_at(r, start, "'-' must be followed by digits");
    }
    if (r->pos < r->len && r->data[r->pos] == '.') {
        r->pos++;
        integral = 0;
        if (skip_digits(r) == 0) {
            return fail_at(r, start, "'.' must be followed by digits");
        }
    }
    if (r->pos < r->len && (r->data[r->pos] == 'e' || r->data[r->pos] == 'E')) {
        r->pos++;
        integral = 0;
        if (r->pos < r->len && (r->data[r->pos] == '+' || r->data[r->pos] == '-')) {
            r->pos++;
        }
        size_t digits_at = r->pos;
        if (skip_digits(r) == 0) {
            return fail_at(r, start, "exponent must have digits");
        }
        /* Bound the exponent before Decimal sees it: Decimal("1e999999999") is cheap to make
         * but int(), quantize() or as_integer_ratio() of it would run for minutes. */
        while (digits_at + 1 < r->pos && r->data[digits_at] == '0') {
            digits_at++;
        }
        if (r->pos - digits_at > 3 || (r->pos - digits_at == 3 && memcmp(r->data + digits_at, "100", 3) > 0)) {
            return fail_at(r, start, "number with an exponent beyond 100");
        }
    }
    PyObject *text = PyUnicode_FromStringAndSize((const char *)r->data + start,
                                                 (Py_ssize_t)(r->pos - start));
    if (text == NULL) {
        return NULL;
    }
    PyObject *value = integral ? PyLong_FromUnicodeObject(text, 10)
                               : PyObject_CallOneArg(r->st->Decimal, text);
    Py_DECREF(text);
    if (value == NULL && !PyErr_ExceptionMatches(PyExc_MemoryError)) {
        /* int() refuses more digits than sys.get_int_max_str_digits(). */
        PyErr_Clear();
        return fail_at(r, start, "number out of range");
    }
    return value;
}

/* Match the literal word (true, false, null) at r->pos; return the object or NULL. */
static PyObject *
read_word(Reader *r, const char *word, PyObject *value)
{
    size_t n = strlen(word);
    if (r->len - r->pos < n || memcmp(r->data + r->pos, word, n) != 0) {
        return fail_at(r, r->pos, "unexpected character");
    }
    r->pos += n;
    return Py_NewRef(value);
}

/* Enter a nested array or object; -1 after raising when too deep. */
static int
enter(Reader *r)
{
    if (++r->depth > DR_MAX_DEPTH) {
        er_validation_error(r->st, "body", "JSON nested deeper than %d levels at byte %zu", DR_MAX_DEPTH,
                            r->pos);
        return -1;
    }
    return 0;
}

/* Read the array whose '[' is at r->pos; new list or NULL. */
static PyObject *
read_array(Reader *r)
{
    PyObject *list = NULL, *item = NULL;
    if (enter(r) < 0) {
        return NULL;
    }
    r->pos++;
    if ((list = PyList_New(0)) == NULL) {
        goto error;
    }
    skip_ws(r);
    if (r->pos < r->len && r->data[r->pos] == ']') {
        r->pos++;
        r->depth--;
        return list;
    }
    for (;;) {
        if ((item = read_value(r)) == NULL || PyList_Append(list, item) < 0) {
            goto error;
        }
        Py_CLEAR(item);
        skip_ws(r);
        if (r->pos < r->len && r->data[r->pos] == ',') {
            r->pos++;
            continue;
        }
        if (r->pos < r->len && r->data[r->pos] == ']') {
            r->pos++;
            break;
        }
        fail_at(r, r->pos, r->pos < r->len ? "expected ',' or ']'" : "unexpected end in array");
        goto error;
    }
    r->depth--;
    return list;

error:
    Py_XDECREF(item);
    Py_XDECREF(list);
    return NULL;
}

/* Read the object whose '{' is at r->pos; new dict or NULL. Duplicate keys: last wins. */
static PyObject *
read_object(Reader *r)
{
    PyObject *dict = NULL, *key = NULL, *value = NULL;
    if (enter(r) < 0) {
        return NULL;
    }
    r->pos++;
    if ((dict = PyDict_New()) == NULL) {
        goto error;
    }
    skip_ws(r);
    if (r->pos < r->len && r->data[r->pos] == '}') {
        r->pos++;
        r->depth--;
        return dict;
    }
    for (;;) {
        skip_ws(r);
        if (r->pos >= r->len || r->data[r->pos] != '"') {
            fail_at(r, r->pos, r->pos < r->len ? "expected a string key" : "unexpected end in object");
            goto error;
        }
        if ((key = read_key(r)) == NULL) {
            goto error;
        }
        skip_ws(r);
        if (r->pos >= r->len || r->data[r->pos] != ':') {
            fail_at(r, r->pos, "expected ':' after the key");
            goto error;
        }
        r->pos++;
        if ((value = read_value(r)) == NULL || PyDict_SetItem(dict, key, value) < 0) {
            goto error;
        }
        Py_CLEAR(key);
        Py_CLEAR(value);
        skip_ws(r);
        if (r->pos < r->len && r->data[r->pos] == ',') {
            r->pos++;
            continue;
        }
        if (r->pos < r->len && r->data[r->pos] == '}') {
            r->pos++;
            break;
        }
        fail_at(r, r->pos, r->pos < r->len ? "expected ',' or '}'" : "unexpected end in object");
        goto error;
    }
    r->depth--;
    return dict;

error:
    Py_XDECREF(value);
    Py_XDECREF(key);
    Py_XDECREF(dict);
    return NULL;
}

/* Read any value after optional whitespace; new reference or NULL. */
static PyObject *
read_value(Reader *r)
{
    skip_ws(r);
    if (r->pos >= r->len) {
        return fail_at(r, r->pos, "unexpected end, expected a value");
    }
    unsigned char c = r->data[r->pos];
    switch (c) {
    case '{':
        return read_object(r);
    case '[':
        return read_array(r);
    case '"':
        return read_string(r);
    case 't':
        return read_word(r, "true", Py_True);
    case 'f':
        return read_word(r, "false", Py_False);
    case 'n':
        return read_word(r, "null", Py_None);
    default:
        if (c == '-' || (c >= '0' && c <= '9')) {
            return read_number(r);
        }
        if (c >= 0x80 && utf8_sequence(r->data + r->pos, r->len - r->pos) == 0) {
            return fail_at(r, r->pos, "invalid UTF-8");
        }
        return fail_at(r, r->pos, "unexpected character");
    }
}

PyObject *
jr_parse(DarajaState *st, const char *data, size_t len, size_t max_len)
{
    Reader r = {.st = st, .data = (const unsigned char *)data, .len = len};
    PyObject *value = NULL;

    if (len > max_len) {
        er_validation_error(st, "body", "is %zu bytes; at most %zu are accepted", len, max_len);
        return NULL;
    }
    if (len == 0) {
        er_validation_error(st, "body", "is empty");
        return NULL;
    }
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) {
        er_validation_error(st, "body", "starts with a UTF-8 byte order mark; JSON must not");
        return NULL;
    }
    if ((value = read_value(&r)) == NULL) {
        goto done;
    }
    skip_ws(&r);
    if (r.pos != r.len) {
        Py_CLEAR(value);
        fail_at(&r, r.pos, "trailing data after the JSON value");
    }
done:
    PyMem_Free(r.scratch);
    return value;
}
