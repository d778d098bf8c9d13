/*
 * payments.c - money out of the business: B2C payouts, B2B payments, tax
 * remittance to KRA and reversals. Every one moves money, so none is ever resent
 * once it may have reached Daraja; its result comes later, to ResultURL.
 */
#include "daraja.h"

#include <string.h>

static const char *const B2C_COMMANDS[] = {"SalaryPayment", "BusinessPayment", "PromotionPayment", NULL};
static const char *const B2B_COMMANDS[] = {"BusinessPayBill", "BusinessBuyGoods", "BusinessPayToBulk", NULL};
static const char *const RECEIVER_TYPES[] = {"11", "4", "2", "1", NULL};

/* B2C v3: the OriginatorConversationID is ours (a UUID4 unless given) and always
 * comes back in the answer, so a caller can store it before anything else. */
static const RqField B2C_FIELDS[] = {
    RQ_FIELD("originator_conversation_id", "OriginatorConversationID", RQ_UUID, .flags = RQ_ECHO),
    RQ_INITIATOR("InitiatorName"),
    RQ_FIELD("command_id", "CommandID", RQ_CHOICE, .flags = RQ_REQUIRED, .choices = B2C_COMMANDS),
    RQ_FIELD("amount", "Amount", RQ_AMOUNT, .flags = RQ_REQUIRED),
    RQ_FIELD("party_a", "PartyA", RQ_SHORTCODE, .flags = RQ_REQUIRED),
    RQ_FIELD("phone", "PartyB", RQ_PHONE, .flags = RQ_REQUIRED),
    RQ_FIELD("remarks", "Remarks", RQ_TEXT, .flags = RQ_REQUIRED, .min = 2, .max = 100),
    RQ_RESULT_URLS,
    RQ_FIELD("occasion", "Occassion", RQ_TEXT, .max = 100),  /* Daraja's spelling */
    RQ_TABLE_END,
};

static const RqApi B2C = {"b2c_payment", "/mpesa/b2c/v3/paymentrequest", 0, B2C_FIELDS, NULL, NULL};

/* Paying a paybill needs the account to credit there. */
static int
check_b2b(DarajaClient *c, const RqApi *api, RqValue *values)
{
    if (strcmp(rq_value(api, values, "command_id")->text, "BusinessPayBill") == 0 &&
        !rq_value(api, values, "account_reference")->present) {
        return er_validation_error(dr_client_state(c), "account_reference",
                                   "is required for BusinessPayBill: the account at the paybill");
    }
    return 0;
}

static const RqField B2B_FIELDS[] = {
    RQ_INITIATOR("Initiator"),
    RQ_FIELD("command_id", "CommandID", RQ_CHOICE, .flags = RQ_REQUIRED, .choices = B2B_COMMANDS),
    RQ_FIELD(NULL, "SenderIdentifierType", RQ_CONST, .fixed = "4"),
    RQ_FIELD(NULL, "RecieverIdentifierType", RQ_CONST, .fixed = "4"),  /* Daraja's spelling */
    RQ_FIELD("amount", "Amount", RQ_AMOUNT, .flags = RQ_REQUIRED),
    RQ_FIELD("party_a", "PartyA", RQ_SHORTCODE, .flags = RQ_REQUIRED),
    RQ_FIELD("party_b", "PartyB", RQ_SHORTCODE, .flags = RQ_REQUIRED),
    RQ_FIELD("account_reference", "AccountReference", RQ_TEXT, .min = 1, .max = 13),
    RQ_FIELD("requester", "Requester", RQ_PHONE),
    RQ_FIELD("remarks", "Remarks", RQ_TEXT, .flags = RQ_REQUIRED, .min = 2, .max = 100),
    RQ_RESULT_URLS,
    RQ_FIELD("occasion", "Occassion", RQ_TEXT, .max = 100),
    RQ_TABLE_END,
};

static const RqApi B2B = {"b2b_payment", "/mpesa/b2b/v1/paymentrequest", 0, B2B_FIELDS, check_b2b, NULL};

/* Tax to KRA: always PayTaxToKRA to 572572, with the PRN as the account. */
static const RqField TAX_FIELDS[] = {
    RQ_INITIATOR("Initiator"),
    RQ_FIELD(NULL, "CommandID", RQ_CONST, .fixed = "PayTaxToKRA"),
    RQ_FIELD(NULL, "SenderIdentifierType", RQ_CONST, .fixed = "4"),
    RQ_FIELD(NULL, "RecieverIdentifierType", RQ_CONST, .fixed = "4"),
    RQ_FIELD("amount", "Amount", RQ_AMOUNT, .flags = RQ_REQUIRED),
    RQ_FIELD("party_a", "PartyA", RQ_SHORTCODE, .flags = RQ_REQUIRED),
    RQ_FIELD(NULL, "PartyB", RQ_CONST, .fixed = "572572"),
    RQ_FIELD("prn", "AccountReference", RQ_ID, .flags = RQ_REQUIRED, .min = 1, .max = 13),
    RQ_FIELD("remarks", "Remarks", RQ_TEXT, .flags = RQ_REQUIRED, .min = 2, .max = 100),
    RQ_RESULT_URLS,
    RQ_TABLE_END,
};

static const RqApi TAX = {"tax_remittance", "/mpesa/b2b/v1/remittax", 0, TAX_FIELDS, NULL, NULL};

static const RqField REVERSAL_FIELDS[] = {
    RQ_INITIATOR("Initiator"),
    RQ_FIELD(NULL, "CommandID", RQ_CONST, .fixed = "TransactionReversal"),
    RQ_FIELD("transaction_id", "TransactionID", RQ_ID, .flags = RQ_REQUIRED, .max = 20),
    RQ_FIELD("amount", "Amount", RQ_AMOUNT, .flags = RQ_REQUIRED),
    RQ_FIELD("receiver_party", "ReceiverParty", RQ_SHORTCODE, .flags = RQ_REQUIRED),
    RQ_FIELD("receiver_identifier_type", "RecieverIdentifierType", RQ_CHOICE, .choices = RECEIVER_TYPES,
             .fixed = "11"),
    RQ_RESULT_URLS,
    RQ_FIELD("remarks", "Remarks", RQ_TEXT, .flags = RQ_REQUIRED, .min = 2, .max = 100),
    RQ_FIELD("occasion", "Occasion", RQ_TEXT, .max = 100),
    RQ_TABLE_END,
};

static const RqApi REVERSAL = {"reversal", "/mpesa/reversal/v1/request", 0, REVERSAL_FIELDS, NULL, NULL};

PyObject *
pm_py_b2c_payment(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return rq_call(self, &B2C, args, kwargs);
}

PyObject *
pm_py_b2b_payment(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return rq_call(self, &B2B, args, kwargs);
}

PyObject *
pm_py_tax_remittance(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return rq_call(self, &TAX, args, kwargs);
}

PyObject *
pm_py_reversal(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return rq_call(self, &REVERSAL, args, kwargs);
}
