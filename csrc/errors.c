/*
 * errors.c - the exception classes and the helpers that raise them. The ground
 * floor: every other file raises through these, and this file calls none of them.
 */
#include "daraja.h"

#include <stdarg.h>
#include <string.h>

/* Instantiate `type` with `message`, set the given attributes, raise it. */
static void
raise_with_attrs(PyObject *type, PyObject *message, const char *const *names, PyObject *const *values,
                 int count)
{
    PyObject *exc = PyObject_CallOneArg(type, message);
    if (exc == NULL) {
        return;
    }
    for (int i = 0; i < count; i++) {
        if (PyObject_SetAttrString(exc, names[i], values[i]) < 0) {
            Py_DECREF(exc);
            return;
        }
    }
    PyErr_SetObject(type, exc);
    Py_DECREF(exc);
}

int
er_validation_error(DarajaState *st, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PyObject *detail = PyUnicode_FromFormatV(fmt, ap);
    va_end(ap);
    if (detail == NULL) {
        return -1;
    }
    PyObject *message = PyUnicode_FromFormat("%s: %U", field, detail);
    PyObject *name = PyUnicode_FromString(field);
    if (message != NULL && name != NULL) {
        static const char *const names[] = {"field"};
        raise_with_attrs(st->ValidationError, message, names, &name, 1);
    }
    Py_XDECREF(name);
    Py_XDECREF(message);
    Py_DECREF(detail);
    return -1;
}

/* A str for a C string, or None for NULL (new reference). */
static PyObject *
str_or_none(const char *s)
{
    if (s == NULL) {
        Py_RETURN_NONE;
    }
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "replace");
}

PyObject *
er_api_error(DarajaState *st, PyObject *type, long http_status, const char *error_code,
             const char *request_id, const char *message)
{
    static const char *const names[] = {"http_status", "error_code", "request_id", "error_message"};
    PyObject *values[4] = {
        http_status ? PyLong_FromLong(http_status) : Py_NewRef(Py_None),
        str_or_none(error_code),
        str_or_none(request_id),
        str_or_none(message),
    };
    PyObject *text = NULL;
    if (values[0] == NULL || values[1] == NULL || values[2] == NULL || values[3] == NULL) {
        goto done;
    }
    if (error_code != NULL) {
        text = PyUnicode_FromFormat("HTTP %ld, %s: %s", http_status, error_code,
                                    message ? message : "(no message)");
    }
    else {
        text = PyUnicode_FromFormat("HTTP %ld: %s", http_status, message ? message : "(no message)");
    }
    if (text != NULL) {
        raise_with_attrs(type, text, names, values, 4);
    }
done:
    (void)st;
    Py_XDECREF(text);
    for (int i = 0; i < 4; i++) {
        Py_XDECREF(values[i]);
    }
    return NULL;
}

int
er_transport_error(DarajaState *st, PyObject *type, int sent, const char *fmt, ...)
{
    (void)st;
    va_list ap;
    va_start(ap, fmt);
    PyObject *message = PyUnicode_FromFormatV(fmt, ap);
    va_end(ap);
    if (message == NULL) {
        return -1;
    }
    static const char *const names[] = {"sent"};
    PyObject *value = PyBool_FromLong(sent);
    raise_with_attrs(type, message, names, &value, 1);
    Py_DECREF(value);
    Py_DECREF(message);
    return -1;
}

PyObject *
er_take_error(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (value != NULL && traceback != NULL) {
        PyException_SetTraceback(value, traceback);
    }
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return value;
#endif
}

void
er_restore_error(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}


/* ---- the classes -------------------------------------------------------- */

/* Create an exception class with the given attribute defaults set to None. */
static PyObject *
new_exception(PyObject *module, const char *name, const char *doc, PyObject *bases,
              const char *const *attrs)
{
    PyObject *dict = PyDict_New();
    if (dict == NULL) {
        return NULL;
    }
    for (; attrs != NULL && *attrs != NULL; attrs++) {
        if (PyDict_SetItemString(dict, *attrs, Py_None) < 0) {
            Py_DECREF(dict);
            return NULL;
        }
    }
    char qualified[96];
    PyOS_snprintf(qualified, sizeof(qualified), "frappe_mpesa.daraja.%s", name);
    PyObject *type = PyErr_NewExceptionWithDoc(qualified, doc, bases, dict);
    Py_DECREF(dict);
    if (type == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, name, type) < 0) {
        Py_DECREF(type);
        return NULL;
    }
    return type;
}

int
er_add_exceptions(PyObject *module, DarajaState *st)
{
    static const char *const api_attrs[] = {"http_status", "error_code", "request_id", "error_message",
                                            NULL};
    static const char *const field_attrs[] = {"field", NULL};
    static const char *const sent_attrs[] = {"sent", NULL};
    PyObject *bases = NULL;

    st->DarajaError = new_exception(module, "DarajaError", "Base of every error this module raises.",
                                    NULL, NULL);
    if (st->DarajaError == NULL) {
        return -1;
    }
    bases = PyTuple_Pack(2, st->DarajaError, PyExc_ValueError);
    if (bases == NULL) {
        return -1;
    }
    st->ValidationError = new_exception(module, "ValidationError",
                                        "Bad input, refused before any network I/O; `field` names it.",
                                        bases, field_attrs);
    Py_DECREF(bases);
    if (st->ValidationError == NULL) {
        return -1;
    }
    st->AuthError = new_exception(module, "AuthError", "Daraja refused the token request.",
                                  st->DarajaError, api_attrs);
    st->APIError = new_exception(module, "APIError",
                                 "Daraja answered with an error: http_status, error_code, request_id.",
                                 st->DarajaError, api_attrs);
    if (st->AuthError == NULL || st->APIError == NULL) {
        return -1;
    }
    st->TransportError = new_exception(module, "TransportError",
                                       "The request did not complete; `sent` says whether it may have "
                                       "reached Daraja.",
                                       st->DarajaError, sent_attrs);
    if (st->TransportError == NULL) {
        return -1;
    }
    st->TimeoutError = new_exception(module, "TimeoutError", "The request ran out of time.",
                                     st->TransportError, NULL);
    st->TLSError = new_exception(module, "TLSError", "The TLS connection could not be verified.",
                                 st->TransportError, NULL);
    return st->TimeoutError == NULL || st->TLSError == NULL ? -1 : 0;
}

