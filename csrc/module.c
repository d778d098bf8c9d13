/*
 * module.c - the _daraja module: multi-phase init with per-module state, the
 * Client type and the module-level functions. It glues; nothing calls up into it.
 */
#include "daraja.h"

#include <math.h>
#include <string.h>

static struct PyModuleDef daraja_module;

static const char *const ENVIRONMENTS[] = {"sandbox", "production", NULL};
static const char *const ENVIRONMENT_URLS[] = {
    "https://sandbox.safaricom.co.ke",
    "https://api.safaricom.co.ke",
};

static inline DarajaState *
get_state(PyObject *module)
{
    return (DarajaState *)PyModule_GetState(module);
}

/* ---- Client ------------------------------------------------------------ */

/* A heap copy of a Python str's UTF-8; NULL with an exception on error. */
static char *
copy_utf8(PyObject *s)
{
    Py_ssize_t n;
    const char *p = PyUnicode_AsUTF8AndSize(s, &n);
    if (p == NULL) {
        return NULL;
    }
    char *copy = PyMem_Malloc((size_t)n + 1);
    if (copy == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(copy, p, (size_t)n + 1);
    return copy;
}

/* Check base_url: https only, a host, no whitespace; return a copy without trailing '/'. */
static char *
checked_base_url(DarajaState *st, PyObject *v)
{
    const char *url;
    Py_ssize_t n;
    if (va_text(st, "base_url", v, 9, 2048, &url, &n) < 0) {
        return NULL;
    }
    if (PyOS_strnicmp(url, "https://", 8) != 0) {
        er_validation_error(st, "base_url", "must start with https:// (TLS is never turned off)");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (url[i] == ' ' || url[i] == '\t' || url[i] == '?' || url[i] == '#' || url[i] == '@') {
            er_validation_error(st, "base_url", "must be a plain https://host[:port][/path] URL");
            return NULL;
        }
    }
    while (n > 8 && url[n - 1] == '/') {
        n--;
    }
    if (n == 8 || url[8] == '/') {
        er_validation_error(st, "base_url", "has no host");
        return NULL;
    }
    char *copy = PyMem_Malloc((size_t)n + 1);
    if (copy == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(copy, url, (size_t)n);
    copy[n] = '\0';
    return copy;
}

/* Check that token_store has callable load() and store(). */
static int
check_token_store(DarajaState *st, PyObject *store)
{
    static const char *const methods[] = {"load", "store"};
    for (int i = 0; i < 2; i++) {
        PyObject *m = PyObject_GetAttrString(store, methods[i]);
        int ok = m != NULL && PyCallable_Check(m);
        Py_XDECREF(m);
        if (!ok) {
            PyErr_Clear();
            return er_validation_error(st, "token_store", "must have callable load() and store() methods");
        }
    }
    return 0;
}

/* A number of seconds from an int or float (never a bool) into *out; ValidationError naming
 * field for anything else, including ints too large for a double. */
static int
seconds_arg(DarajaState *st, const char *field, PyObject *v, double *out)
{
    if (PyBool_Check(v) || !(PyLong_Check(v) || PyFloat_Check(v))) {
        return er_validation_error(st, field, "must be a number of seconds, not %s", Py_TYPE(v)->tp_name);
    }
    *out = PyLong_Check(v) ? PyLong_AsDouble(v) : PyFloat_AS_DOUBLE(v);
    if (*out == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        *out = INFINITY;  /* too large for a double: out of every range below */
    }
    return 0;
}

static PyObject *
client_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"consumer_key", "consumer_secret", "environment", "base_url", "ca_file",
                             "timeout", "connect_timeout", "token_store", NULL};
    PyObject *key_obj, *secret_obj, *env_obj = NULL, *base_obj = Py_None, *ca_obj = Py_None;
    PyObject *store = Py_None, *timeout_obj = NULL, *connect_obj = NULL;
    double timeout = 30.0, connect_timeout;  /* default: 5 s, or timeout if shorter */
    PyObject *ca_path = NULL;
    const char *key, *secret, *environment;
    Py_ssize_t key_len, secret_len;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|$OOOOOO:Client", kwlist, &key_obj, &secret_obj,
                                     &env_obj, &base_obj, &ca_obj, &timeout_obj, &connect_obj, &store)) {
        return NULL;
    }
    PyObject *module = PyType_GetModule(type);
    if (module == NULL) {
        return NULL;
    }
    DarajaState *st = get_state(module);

    if (va_text(st, "consumer_key", key_obj, 1, 256, &key, &key_len) < 0) {
        return NULL;
    }
    if (memchr(key, ':', (size_t)key_len) != NULL) {
        er_validation_error(st, "consumer_key", "must not contain ':'");
        return NULL;
    }
    if (va_secret(st, "consumer_secret", secret_obj, &secret, &secret_len) < 0) {
        return NULL;
    }
    if (env_obj == NULL) {
        environment = ENVIRONMENTS[0];
    }
    else if (va_choice(st, "environment", env_obj, ENVIRONMENTS, &environment) < 0) {
        return NULL;
    }
    if (timeout_obj != NULL && seconds_arg(st, "timeout", timeout_obj, &timeout) < 0) {
        return NULL;
    }
    if (!(timeout > 0.0 && timeout <= 600.0)) {
        er_validation_error(st, "timeout", "must be between 0 and 600 seconds");
        return NULL;
    }
    if (connect_obj == NULL) {
        connect_timeout = timeout < 5.0 ? timeout : 5.0;
    }
    else if (seconds_arg(st, "connect_timeout", connect_obj, &connect_timeout) < 0) {
        return NULL;
    }
    if (!(connect_timeout > 0.0 && connect_timeout <= timeout)) {
        er_validation_error(st, "connect_timeout", "must be positive and at most timeout");
        return NULL;
    }
    if (store != Py_None && check_token_store(st, store) < 0) {
        return NULL;
    }
    if (ca_obj != Py_None && !PyUnicode_FSConverter(ca_obj, &ca_path)) {
        PyErr_Clear();
        er_validation_error(st, "ca_file", "must be a path");
        return NULL;
    }

    DarajaClient *self = (DarajaClient *)type->tp_alloc(type, 0);
    if (self == NULL) {
        goto error;
    }
    self->module = Py_NewRef(module);
    self->timeout = timeout;
    self->environment = environment == ENVIRONMENTS[0] ? "sandbox" : "production";
    if (base_obj != Py_None) {
        self->base_url = checked_base_url(st, base_obj);
    }
    else {
        const char *url = ENVIRONMENT_URLS[environment == ENVIRONMENTS[0] ? 0 : 1];
        self->base_url = PyMem_Malloc(strlen(url) + 1);
        if (self->base_url == NULL) {
            PyErr_NoMemory();
        }
        else {
            strcpy(self->base_url, url);
        }
    }
    if (self->base_url == NULL) {
        goto error;
    }
    if ((self->consumer_key = copy_utf8(key_obj)) == NULL) {
        goto error;
    }
    if (cr_secret_set(&self->consumer_secret, secret, (size_t)secret_len) < 0) {
        goto error;
    }
    self->transport = tr_new(st, ca_path ? PyBytes_AS_STRING(ca_path) : NULL, connect_timeout, timeout);
    if (self->transport == NULL) {
        goto error;
    }
    self->token = tc_entry(&st->tokens, self->base_url, self->consumer_key, &self->consumer_secret);
    if (self->token == NULL) {
        goto error;
    }
    if (store != Py_None) {
        self->token_store = Py_NewRef(store);
    }
    Py_XDECREF(ca_path);
    return (PyObject *)self;

error:
    Py_XDECREF(ca_path);
    Py_XDECREF(self);
    return NULL;
}

static int
client_traverse(DarajaClient *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->module);
    Py_VISIT(self->token_store);
    return 0;
}

static int
client_clear(DarajaClient *self)
{
    Py_CLEAR(self->token_store);
    Py_CLEAR(self->module);
    return 0;
}

static void
client_dealloc(DarajaClient *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->transport != NULL) {
        tr_free(self->transport);
    }
    cr_secret_free(&self->consumer_secret);
    PyMem_Free(self->consumer_key);
    PyMem_Free(self->base_url);
    client_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
client_repr(DarajaClient *self)
{
    /* Only a prefix of the consumer key: enough to tell clients apart. */
    char key[8] = {0};
    strncpy(key, self->consumer_key, 4);
    return PyUnicode_FromFormat("<Client environment='%s' base_url='%s' consumer_key='%s...'>",
                                self->environment, self->base_url, key);
}

static PyObject *
client_access_token(DarajaClient *self, PyObject *Py_UNUSED(ignored))
{
    SecretBuf token = {0};
    if (cl_access_token(self, &token) < 0) {
        return NULL;
    }
    PyObject *result = PyUnicode_FromStringAndSize(token.data, (Py_ssize_t)token.len);
    cr_secret_free(&token);
    return result;
}

static PyObject *
client_get_environment(DarajaClient *self, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(self->environment);
}

static PyObject *
client_get_base_url(DarajaClient *self, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(self->base_url);
}

static PyObject *
client_get_timeout(DarajaClient *self, void *Py_UNUSED(closure))
{
    return PyFloat_FromDouble(self->timeout);
}

static PyMethodDef client_methods[] = {
    {"access_token", (PyCFunction)client_access_token, METH_NOARGS,
     "access_token() -> str\n\nA valid OAuth token: cached, renewed before expiry, one request "
     "at a time."},
    {"stk_push", (PyCFunction)(void (*)(void))ex_py_stk_push, METH_VARARGS | METH_KEYWORDS,
     "stk_push(*, shortcode, passkey, amount, phone, callback_url, account_reference, description, "
     "transaction_type='CustomerPayBillOnline', party_b=None, timestamp=None) -> dict\n\n"
     "Send an M-Pesa Express (STK push) prompt. Never resent automatically."},
    {"stk_query", (PyCFunction)(void (*)(void))ex_py_stk_query, METH_VARARGS | METH_KEYWORDS,
     "stk_query(*, shortcode, passkey, checkout_request_id, timestamp=None) -> dict\n\n"
     "Ask Daraja for the result of an STK push."},
    {"c2b_register_urls", (PyCFunction)(void (*)(void))c2b_py_register_urls, METH_VARARGS | METH_KEYWORDS,
     "c2b_register_urls(*, shortcode, confirmation_url, validation_url, response_type='Completed') -> dict\n\n"
     "Register the C2B URLs: v2 first, v1 when the app lacks the v2 product; 'api_version' says which."},
    {"c2b_simulate", (PyCFunction)(void (*)(void))c2b_py_simulate, METH_VARARGS | METH_KEYWORDS,
     "c2b_simulate(*, shortcode, amount, phone, bill_ref_number=None, command_id='CustomerPayBillOnline')"
     " -> dict\n\nSimulate a customer payment (sandbox only). Never resent automatically."},
    {"b2c_payment", (PyCFunction)(void (*)(void))pm_py_b2c_payment, METH_VARARGS | METH_KEYWORDS,
     "b2c_payment(*, initiator_name, security_credential, command_id, amount, party_a, phone, remarks, "
     "result_url, queue_timeout_url, occasion=None, originator_conversation_id=None) -> dict\n\n"
     "Pay a phone from the business (v3). The answer always holds the OriginatorConversationID. "
     "Never resent automatically."},
    {"b2b_payment", (PyCFunction)(void (*)(void))pm_py_b2b_payment, METH_VARARGS | METH_KEYWORDS,
     "b2b_payment(*, initiator_name, security_credential, command_id, amount, party_a, party_b, remarks, "
     "result_url, queue_timeout_url, account_reference=None, requester=None, occasion=None) -> dict\n\n"
     "Pay another business. Never resent automatically."},
    {"tax_remittance", (PyCFunction)(void (*)(void))pm_py_tax_remittance, METH_VARARGS | METH_KEYWORDS,
     "tax_remittance(*, initiator_name, security_credential, amount, party_a, prn, remarks, result_url, "
     "queue_timeout_url) -> dict\n\nPay tax to KRA (572572) against a PRN. Never resent automatically."},
    {"reversal", (PyCFunction)(void (*)(void))pm_py_reversal, METH_VARARGS | METH_KEYWORDS,
     "reversal(*, initiator_name, security_credential, transaction_id, amount, receiver_party, remarks, "
     "result_url, queue_timeout_url, receiver_identifier_type='11', occasion=None) -> dict\n\n"
     "Reverse a transaction. Never resent automatically."},
    {"transaction_status", (PyCFunction)(void (*)(void))iq_py_transaction_status, METH_VARARGS | METH_KEYWORDS,
     "transaction_status(*, initiator_name, security_credential, party_a, result_url, queue_timeout_url, "
     "transaction_id=None, original_conversation_id=None, identifier_type='4', remarks=..., occasion=None)"
     " -> dict\n\nAsk for a transaction's status; the result comes to result_url."},
    {"account_balance", (PyCFunction)(void (*)(void))iq_py_account_balance, METH_VARARGS | METH_KEYWORDS,
     "account_balance(*, initiator_name, security_credential, party_a, result_url, queue_timeout_url, "
     "identifier_type='4', remarks=...) -> dict\n\nAsk for the balances; the result comes to result_url."},
    {"dynamic_qr", (PyCFunction)(void (*)(void))qr_py_dynamic_qr, METH_VARARGS | METH_KEYWORDS,
     "dynamic_qr(*, merchant_name, ref_no, amount, trx_code, cpi, size='300') -> dict\n\n"
     "Make a payment QR code: Daraja's answer plus 'png', the decoded image."},
    {"pull_register", (PyCFunction)(void (*)(void))c2b_py_pull_register, METH_VARARGS | METH_KEYWORDS,
     "pull_register(*, shortcode, nominated_number, callback_url) -> dict\n\n"
     "Register a shortcode for the pull API (once, in production). nominated_number is any\n"
     "phone form; it is sent as 07XXXXXXXX, as Daraja's sample request shows."},
    {"pull_query", (PyCFunction)(void (*)(void))c2b_py_pull_query, METH_VARARGS | METH_KEYWORDS,
     "pull_query(*, shortcode, start_date, end_date, offset=0) -> dict\n\n"
     "Fetch the C2B transactions of a window within the last 48 hours. Dates are aware\n"
     "datetimes (sent in Nairobi time) or 'YYYY-MM-DD HH:MM:SS' text in Nairobi time; naive\n"
     "datetimes are refused."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef client_getset[] = {
    {"environment", (getter)client_get_environment, NULL, "'sandbox' or 'production'", NULL},
    {"base_url", (getter)client_get_base_url, NULL, "the Daraja host requests go to", NULL},
    {"timeout", (getter)client_get_timeout, NULL, "total time allowed per request, seconds", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot client_slots[] = {
    {Py_tp_doc, "Client(consumer_key, consumer_secret, *, environment='sandbox', base_url=None, "
                "ca_file=None, timeout=30.0, connect_timeout=5.0, token_store=None)\n\n"
                "A Daraja API client. Safe to share between threads. timeout and connect_timeout are\n"
                "seconds as an int or float (not a bool): 0 < connect_timeout <= timeout <= 600."},
    {Py_tp_new, client_new},
    {Py_tp_dealloc, client_dealloc},
    {Py_tp_traverse, client_traverse},
    {Py_tp_clear, client_clear},
    {Py_tp_repr, client_repr},
    {Py_tp_methods, client_methods},
    {Py_tp_getset, client_getset},
    {0, NULL},
};

static PyType_Spec client_spec = {
    .name = "frappe_mpesa.daraja.Client",
    .basicsize = sizeof(DarajaClient),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = client_slots,
};

/* ---- module functions -------------------------------------------------- */

static PyMethodDef module_functions[] = {
    {"security_credential", (PyCFunction)(void (*)(void))cr_py_security_credential, METH_FASTCALL,
     "security_credential(certificate, initiator_password) -> str\n\n"
     "RSA PKCS#1 v1.5 encryption of the password under the certificate's key, base64."},
    {"certificate_info", (PyCFunction)cr_py_certificate_info, METH_O,
     "certificate_info(certificate) -> dict\n\nSubject, issuer, key type and size, SHA-256 "
     "fingerprint and validity of a PEM or DER certificate whose key can make a Security "
     "Credential (RSA, at least 2048 bits, odd exponent of at least 65537); ValidationError otherwise."},
    {"stk_password", (PyCFunction)(void (*)(void))ex_py_stk_password, METH_FASTCALL,
     "stk_password(shortcode, passkey, timestamp) -> str\n\nbase64(shortcode + passkey + timestamp)."},
    {"timestamp", (PyCFunction)va_py_timestamp, METH_NOARGS,
     "timestamp() -> str\n\nNairobi's time now as YYYYMMDDHHmmss."},
    {"normalize_phone", (PyCFunction)va_py_normalize_phone, METH_O,
     "normalize_phone(value) -> str\n\nA Kenyan mobile number as 2547XXXXXXXX or 2541XXXXXXXX, from\n"
     "07XXXXXXXX, 01XXXXXXXX, 7XXXXXXXX, 1XXXXXXXX, +254... or 254... (spaces and dashes ignored;\n"
     "an int must be non-negative)."},
    {NULL, NULL, 0, NULL},
};

/* ---- exec slots: one per concern --------------------------------------- */

static int
exec_exceptions(PyObject *module)
{
    return er_add_exceptions(module, get_state(module));
}

static int
exec_client_type(PyObject *module)
{
    DarajaState *st = get_state(module);
    st->ClientType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &client_spec, NULL);
    if (st->ClientType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->ClientType);
}

static int
exec_libraries(PyObject *module)
{
    /* Before any other use of libcurl: its own copies of the Authorization header and of
     * request bodies are wiped when it frees them. If another library in this process
     * initialised libcurl first, its allocator stays (libcurl takes one per process):
     * say so, once, and in libcurl_wipes_freed_memory. */
    int wipes = cr_curl_global_init();
    if (wipes < 0) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "libcurl_wipes_freed_memory", wipes ? Py_True : Py_False) < 0) {
        return -1;
    }
    if (!wipes && PyErr_WarnEx(PyExc_RuntimeWarning,
                               "libcurl was initialised before frappe_mpesa._daraja: the buffers it "
                               "frees (request headers and bodies) are not wiped",
                               1) < 0) {
        return -1;
    }
    const curl_version_info_data *info = curl_version_info(CURLVERSION_NOW);
    return PyModule_AddStringConstant(module, "libcurl_version", info->version) < 0 ||
                   PyModule_AddStringConstant(module, "openssl_version",
                                              OpenSSL_version(OPENSSL_VERSION)) < 0
               ? -1
               : 0;
}

static int
exec_token_cache(PyObject *module)
{
    return tc_init(&get_state(module)->tokens);
}

/* Set *out to module_name.attr (new reference); -1 with an exception on error. */
static int
import_attr(const char *module_name, const char *attr, PyObject **out)
{
    PyObject *m = PyImport_ImportModule(module_name);
    if (m == NULL) {
        return -1;
    }
    *out = PyObject_GetAttrString(m, attr);
    Py_DECREF(m);
    return *out == NULL ? -1 : 0;
}

/* Cache the Decimal and datetime types and Nairobi's tzinfo, then add callbacks.c's functions. */
static int
exec_callbacks(PyObject *module)
{
    DarajaState *st = get_state(module);
    PyObject *timezone = NULL, *timedelta = NULL, *offset = NULL;
    int rc = -1;

    if (import_attr("decimal", "Decimal", &st->Decimal) < 0 ||
        import_attr("datetime", "datetime", &st->datetime) < 0 ||
        import_attr("datetime", "timezone", &timezone) < 0 ||
        import_attr("datetime", "timedelta", &timedelta) < 0) {
        goto done;
    }
    /* Nairobi keeps UTC+3 all year: a fixed offset is exact, no tz database needed. */
    if ((offset = PyObject_CallFunction(timedelta, "iii", 0, 3 * 3600, 0)) == NULL ||
        (st->nairobi_tz = PyObject_CallFunction(timezone, "Os", offset, "EAT")) == NULL) {
        goto done;
    }
    rc = cb_add_functions(module);
done:
    Py_XDECREF(offset);
    Py_XDECREF(timedelta);
    Py_XDECREF(timezone);
    return rc;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, exec_exceptions},
    {Py_mod_exec, exec_client_type},
    {Py_mod_exec, exec_libraries},
    {Py_mod_exec, exec_token_cache},
    {Py_mod_exec, exec_callbacks},
    {0, NULL},
};

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    DarajaState *st = get_state(module);
    Py_VISIT(st->DarajaError);
    Py_VISIT(st->ValidationError);
    Py_VISIT(st->AuthError);
    Py_VISIT(st->APIError);
    Py_VISIT(st->TransportError);
    Py_VISIT(st->TimeoutError);
    Py_VISIT(st->TLSError);
    Py_VISIT(st->ClientType);
    Py_VISIT(st->Decimal);
    Py_VISIT(st->datetime);
    Py_VISIT(st->nairobi_tz);
    Py_VISIT(st->cb_cache);
    return 0;
}

static int
module_clear(PyObject *module)
{
    DarajaState *st = get_state(module);
    Py_CLEAR(st->DarajaError);
    Py_CLEAR(st->ValidationError);
    Py_CLEAR(st->AuthError);
    Py_CLEAR(st->APIError);
    Py_CLEAR(st->TransportError);
    Py_CLEAR(st->TimeoutError);
    Py_CLEAR(st->TLSError);
    Py_CLEAR(st->ClientType);
    Py_CLEAR(st->Decimal);
    Py_CLEAR(st->datetime);
    Py_CLEAR(st->nairobi_tz);
    Py_CLEAR(st->cb_cache);
    jr_clear_keys(st);
    return 0;
}

static void
module_free(void *module)
{
    DarajaState *st = get_state((PyObject *)module);
    module_clear((PyObject *)module);
    tc_clear(&st->tokens);
    cr_key_cache_clear(st);
    cr_ca_cache_clear(st);
}

static struct PyModuleDef daraja_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "frappe_mpesa._daraja",
    .m_doc = "The C core of frappe_mpesa: Daraja transport, OAuth token cache and credentials.\n"
             "Import it through frappe_mpesa.daraja.",
    .m_size = sizeof(DarajaState),
    .m_methods = module_functions,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__daraja(void)
{
    return PyModuleDef_Init(&daraja_module);
}
