/*
 * crypto.c - OpenSSL only: certificate parsing, the Security Credential, base64,
 * SHA-256, CA stores and the handling of secret buffers.
 *
 * Certificate validity dates and chains are deliberately not checked: Safaricom's
 * published encryption certificates expired years ago and are still the ones in use.
 * Only the public key matters, and only an RSA key of at least 2048 bits with an odd
 * public exponent of at least 65537 is accepted: with e=1 the "credential" would be the
 * padded initiator password in clear, and small or even exponents are broken or unusable.
 *
 * libcurl is given an allocator that wipes every block it frees (see cr_curl_global_init):
 * libcurl copies the Authorization header and request bodies (STK Password, Security
 * Credential) into buffers of its own, which we cannot reach to wipe.
 *
 * The parsed-key cache and the CA store cache live in the module state and are used
 * with the GIL held, which serialises them; no call here releases the GIL.
 */
#include "daraja.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_AVX2_WIPE 1
#endif
/* GCC would turn the wiping loops back into memset (see cr_wipe); clang has no such switch. */
#if defined(__GNUC__) && !defined(__clang__)
#define NO_MEMSET_LOOPS optimize("no-tree-loop-distribute-patterns")
#else
#define NO_MEMSET_LOOPS
#endif

#include <limits.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#define MAX_CERTIFICATE_BYTES (64 * 1024)
#define MIN_RSA_BITS 2048
#define MIN_RSA_EXPONENT 65537

/* ---- secrets ----------------------------------------------------------- */

int
cr_secret_set(SecretBuf *out, const char *data, size_t len)
{
    /* malloc, not PyMem: secrets are freed where the GIL may not be held. */
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(copy, data, len);
    copy[len] = '\0';
    cr_secret_free(out);
    out->data = copy;
    out->len = len;
    return 0;
}

void
cr_secret_free(SecretBuf *s)
{
    if (s->data != NULL) {
        cr_wipe(s->data, s->len);
        free(s->data);
    }
    s->data = NULL;
    s->len = 0;
}

/* Zero n bytes with plain stores that the compiler must keep (the barrier after them says the
 * memory is read). Not memset, whatever its speed: above 2 KiB glibc's memset is rep stosb,
 * which valgrind counts as one instruction per byte, so the instruction budgets of
 * bench/instructions.py would count the wiping of libcurl's buffers wrong. With SSE2 (every
 * x86-64 has it): 128 bytes a turn, then 16, and a last 16-byte store that may overlap the
 * previous one (32-byte stores from 32 bytes on with AVX2); 8 bytes, then 1, elsewhere and
 * below 16 bytes. */
#ifdef HAVE_AVX2_WIPE
/* cr_wipe's loop with 32-byte stores, for n >= 32 on a CPU with AVX2 (libcurl's buffers are
 * wiped on every request: half the stores of SSE2). */
__attribute__((target("avx2"), NO_MEMSET_LOOPS)) static void
wipe_avx2(unsigned char *b, size_t n)
{
    const __m256i zero = _mm256_setzero_si256();
    size_t i = 0;
    for (; n - i >= 128; i += 128) {
        _mm256_storeu_si256((__m256i *)(b + i), zero);
        _mm256_storeu_si256((__m256i *)(b + i + 32), zero);
        _mm256_storeu_si256((__m256i *)(b + i + 64), zero);
        _mm256_storeu_si256((__m256i *)(b + i + 96), zero);
    }
    for (; n - i >= 32; i += 32) {
        _mm256_storeu_si256((__m256i *)(b + i), zero);
    }
    if (i < n) {
        _mm256_storeu_si256((__m256i *)(b + n - 32), zero);
    }
}
#endif

__attribute__((NO_MEMSET_LOOPS)) void
cr_wipe(void *p, size_t n)
{
    if (p == NULL) {
        return;
    }
    unsigned char *b = p;
    size_t i = 0;
#ifdef HAVE_AVX2_WIPE
    if (n >= 32 && __builtin_cpu_supports("avx2")) {
        wipe_avx2(b, n);
        __asm__ __volatile__("" : : "r"(p) : "memory");
        return;
    }
#endif
#ifdef __SSE2__
    if (n >= 16) {
        const __m128i zero = _mm_setzero_si128();
        for (; n - i >= 128; i += 128) {
            _mm_storeu_si128((__m128i *)(b + i), zero);
            _mm_storeu_si128((__m128i *)(b + i + 16), zero);
            _mm_storeu_si128((__m128i *)(b + i + 32), zero);
            _mm_storeu_si128((__m128i *)(b + i + 48), zero);
            _mm_storeu_si128((__m128i *)(b + i + 64), zero);
            _mm_storeu_si128((__m128i *)(b + i + 80), zero);
            _mm_storeu_si128((__m128i *)(b + i + 96), zero);
            _mm_storeu_si128((__m128i *)(b + i + 112), zero);
        }
        for (; n - i >= 16; i += 16) {
            _mm_storeu_si128((__m128i *)(b + i), zero);
        }
        if (i < n) {
            _mm_storeu_si128((__m128i *)(b + n - 16), zero);
        }
        i = n;
    }
#endif
    for (; n - i >= 8; i += 8) {
        uint64_t zero = 0;
        memcpy(b + i, &zero, 8);
    }
    for (; i < n; i++) {
        b[i] = 0;
    }
    __asm__ __volatile__("" : : "r"(p) : "memory");
}

int
cr_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen) {
        return 0;
    }
    return alen == 0 || CRYPTO_memcmp(a, b, alen) == 0;
}

/* ---- libcurl's allocator: every freed block wiped ----------------------- */

/* The block whose free proves that libcurl calls wipe_free; NULL outside the probe. */
static _Atomic(void *) probe_block;
static atomic_int probe_seen;

/* free() that first wipes the whole usable block. No GIL. */
static void
wipe_free(void *p)
{
    if (p == NULL) {
        return;
    }
    if (atomic_load_explicit(&probe_block, memory_order_relaxed) == p) {
        atomic_store(&probe_seen, 1);
    }
    cr_wipe(p, malloc_usable_size(p));
    free(p);
}

/* realloc() that never leaves the old contents behind in freed memory: a block that
 * already holds n bytes is kept, a bigger one is a new block and the old one wiped. */
static void *
wipe_realloc(void *p, size_t n)
{
    if (p == NULL) {
        return malloc(n);
    }
    if (n == 0) {
        wipe_free(p);
        return NULL;
    }
    size_t old = malloc_usable_size(p);
    if (n <= old) {
        return p;
    }
    void *q = malloc(n);
    if (q == NULL) {
        return NULL; /* p stays valid, as with realloc */
    }
    memcpy(q, p, old);
    wipe_free(p);
    return q;
}

/* strdup() through malloc, so that wipe_free may free the copy. */
static char *
wipe_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy != NULL) {
        memcpy(copy, s, n);
    }
    return copy;
}

int
cr_curl_global_init(void)
{
    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, malloc, wipe_free, wipe_realloc, wipe_strdup,
                             calloc) != CURLE_OK) {
        PyErr_SetString(PyExc_ImportError, "libcurl could not be initialised");
        return -1;
    }
    /* When libcurl was initialised before us (by another extension in this process), the
     * call above only counts one more user and keeps the first allocator: find out by
     * freeing a block libcurl allocated and seeing whether wipe_free was asked to. */
    char *block = curl_easy_escape(NULL, "probe", 5);
    if (block == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    atomic_store(&probe_seen, 0);
    atomic_store(&probe_block, (void *)block);
    curl_free(block);
    atomic_store(&probe_block, NULL);
    return atomic_load(&probe_seen);
}

/* ---- errors ------------------------------------------------------------ */

/* Copy the oldest queued OpenSSL error into buf, then clear the whole queue so a
 * stale error never leaks into a later call. */
static void
take_openssl_error(char *buf, size_t size)
{
    unsigned long code = ERR_get_error();
    if (code != 0) {
        ERR_error_string_n(code, buf, size);
    }
    else {
        PyOS_snprintf(buf, size, "unknown OpenSSL error");
    }
    ERR_clear_error();
}

/* Raise ValidationError for `field` with the queued OpenSSL reason; returns -1. */
static int
openssl_validation_error(DarajaState *st, const char *field, const char *what)
{
    char reason[256];
    take_openssl_error(reason, sizeof(reason));
    return er_validation_error(st, field, "%s (%s)", what, reason);
}

/* ---- encodings and digests --------------------------------------------- */

char *
cr_base64(DarajaState *st, const unsigned char *in, size_t len, size_t *out_len)
{
    (void)st;
    if (len > INT_MAX / 2) {
        PyErr_SetString(PyExc_OverflowError, "input too large to encode");
        return NULL;
    }
    size_t size = 4 * ((len + 2) / 3) + 1;
    char *out = malloc(size);
    if (out == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    int n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    *out_len = (size_t)n;
    return out;
}

unsigned char *
cr_base64_decode(DarajaState *st, const char *field, const char *in, size_t len, size_t *out_len)
{
    if (len > INT_MAX / 2) {
        er_validation_error(st, field, "is too large");
        return NULL;
    }
    unsigned char *out = malloc(len / 4 * 3 + 3);
    EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
    int n = 0, tail = 0;
    if (out == NULL || ctx == NULL) {
        free(out);
        EVP_ENCODE_CTX_free(ctx);
        PyErr_NoMemory();
        return NULL;
    }
    EVP_DecodeInit(ctx);
    /* Update returns -1 on a bad character; Final checks the padding. */
    if (EVP_DecodeUpdate(ctx, out, &n, (const unsigned char *)in, (int)len) < 0 ||
        EVP_DecodeFinal(ctx, out + n, &tail) != 1 || n + tail == 0) {
        free(out);
        EVP_ENCODE_CTX_free(ctx);
        ERR_clear_error();
        er_validation_error(st, field, "is not valid base64");
        return NULL;
    }
    EVP_ENCODE_CTX_free(ctx);
    *out_len = (size_t)(n + tail);
    return out;
}

int
cr_sha256(DarajaState *st, const void *in, size_t len, unsigned char out[32])
{
    (void)st;
    unsigned int n = 0;
    if (EVP_Digest(in, len, out, &n, EVP_sha256(), NULL) != 1 || n != 32) {
        char reason[256];
        take_openssl_error(reason, sizeof(reason));
        PyErr_Format(PyExc_RuntimeError, "SHA-256 failed: %s", reason);
        return -1;
    }
    return 0;
}

/* ---- certificates ------------------------------------------------------ */

/* The bytes of a certificate given as bytes-like or str. Fills view; -1 on error. */
static int
certificate_bytes(DarajaState *st, PyObject *obj, Py_buffer *view)
{
    if (PyUnicode_Check(obj)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(obj, &n);
        if (s == NULL) {
            PyErr_Clear();
            return er_validation_error(st, "certificate", "must be PEM text or DER bytes");
        }
        return PyBuffer_FillInfo(view, obj, (void *)s, n, 1, PyBUF_SIMPLE);
    }
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return er_validation_error(st, "certificate", "must be PEM text or DER bytes, not %s",
                                   Py_TYPE(obj)->tp_name);
    }
    return 0;
}

/* Parse PEM or DER bytes into an X509; NULL with ValidationError on garbage. */
static X509 *
parse_certificate(DarajaState *st, const unsigned char *data, size_t len)
{
    X509 *cert = NULL;
    if (len == 0 || len > MAX_CERTIFICATE_BYTES) {
        er_validation_error(st, "certificate", "must be between 1 byte and 64 KiB");
        return NULL;
    }
    ERR_clear_error();
    if (memmem(data, len, "-----BEGIN", 10) != NULL) {
        BIO *bio = BIO_new_mem_buf(data, (int)len);
        if (bio != NULL) {
            cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
            BIO_free(bio);
        }
    }
    else {
        const unsigned char *p = data;
        cert = d2i_X509(NULL, &p, (long)len);
        if (cert != NULL && p != data + len) {
            X509_free(cert);
            cert = NULL;
            er_validation_error(st, "certificate", "has trailing bytes after the DER certificate");
            ERR_clear_error();
            return NULL;
        }
    }
    if (cert == NULL) {
        openssl_validation_error(st, "certificate", "is not a PEM or DER X.509 certificate");
        return NULL;
    }
    return cert;
}

/* The RSA public exponent as the certificate writes it (new BIGNUM, sign kept); NULL with
 * ValidationError if the key is not SEQUENCE { INTEGER n >= 0, INTEGER e }. OpenSSL's RSA
 * decoder reads both INTEGERs as unsigned, so a negative exponent would otherwise pass as
 * a large positive one. */
static BIGNUM *
written_exponent(DarajaState *st, X509 *cert)
{
    const ASN1_BIT_STRING *bits = X509_get0_pubkey_bitstr(cert);
    const unsigned char *p = bits != NULL ? ASN1_STRING_get0_data(bits) : NULL;
    STACK_OF(ASN1_TYPE) *seq =
        p != NULL ? d2i_ASN1_SEQUENCE_ANY(NULL, &p, ASN1_STRING_length(bits)) : NULL;
    BIGNUM *n = NULL, *e = NULL;

    if (seq != NULL && sk_ASN1_TYPE_num(seq) == 2 &&
        ASN1_TYPE_get(sk_ASN1_TYPE_value(seq, 0)) == V_ASN1_INTEGER &&
        ASN1_TYPE_get(sk_ASN1_TYPE_value(seq, 1)) == V_ASN1_INTEGER) {
        n = ASN1_INTEGER_to_BN(sk_ASN1_TYPE_value(seq, 0)->value.integer, NULL);
        e = ASN1_INTEGER_to_BN(sk_ASN1_TYPE_value(seq, 1)->value.integer, NULL);
    }
    sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
    if (n == NULL || e == NULL || BN_is_negative(n)) {
        BN_free(e);
        e = NULL;
        er_validation_error(st, "certificate", "holds a malformed RSA public key");
    }
    BN_free(n);
    ERR_clear_error();
    return e;
}

/* Refuse (ValidationError on "certificate", -1) a key that cannot make a safe Security
 * Credential: not RSA, under MIN_RSA_BITS, or an exponent that is not odd and at least
 * MIN_RSA_EXPONENT (e=1 leaves the password in clear; 0, negative and even are not RSA;
 * 3 and other small ones fall to low-exponent attacks). */
static int
check_credential_key(DarajaState *st, X509 *cert, EVP_PKEY *key)
{
    int id = EVP_PKEY_base_id(key);
    if (id != EVP_PKEY_RSA) {
        const char *type = id == EVP_PKEY_EC ? "EC" : id == EVP_PKEY_RSA_PSS ? "RSA-PSS" : "another type";
        return er_validation_error(st, "certificate", "must hold an RSA key, not %s", type);
    }
    int bits = EVP_PKEY_bits(key);
    if (bits < MIN_RSA_BITS) {
        return er_validation_error(st, "certificate", "holds a %d-bit RSA key; at least %d bits are needed",
                                   bits, MIN_RSA_BITS);
    }
    BIGNUM *e = written_exponent(st, cert);
    if (e == NULL) {
        return -1;
    }
    int ok = !BN_is_negative(e) && BN_is_odd(e) && BN_num_bits(e) > 16; /* odd and >= 2^16 */
    if (ok) {
        BN_free(e);
        return 0;
    }
    char *text = NULL;
    if (BN_num_bits(e) > 64) {
        er_validation_error(st, "certificate",
                            "holds an RSA key with a %d-bit %s public exponent; an odd exponent of at "
                            "least %d is needed",
                            BN_num_bits(e), BN_is_negative(e) ? "negative" : "even", MIN_RSA_EXPONENT);
    }
    else if ((text = BN_bn2dec(e)) == NULL) {
        PyErr_NoMemory();
    }
    else {
        er_validation_error(st, "certificate",
                            "holds an RSA key with public exponent %s; an odd exponent of at least %d "
                            "is needed",
                            text, MIN_RSA_EXPONENT);
    }
    OPENSSL_free(text);
    BN_free(e);
    ERR_clear_error();
    return -1;
}

/* The public key of cert if it may make a Security Credential (new reference);
 * NULL with ValidationError on "certificate" otherwise. */
static EVP_PKEY *
credential_key(DarajaState *st, X509 *cert)
{
    EVP_PKEY *key = X509_get_pubkey(cert);
    if (key == NULL) {
        openssl_validation_error(st, "certificate", "has no usable public key");
        return NULL;
    }
    if (check_credential_key(st, cert, key) < 0) {
        EVP_PKEY_free(key);
        return NULL;
    }
    return key;
}

/* The RSA public key of a certificate, from the cache or parsed and cached.
 * Returns a borrowed key; NULL with an exception on error. */
static EVP_PKEY *
cached_rsa_key(DarajaState *st, const unsigned char *data, size_t len)
{
    unsigned char digest[32];
    if (cr_sha256(st, data, len, digest) < 0) {
        return NULL;
    }
    for (int i = 0; i < DR_KEY_CACHE_SLOTS; i++) {
        if (st->keys[i].key != NULL && CRYPTO_memcmp(st->keys[i].digest, digest, 32) == 0) {
            return st->keys[i].key;
        }
    }
    X509 *cert = parse_certificate(st, data, len);
    if (cert == NULL) {
        return NULL;
    }
    EVP_PKEY *key = credential_key(st, cert);
    X509_free(cert);
    if (key == NULL) {
        return NULL;
    }
    KeySlot *slot = &st->keys[st->next_key_slot++ % DR_KEY_CACHE_SLOTS];
    EVP_PKEY_free(slot->key);
    slot->key = key;
    memcpy(slot->digest, digest, 32);
    return key;
}

void
cr_key_cache_clear(DarajaState *st)
{
    for (int i = 0; i < DR_KEY_CACHE_SLOTS; i++) {
        EVP_PKEY_free(st->keys[i].key);
        st->keys[i].key = NULL;
    }
}

/* RSA PKCS#1 v1.5 encryption of in under key, base64 (new str); NULL on error. */
static PyObject *
encrypt_pkcs1_base64(DarajaState *st, EVP_PKEY *key, const unsigned char *in, size_t len)
{
    unsigned char *cipher = NULL;
    char *encoded = NULL;
    size_t cipher_len = 0, encoded_len = 0;
    PyObject *result = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);

    if (ctx == NULL || EVP_PKEY_encrypt_init(ctx) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1 ||
        EVP_PKEY_encrypt(ctx, NULL, &cipher_len, in, len) != 1) {
        openssl_validation_error(st, "certificate", "cannot encrypt with this key");
        goto done;
    }
    if ((cipher = malloc(cipher_len)) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (EVP_PKEY_encrypt(ctx, cipher, &cipher_len, in, len) != 1) {
        openssl_validation_error(st, "initiator_password", "cannot be encrypted with this key");
        goto done;
    }
    if ((encoded = cr_base64(st, cipher, cipher_len, &encoded_len)) == NULL) {
        goto done;
    }
    result = PyUnicode_FromStringAndSize(encoded, (Py_ssize_t)encoded_len);
done:
    free(encoded);
    free(cipher);
    EVP_PKEY_CTX_free(ctx);
    return result;
}

PyObject *
cr_py_security_credential(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    DarajaState *st = PyModule_GetState(module);
    Py_buffer view = {0};
    const char *password;
    Py_ssize_t password_len;
    PyObject *result = NULL;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError,
                        "security_credential(certificate, initiator_password) takes 2 arguments");
        return NULL;
    }
    if (va_secret(st, "initiator_password", args[1], &password, &password_len) < 0) {
        return NULL;
    }
    if (certificate_bytes(st, args[0], &view) < 0) {
        return NULL;
    }
    EVP_PKEY *key = cached_rsa_key(st, view.buf, (size_t)view.len);
    if (key == NULL) {
        goto done;
    }
    /* PKCS#1 v1.5 leaves room for 11 bytes of padding. */
    if ((size_t)password_len > (size_t)EVP_PKEY_size(key) - 11) {
        er_validation_error(st, "initiator_password", "is too long for this certificate's key");
        goto done;
    }
    result = encrypt_pkcs1_base64(st, key, (const unsigned char *)password, (size_t)password_len);
done:
    PyBuffer_Release(&view);
    return result;
}

/* An X509_NAME as an RFC 2253 string (new str). */
static PyObject *
name_string(X509_NAME *name)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *text;
    if (bio == NULL || X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) < 0) {
        BIO_free(bio);
        ERR_clear_error();
        return PyErr_NoMemory();
    }
    long n = BIO_get_mem_data(bio, &text);
    PyObject *result = PyUnicode_DecodeUTF8(text, n, "replace");
    BIO_free(bio);
    return result;
}

/* An ASN1_TIME as "YYYY-MM-DDTHH:MM:SSZ" (new str), or None if unreadable. */
static PyObject *
time_string(const ASN1_TIME *t)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        ERR_clear_error();
        Py_RETURN_NONE;
    }
    return PyUnicode_FromFormat("%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* The SHA-256 fingerprint as colon-separated uppercase hex (new str). */
static PyObject *
fingerprint_string(DarajaState *st, X509 *cert)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    char hex[EVP_MAX_MD_SIZE * 3 + 1];
    if (X509_digest(cert, EVP_sha256(), md, &n) != 1) {
        openssl_validation_error(st, "certificate", "cannot be fingerprinted");
        return NULL;
    }
    for (unsigned int i = 0; i < n; i++) {
        PyOS_snprintf(hex + 3 * i, 4, "%02X:", md[i]);
    }
    hex[n ? 3 * n - 1 : 0] = '\0';
    return PyUnicode_FromString(hex);
}

PyObject *
cr_py_certificate_info(PyObject *module, PyObject *arg)
{
    DarajaState *st = PyModule_GetState(module);
    Py_buffer view = {0};
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    PyObject *info = NULL;

    if (certificate_bytes(st, arg, &view) < 0) {
        return NULL;
    }
    if ((cert = parse_certificate(st, view.buf, (size_t)view.len)) == NULL) {
        goto done;
    }
    if ((key = credential_key(st, cert)) == NULL) {
        goto done;
    }
    info = Py_BuildValue("{s:N,s:N,s:s,s:i,s:N,s:N,s:N}", "subject", name_string(X509_get_subject_name(cert)),
                         "issuer", name_string(X509_get_issuer_name(cert)), "key_type", "RSA", "key_bits",
                         EVP_PKEY_bits(key), "fingerprint_sha256", fingerprint_string(st, cert),
                         "not_before", time_string(X509_get0_notBefore(cert)), "not_after",
                         time_string(X509_get0_notAfter(cert)));
done:
    EVP_PKEY_free(key);
    X509_free(cert);
    PyBuffer_Release(&view);
    return info;
}

/* ---- CA stores --------------------------------------------------------- */

/*
 * One CA store per CA file and module, shared read-only by every Transport that uses
 * the file: loading the system bundle costs about 800 KiB and 15 ms, once. A store is
 * found again by the identity of its file (device, inode, size, mtime and ctime, so
 * a file replaced or rewritten in place is read again by the next Client) and by
 * its path; the system store by the identity of its default file. X509_STORE is
 * reference counted and safe to use from many threads (OpenSSL locks the lookups
 * of the system directory, the only part that changes after loading); each TLS
 * context takes its own reference. A forked child keeps using the stores: they are
 * memory, not connections. A failed load is never cached.
 */

/* Fill the identity fields of slot from stat(path); all 0 when there is no such file. */
static void
file_identity(const char *path, CaSlot *slot)
{
    struct stat sb;
    if (path == NULL || stat(path, &sb) != 0) {
        slot->dev = slot->ino = slot->size = slot->mtime_ns = slot->ctime_ns = 0;
        return;
    }
    slot->dev = (unsigned long long)sb.st_dev;
    slot->ino = (unsigned long long)sb.st_ino;
    slot->size = (unsigned long long)sb.st_size;
    slot->mtime_ns =
        (unsigned long long)sb.st_mtim.tv_sec * 1000000000ULL + (unsigned long long)sb.st_mtim.tv_nsec;
    slot->ctime_ns =
        (unsigned long long)sb.st_ctim.tv_sec * 1000000000ULL + (unsigned long long)sb.st_ctim.tv_nsec;
}

/* Do a and b describe the same file, unchanged? */
static int
same_identity(const CaSlot *a, const CaSlot *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns &&
           a->ctime_ns == b->ctime_ns;
}

/* The file the system store reads: $SSL_CERT_FILE, or OpenSSL's default. */
static const char *
system_ca_file(void)
{
    const char *env = getenv(X509_get_default_cert_file_env());
    return env != NULL && env[0] != '\0' ? env : X509_get_default_cert_file();
}

/* Read a CA file (or the system store when NULL) into a new X509_STORE. */
static X509_STORE *
read_ca_store(DarajaState *st, const char *ca_file)
{
    X509_STORE *store = X509_STORE_new();
    if (store == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    ERR_clear_error();
    int ok = ca_file != NULL ? X509_STORE_load_locations(store, ca_file, NULL)
                             : X509_STORE_set_default_paths(store);
    if (ok != 1) {
        X509_STORE_free(store);
        openssl_validation_error(st, "ca_file", "cannot load CA certificates");
        return NULL;
    }
    ERR_clear_error();
    return store;
}

/* Keep a reference to store in the cache under `key`'s path and identity: in the slot of
 * the same path (a replaced file), else the next one round the ring. */
static void
cache_ca_store(DarajaState *st, const CaSlot *key, X509_STORE *store)
{
    CaSlot *slot = NULL;
    char *path = strdup(key->path);
    if (path == NULL || X509_STORE_up_ref(store) != 1) {
        free(path);
        return;  /* not cached: the caller's store still works */
    }
    for (int i = 0; i < DR_CA_CACHE_SLOTS && slot == NULL; i++) {
        CaSlot *s = &st->cas[i];
        if (s->path != NULL && s->system == key->system && strcmp(s->path, path) == 0) {
            slot = s;
        }
    }
    if (slot == NULL) {
        slot = &st->cas[st->next_ca_slot++ % DR_CA_CACHE_SLOTS];
    }
    free(slot->path);
    X509_STORE_free(slot->store);
    *slot = *key;
    slot->path = path;
    slot->store = store;
}

X509_STORE *
cr_load_ca_store(DarajaState *st, const char *ca_file)
{
    CaSlot key = {0}, after = {0};
    key.system = ca_file == NULL;
    key.path = (char *)(key.system ? system_ca_file() : ca_file);
    file_identity(key.path, &key);
    for (int i = 0; i < DR_CA_CACHE_SLOTS; i++) {
        CaSlot *slot = &st->cas[i];
        if (slot->store != NULL && slot->system == key.system && same_identity(slot, &key) &&
            (key.ino != 0 || strcmp(slot->path, key.path) == 0) && X509_STORE_up_ref(slot->store) == 1) {
            return slot->store;
        }
    }
    X509_STORE *store = read_ca_store(st, ca_file);
    if (store == NULL) {
        return NULL;
    }
    /* Cached only if the file did not change while it was read. */
    file_identity(key.path, &after);
    if (same_identity(&key, &after)) {
        cache_ca_store(st, &key, store);
    }
    return store;
}

void
cr_ca_cache_clear(DarajaState *st)
{
    for (int i = 0; i < DR_CA_CACHE_SLOTS; i++) {
        free(st->cas[i].path);
        X509_STORE_free(st->cas[i].store);
        memset(&st->cas[i], 0, sizeof(st->cas[i]));
    }
}
