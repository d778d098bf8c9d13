/*
 * json.c - JSON request bodies, written straight into a buffer that starts inside
 * the JsonBuf (JW_INLINE bytes, enough for every Daraja body, so no allocation) and
 * moves to the heap only beyond that, capped at DR_MAX_BODY. Bodies may carry
 * credentials (Password, SecurityCredential), so every byte written is wiped when the
 * buffer moves or is freed.
 */
#include "daraja.h"

#include <stdlib.h>
#include <string.h>

/* Bytes a JSON string must escape: control characters, '"', '\\' and DEL. */
static const unsigned char ESCAPE[256] = {
    [0x00] = 1, [0x01] = 1, [0x02] = 1, [0x03] = 1, [0x04] = 1, [0x05] = 1, [0x06] = 1, [0x07] = 1,
    [0x08] = 1, [0x09] = 1, [0x0a] = 1, [0x0b] = 1, [0x0c] = 1, [0x0d] = 1, [0x0e] = 1, [0x0f] = 1,
    [0x10] = 1, [0x11] = 1, [0x12] = 1, [0x13] = 1, [0x14] = 1, [0x15] = 1, [0x16] = 1, [0x17] = 1,
    [0x18] = 1, [0x19] = 1, [0x1a] = 1, [0x1b] = 1, [0x1c] = 1, [0x1d] = 1, [0x1e] = 1, [0x1f] = 1,
    ['"'] = 1,  ['\\'] = 1, [0x7f] = 1,
};

/* Make room for n more bytes and a NUL; -1 (and the buffer marked failed) when it can't. */
static int
reserve(JsonBuf *b, size_t n)
{
    if (b->failed) {
        return -1;
    }
    if (b->len + n + 1 <= b->cap) {
        return 0;
    }
    size_t cap = b->cap * 2;
    while (cap < b->len + n + 1) {
        cap *= 2;
    }
    if (cap > DR_MAX_BODY) {
        b->failed = 1;
        return -1;
    }
    char *data = malloc(cap);
    if (data == NULL) {
        b->failed = 1;
        return -1;
    }
    memcpy(data, b->data, b->len);
    cr_wipe(b->data, b->len);
    if (b->data != b->inline_data) {
        free(b->data);
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static void
append(JsonBuf *b, const char *s, size_t n)
{
    if (reserve(b, n) == 0) {
        memcpy(b->data + b->len, s, n);
        b->len += n;
        b->data[b->len] = '\0';
    }
}

/* Append the separator and "key": for the next member. */
static void
append_key(JsonBuf *b, const char *key)
{
    size_t n = strlen(key);
    if (reserve(b, n + 4) < 0) {
        return;
    }
    char *p = b->data + b->len;
    if (!b->first) {
        *p++ = ',';
    }
    b->first = 0;
    *p++ = '"';
    memcpy(p, key, n);
    p += n;
    *p++ = '"';
    *p++ = ':';
    b->len = (size_t)(p - b->data);
}

/* The length of the run at s[0..n) that needs no escape: eight bytes a test, the rest one. */
static size_t
plain_run(const unsigned char *s, size_t n)
{
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        uint64_t w = dr_load8(s + i);
        if (dr_any_below(w, 0x20) | dr_any_equal(w, '"') | dr_any_equal(w, '\\') | dr_any_equal(w, 0x7f)) {
            break;
        }
    }
    while (i < n && !ESCAPE[s[i]]) {
        i++;
    }
    return i;
}

/* Append s as a JSON string literal; UTF-8 passes through, the rest is escaped.
 * Room for the plain case is made once; an escape makes room for its own five bytes. */
static void
append_string(JsonBuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    if (reserve(b, n + 2) < 0) {
        return;
    }
    char *p = b->data + b->len;
    *p++ = '"';
    for (size_t i = 0;;) {
        size_t run = plain_run(u + i, n - i);
        memcpy(p, u + i, run);
        p += run;
        i += run;
        if (i == n) {
            break;
        }
        unsigned char ch = u[i++];
        b->len = (size_t)(p - b->data);
        if (reserve(b, (n - i) + 7) < 0) {
            return;
        }
        p = b->data + b->len;
        *p++ = '\\';
        if (ch == '"' || ch == '\\') {
            *p++ = (char)ch;
        }
        else {
            *p++ = 'u';
            *p++ = '0';
            *p++ = '0';
            *p++ = hex[ch >> 4];
            *p++ = hex[ch & 15];
        }
    }
    *p++ = '"';
    *p = '\0';
    b->len = (size_t)(p - b->data);
}

void
jw_begin(JsonBuf *b)
{
    b->data = b->inline_data;
    b->cap = sizeof(b->inline_data);
    b->len = 1;
    b->first = 1;
    b->failed = 0;
    b->data[0] = '{';
    b->data[1] = '\0';
}

void
jw_str(JsonBuf *b, const char *key, const char *value, size_t len)
{
    append_key(b, key);
    append_string(b, value, len);
}

void
jw_int(JsonBuf *b, const char *key, long long value)
{
    char digits[24];
    char *end = digits + sizeof(digits), *p = end;
    unsigned long long u = value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (value < 0) {
        *--p = '-';
    }
    append_key(b, key);
    append(b, p, (size_t)(end - p));
}

int
jw_end(DarajaState *st, JsonBuf *b)
{
    append(b, "}", 1);
    if (b->failed) {
        er_validation_error(st, "request", "the request body would exceed %d bytes", DR_MAX_BODY);
        return -1;
    }
    return 0;
}

void
jw_free(JsonBuf *b)
{
    if (b->data != NULL) {
        cr_wipe(b->data, b->len + 1 <= b->cap ? b->len + 1 : b->cap);
        if (b->data != b->inline_data) {
            free(b->data);
        }
    }
    b->data = NULL;
    b->len = b->cap = 0;
}
