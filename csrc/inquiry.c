/*
 * inquiry.c - read-only initiator APIs: the status of a transaction and the
 * account balance. Their answers come later, to ResultURL; the calls themselves
 * may be retried.
 */
#include "daraja.h"

#include <string.h>

static const char *const IDENTIFIER_TYPES[] = {"4", "2", "1", NULL};  /* shortcode, till, MSISDN */

/* A transaction is named by its receipt or its conversation; PartyA is a phone
 * for IdentifierType 1 and a shortcode or till otherwise. */
static int
check_status(DarajaClient *c, const RqApi *api, RqValue *values)
{
    DarajaState *st = dr_client_state(c);
    RqValue *party = rq_value(api, values, "party_a");
    char buf[16];
    if (!rq_value(api, values, "transaction_id")->present &&
        !rq_value(api, values, "original_conversation_id")->present) {
        return er_validation_error(st, "transaction_id",
                                   "or original_conversation_id is required to name the transaction");
    }
    if (strcmp(rq_value(api, values, "identifier_type")->text, "1") == 0) {
        if (va_phone(st, "party_a", party->object, buf) < 0) {
            return -1;
        }
    }
    else if (va_shortcode(st, "party_a", party->object, buf) < 0) {
        return -1;
    }
    strcpy(party->buf, buf);
    party->text = party->buf;
    party->len = (Py_ssize_t)strlen(buf);
    return 0;
}

static const RqField STATUS_FIELDS[] = {
    RQ_INITIATOR("Initiator"),
    RQ_FIELD(NULL, "CommandID", RQ_CONST, .fixed = "TransactionStatusQuery"),
    RQ_FIELD("transaction_id", "TransactionID", RQ_ID, .max = 20),
    RQ_FIELD("original_conversation_id", "OriginalConversationID", RQ_ID),
    RQ_FIELD("party_a", "PartyA", RQ_RAW, .flags = RQ_REQUIRED),
    RQ_FIELD("identifier_type", "IdentifierType", RQ_CHOICE, .choices = IDENTIFIER_TYPES, .fixed = "4"),
    RQ_RESULT_URLS,
    RQ_REMARKS("Transaction status query"),
    RQ_FIELD("occasion", "Occasion", RQ_TEXT, .max = 100),
    RQ_TABLE_END,
};

static const RqApi STATUS = {"transaction_status", "/mpesa/transactionstatus/v1/query", 1, STATUS_FIELDS,
                             check_status, NULL};

static const RqField BALANCE_FIELDS[] = {
    RQ_INITIATOR("Initiator"),
    RQ_FIELD(NULL, "CommandID", RQ_CONST, .fixed = "AccountBalance"),
    RQ_FIELD("party_a", "PartyA", RQ_SHORTCODE, .flags = RQ_REQUIRED),
    RQ_FIELD("identifier_type", "IdentifierType", RQ_CHOICE, .choices = IDENTIFIER_TYPES, .fixed = "4"),
    RQ_REMARKS("Account balance query"),
    RQ_RESULT_URLS,
    RQ_TABLE_END,
};

static const RqApi BALANCE = {"account_balance", "/mpesa/accountbalance/v1/query", 1, BALANCE_FIELDS, NULL,
                              NULL};

PyObject *
iq_py_transaction_status(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return rq_call(self, &STATUS, args, kwargs);
}

PyObject *
iq_py_account_balance(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return rq_call(self, &BALANCE, args, kwargs);
}
