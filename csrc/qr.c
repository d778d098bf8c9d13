/*
 * qr.c - dynamic M-Pesa QR codes. Daraja answers with the PNG as base64; the
 * answer also carries the decoded bytes under "png".
 */
#include "daraja.h"

#include <stdlib.h>
#include <string.h>

static const char *const TRX_CODES[] = {"BG", "WA", "PB", "SM", "SB", NULL};
static const unsigned char PNG_SIGNATURE[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

static const RqField QR_FIELDS[] = {
    RQ_FIELD("merchant_name", "MerchantName", RQ_TEXT, .flags = RQ_REQUIRED, .min = 1, .max = 100),
    RQ_FIELD("ref_no", "RefNo", RQ_TEXT, .flags = RQ_REQUIRED, .min = 1, .max = 100),
    RQ_FIELD("amount", "Amount", RQ_AMOUNT, .flags = RQ_REQUIRED),
    RQ_FIELD("trx_code", "TrxCode", RQ_CHOICE, .flags = RQ_REQUIRED, .choices = TRX_CODES),
    RQ_FIELD("cpi", "CPI", RQ_DIGITS, .flags = RQ_REQUIRED, .min = 5, .max = 12),
    RQ_FIELD("size", "Size", RQ_DIGITS, .min = 2, .max = 4, .fixed = "300"),
    RQ_TABLE_END,
};

static const RqApi QR = {"dynamic_qr", "/mpesa/qrcode/v1/generate", 1, QR_FIELDS, NULL, NULL};

/* Decode the answer's QRCode into "png" (bytes); an APIError if it is not a PNG. */
static int
add_png(DarajaState *st, PyObject *answer)
{
    PyObject *code = PyDict_GetItemString(answer, "QRCode");
    const char *text;
    Py_ssize_t len;
    if (code == NULL || !PyUnicode_Check(code) || (text = PyUnicode_AsUTF8AndSize(code, &len)) == NULL) {
        PyErr_Clear();
        er_api_error(st, st->APIError, 200, NULL, NULL, "the QR answer has no QRCode");
        return -1;
    }
    size_t n = 0;
    unsigned char *png = cr_base64_decode(st, "QRCode", text, (size_t)len, &n);
    if (png == NULL) {
        if (PyErr_ExceptionMatches(st->ValidationError)) {
            PyErr_Clear();
            er_api_error(st, st->APIError, 200, NULL, NULL, "the QRCode is not valid base64");
        }
        return -1;
    }
    int rc = -1;
    if (n < sizeof(PNG_SIGNATURE) || memcmp(png, PNG_SIGNATURE, sizeof(PNG_SIGNATURE)) != 0) {
        er_api_error(st, st->APIError, 200, NULL, NULL, "the QRCode is not a PNG image");
    }
    else {
        PyObject *bytes = PyBytes_FromStringAndSize((const char *)png, (Py_ssize_t)n);
        rc = bytes == NULL ? -1 : PyDict_SetItemString(answer, "png", bytes);
        Py_XDECREF(bytes);
    }
    free(png);
    return rc;
}

PyObject *
qr_py_dynamic_qr(PyObject *self, PyObject *args, PyObject *kwargs)
{
    PyObject *answer = rq_call(self, &QR, args, kwargs);
    if (answer != NULL && add_png(dr_client_state((DarajaClient *)self), answer) < 0) {
        Py_CLEAR(answer);
    }
    return answer;
}
