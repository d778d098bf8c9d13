/*
 * json.c - JSON request bodies, written straight into a growable buffer capped at
 * DR_MAX_BODY. Bodies may carry credentials (Password, SecurityCredential), so the
 * buffer is wiped whenever it is grown or freed.
 */
#include "daraja.h"

#include <stdlib.h>
#include <string.h>

/* Make room for n more bytes; on failure mark the buffer failed. */
static int
reserve(JsonBuf *b, size_t n)
{
    if (b->failed) {
        return -1;
    }
    if (b->len + n + 1 <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 512;
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
    if (b->data != NULL) {
        memcpy(data, b->data, b->len);
        cr_wipe(b->data, b->cap);
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

/* Append s as a JSON string literal; UTF-8 passes through, the rest is escaped. */
static void
append_string(JsonBuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    append(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\' && ch != 0x7f) {
            continue;
        }
        append(b, s + run, i - run);
        run = i + 1;
        if (ch == '"' || ch == '\\') {
            char esc[2] = {'\\', (char)ch};
            append(b, esc, 2);
        }
        else {
            char esc[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
            append(b, esc, 6);
        }
    }
    append(b, s + run, n - run);
    append(b, "\"", 1);
}

/* Append the separator and "key": for the next member. */
static void
append_key(JsonBuf *b, const char *key)
{
    if (!b->first) {
        append(b, ",", 1);
    }
    b->first = 0;
    append_string(b, key, strlen(key));
    append(b, ":", 1);
}

void
jw_begin(JsonBuf *b)
{
    memset(b, 0, sizeof(*b));
    b->first = 1;
    append(b, "{", 1);
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
    char digits[32];
    int n = snprintf(digits, sizeof(digits), "%lld", value);
    append_key(b, key);
    append(b, digits, (size_t)n);
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
        cr_wipe(b->data, b->cap);
        free(b->data);
    }
    memset(b, 0, sizeof(*b));
}
