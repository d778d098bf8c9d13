/*
 * verify.c - is a callback really from Daraja? Daraja signs nothing, so the only
 * proof of origin is the secret in the URL we registered plus, optionally, the peer
 * address our own proxy saw, checked against an allowlist of networks.
 *
 * Secrets are compared through SHA-256 digests with CRYPTO_memcmp, so neither the
 * matching prefix nor the length of a guess shows in the timing.
 */
#include "daraja.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#define SECRET_BYTES 32  /* 256 bits */

PyObject *
vf_py_new_callback_secret(PyObject *module, PyObject *Py_UNUSED(unused))
{
    DarajaState *st = PyModule_GetState(module);
    unsigned char raw[SECRET_BYTES];
    char *text = NULL;
    size_t n = 0;
    PyObject *result = NULL;

    if (RAND_priv_bytes(raw, sizeof(raw)) != 1) {
        ERR_clear_error();
        PyErr_SetString(PyExc_RuntimeError, "the random generator failed");
        goto done;
    }
    if ((text = cr_base64(st, raw, sizeof(raw), &n)) == NULL) {
        goto done;
    }
    /* base64url (RFC 4648 section 5) without padding: safe in a URL path or query. */
    while (n > 0 && text[n - 1] == '=') {
        n--;
    }
    for (size_t i = 0; i < n; i++) {
        text[i] = text[i] == '+' ? '-' : text[i] == '/' ? '_' : text[i];
    }
    result = PyUnicode_FromStringAndSize(text, (Py_ssize_t)n);
done:
    if (text != NULL) {
        cr_wipe(text, n);
        free(text);
    }
    cr_wipe(raw, sizeof(raw));
    return result;
}

typedef struct {
    int family;                 /* 4 or 6 */
    unsigned char addr[16];     /* network bytes; IPv4 in the first 4 */
    int prefix;
} Cidr;

typedef struct {
    Cidr *items;
    size_t len;
    size_t cap;
} CidrList;

/* Parse a textual IPv4 or IPv6 address; an IPv4-mapped IPv6 address becomes IPv4
 * (*mapped set). -1 (no exception) if s[0..n) is not an address. */
static int
parse_address(const char *s, size_t n, unsigned char addr[16], int *family, int *mapped)
{
    static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char buf[INET6_ADDRSTRLEN + 1];
    *mapped = 0;
    if (n == 0 || n >= sizeof(buf) || memchr(s, '\0', n) != NULL) {
        return -1;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, buf, addr) == 1) {
        *family = 4;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, addr) != 1) {
        return -1;
    }
    if (memcmp(addr, v4_mapped, 12) == 0) {
        memmove(addr, addr + 12, 4);
        memset(addr + 4, 0, 12);
        *family = 4;
        *mapped = 1;
        return 0;
    }
    *family = 6;
    return 0;
}

/* Does addr (of family) fall inside c? */
static int
cidr_contains(const Cidr *c, int family, const unsigned char addr[16])
{
    if (c->family != family) {
        return 0;
    }
    int whole = c->prefix / 8, bits = c->prefix % 8;
    if (memcmp(c->addr, addr, (size_t)whole) != 0) {
        return 0;
    }
    if (bits == 0) {
        return 1;
    }
    unsigned char mask = (unsigned char)(0xff << (8 - bits));
    return (c->addr[whole] & mask) == (addr[whole] & mask);
}

/* Parse one "address[/prefix]" entry into *c; -1 with ValidationError("allowlist") if bad. */
static int
parse_cidr(DarajaState *st, const char *s, size_t n, Cidr *c)
{
    const char *slash = memchr(s, '/', n);
    size_t addr_len = slash != NULL ? (size_t)(slash - s) : n;
    int mapped, prefix = -1;
    const char *why = "is not an IPv4 or IPv6 address or network";

    if (parse_address(s, addr_len, c->addr, &c->family, &mapped) == 0) {
        int max = c->family == 4 && !mapped ? 32 : 128;
        if (slash == NULL) {
            prefix = max;
        }
        else {
            size_t digits = n - addr_len - 1;
            prefix = digits >= 1 && digits <= 3 ? va_digits_value(slash + 1, (int)digits) : -1;
            if (prefix < 0 || prefix > max) {
                prefix = -1;
                why = "has a bad prefix length";
            }
        }
        if (prefix >= 0 && mapped) {
            /* ::ffff:a.b.c.d/nn is IPv4 when it only covers mapped addresses. */
            if (prefix >= 96) {
                prefix -= 96;
            }
            else {
                prefix = -1;
                why = "is an IPv4-mapped network shorter than /96";
            }
        }
    }
    if (prefix >= 0) {
        c->prefix = prefix;
        int whole = prefix / 8, bits = prefix % 8;
        int width = c->family == 4 ? 4 : 16;
        for (int i = whole; i < width; i++) {
            unsigned char host = (unsigned char)(i == whole ? 0xff >> bits : 0xff);
            if (c->addr[i] & host) {
                prefix = -1;
                why = "has bits set after the prefix length (write the network address)";
                break;
            }
        }
        if (prefix >= 0) {
            return 0;
        }
    }
    PyObject *shown = PyUnicode_DecodeUTF8(s, (Py_ssize_t)(n > 64 ? 64 : n), "replace");
    if (shown == NULL) {
        return -1;
    }
    er_validation_error(st, "allowlist", "entry %R %s", shown, why);
    Py_DECREF(shown);
    return -1;
}

/* Is c ASCII whitespace? */
static int
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Is c one of the separators of an allowlist given as text? */
static int
is_separator(char c)
{
    return c == ',' || is_space(c);
}

/* Parse every entry of a str (comma/whitespace separated) and append it to list. */
static int
add_cidrs(DarajaState *st, PyObject *text, CidrList *list)
{
    Py_ssize_t len;
    const char *s = PyUnicode_AsUTF8AndSize(text, &len);
    if (s == NULL) {
        PyErr_Clear();
        return er_validation_error(st, "allowlist", "must be valid Unicode text");
    }
    size_t n = (size_t)len, i = 0;
    while (i < n) {
        while (i < n && is_separator(s[i])) {
            i++;
        }
        size_t start = i;
        while (i < n && !is_separator(s[i])) {
            i++;
        }
        if (i == start) {
            continue;
        }
        if (list->len == list->cap) {
            size_t cap = list->cap ? list->cap * 2 : 16;
            Cidr *items = PyMem_Realloc(list->items, cap * sizeof(Cidr));
            if (items == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            list->items = items;
            list->cap = cap;
        }
        if (parse_cidr(st, s + start, i - start, &list->items[list->len]) < 0) {
            return -1;
        }
        list->len++;
    }
    return 0;
}

/* An allowlist given as a str or an iterable of str into list. */
static int
parse_allowlist(DarajaState *st, PyObject *allowlist, CidrList *list)
{
    if (PyUnicode_Check(allowlist)) {
        return add_cidrs(st, allowlist, list);
    }
    PyObject *it = PyObject_GetIter(allowlist), *item;
    if (it == NULL) {
        PyErr_Clear();
        return er_validation_error(st, "allowlist", "must be a str or an iterable of str, not %s",
                                   Py_TYPE(allowlist)->tp_name);
    }
    while ((item = PyIter_Next(it)) != NULL) {
        int rc = PyUnicode_Check(item)
                     ? add_cidrs(st, item, list)
                     : er_validation_error(st, "allowlist", "entries must be str, not %s",
                                           Py_TYPE(item)->tp_name);
        Py_DECREF(item);
        if (rc < 0) {
            Py_DECREF(it);
            return -1;
        }
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 0;
}

/* Is remote_addr (a str, as the proxy gave it) inside one of the networks? Anything
 * that is not an address is simply outside. */
static int
address_allowed(PyObject *remote_addr, const CidrList *list)
{
    unsigned char addr[16];
    int family, mapped;
    Py_ssize_t len;
    if (!PyUnicode_Check(remote_addr)) {
        return 0;
    }
    const char *s = PyUnicode_AsUTF8AndSize(remote_addr, &len);
    if (s == NULL) {
        PyErr_Clear();
        return 0;
    }
    size_t start = 0, end = (size_t)len;
    while (start < end && is_space(s[start])) {
        start++;
    }
    while (end > start && is_space(s[end - 1])) {
        end--;
    }
    if (parse_address(s + start, end - start, addr, &family, &mapped) < 0) {
        return 0;
    }
    for (size_t i = 0; i < list->len; i++) {
        if (cidr_contains(&list->items[i], family, addr)) {
            return 1;
        }
    }
    return 0;
}

/* The bytes of a given secret as str or bytes-like; 0 when absent or unusable. */
static int
given_secret_bytes(PyObject *given, Py_buffer *view)
{
    if (PyUnicode_Check(given)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(given, &n);
        if (s == NULL) {
            PyErr_Clear();
            return 0;
        }
        return PyBuffer_FillInfo(view, given, (void *)s, n, 1, PyBUF_SIMPLE) == 0;
    }
    if (given != Py_None && PyObject_CheckBuffer(given)) {
        if (PyObject_GetBuffer(given, view, PyBUF_SIMPLE) == 0) {
            return 1;
        }
        PyErr_Clear();
    }
    return 0;
}

PyObject *
vf_py_verify_callback(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"expected_secret", "given_secret", "remote_addr", "allowlist", NULL};
    DarajaState *st = PyModule_GetState(module);
    PyObject *expected_obj, *given_obj, *remote_addr, *allowlist = Py_None, *result = NULL;
    const char *expected;
    Py_ssize_t expected_len;
    Py_buffer given = {0};
    CidrList list = {0};
    unsigned char want[32], got[32];
    int have_given = 0, secret_ok, address_ok;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|O:verify_callback", kwlist, &expected_obj,
                                     &given_obj, &remote_addr, &allowlist)) {
        return NULL;
    }
    if (va_secret(st, "expected_secret", expected_obj, &expected, &expected_len) < 0) {
        return NULL;
    }
    if (allowlist != Py_None && parse_allowlist(st, allowlist, &list) < 0) {
        goto done;
    }
    have_given = given_secret_bytes(given_obj, &given);
    /* Compare fixed-size digests so neither the time nor the result depends on where
     * the secrets first differ or on whether their lengths match. */
    if (cr_sha256(st, expected, (size_t)expected_len, want) < 0 ||
        cr_sha256(st, have_given ? given.buf : "", have_given ? (size_t)given.len : 0, got) < 0) {
        goto done;
    }
    secret_ok = CRYPTO_memcmp(want, got, sizeof(want)) == 0;
    secret_ok &= have_given && given.len > 0;
    address_ok = allowlist == Py_None || address_allowed(remote_addr, &list);
    result = PyBool_FromLong(secret_ok && address_ok);
done:
    cr_wipe(want, sizeof(want));
    cr_wipe(got, sizeof(got));
    if (have_given) {
        PyBuffer_Release(&given);
    }
    PyMem_Free(list.items);
    return result;
}
