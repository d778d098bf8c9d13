# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

import frappe
from frappe.model.document import Document

PAYEE = "B2C Disbursement Payee"
B2C = "B2C Payment Disbursement"
# Daraja's answers about one payee, and when they were asked for: written by the app only.
DARAJA_FIELDS = (
	"originator_conversation_id",
	"conversation_id",
	"transaction_receipt",
	"receiver_name",
	"result_code",
	"result_desc",
	"request_sent_on",
	"completed_on",
	"last_status_query",
)


class B2CDisbursementPayee(Document):
	"""One payee of a B2C batch, with its own OriginatorConversationID and status (see the parent)."""


def insert_row(batch_name, idx, docstatus, source, fields, seal=None, **values):
	"""Insert a payee row of batch ``batch_name`` directly (the app's own write, no controller):
	``fields`` copied from ``source`` (a row or record), then ``values``; ``seal(row)``, when
	given, makes its approval digest once it has its name. Returns the row."""
	row = frappe.get_doc(
		{
			"doctype": PAYEE,
			"parent": batch_name,
			"parenttype": B2C,
			"parentfield": "payees",
			"idx": idx,
			"docstatus": docstatus,
			**{fieldname: source.get(fieldname) for fieldname in fields},
			**values,
		}
	)
	if not row.name:
		row.set_new_name()
	if seal is not None:
		row.approval_digest = seal(row)
	row.db_insert()
	return row
