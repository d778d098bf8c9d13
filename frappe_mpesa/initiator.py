"""Requests made with the initiator's credentials (B2C, transaction status, balance, reversal).

Their outcome comes later to the result or timeout callback. Each is recorded before it is sent
and committed, so a callback always finds its record (or is kept until it does); a money-moving
request is never sent twice: the moment of sending is committed first, and a failure after
that is "Unknown", resolved by a Transaction Status query, never by sending again.
"""

import frappe
from frappe import _
from frappe.utils import add_to_date, cint, flt, now_datetime

from frappe_mpesa import records, settings_store, states
from frappe_mpesa.settings_store import DarajaCallError, callback_url, get_settings, outcome_unknown

B2C = records.B2C
INITIATOR = records.INITIATOR

# Initiator request type -> the Client method and how to build its arguments.
METHODS = {
	"Transaction Status": "transaction_status",
	"Account Balance": "account_balance",
	"Reversal": "reversal",
}


def initiator_arguments(settings):
	return {
		"initiator_name": settings.initiator_name,
		"security_credential": settings_store.security_credential(settings),
		"result_url": callback_url(settings, "result"),
		"queue_timeout_url": callback_url(settings, "timeout"),
	}


def start_request(
	settings_name,
	request_type,
	*,
	transaction_id=None,
	original_conversation_id=None,
	amount=None,
	remarks=None,
	reference_doctype=None,
	reference_name=None,
):
	"""Record and send a status, balance or reversal request; returns the record's name.

	Commits: the record must be visible to the callback's request before Daraja can answer.
	"""
	settings = get_settings(settings_name)
	arguments = initiator_arguments(settings)
	party_a = settings_store.initiator_shortcode(settings)
	method = METHODS[request_type]
	if request_type == "Transaction Status":
		arguments.update(
			party_a=party_a,
			transaction_id=transaction_id or None,
			original_conversation_id=original_conversation_id or None,
		)
	elif request_type == "Account Balance":
		arguments.update(party_a=party_a)
	else:
		arguments.update(
			transaction_id=transaction_id,
			amount=amount,
			receiver_party=party_a,
			remarks=remarks or "Reversal",
		)
	if remarks and request_type != "Reversal":
		arguments["remarks"] = remarks

	doc = frappe.get_doc(
		{
			"doctype": INITIATOR,
			"request_type": request_type,
			"mpesa_settings": settings.name,
			"status": "Queued",
			"requested_by": frappe.session.user,
			"transaction_id": transaction_id,
			"original_conversation_id": original_conversation_id,
			"amount": amount,
			"remarks": remarks,
			"reference_doctype": reference_doctype,
			"reference_name": reference_name,
			"request_sent_on": now_datetime(),
		}
	)
	doc.flags.ignore_permissions = True
	doc.insert()
	frappe.db.commit()

	try:
		answer = settings_store.call(settings, method, **arguments)
	except DarajaCallError as error:
		status = "Unknown" if outcome_unknown(error) else "Failed"
		frappe.db.set_value(INITIATOR, doc.name, {"status": status, "error": str(error)})
		frappe.db.commit()
		raise
	ocid = answer.get("OriginatorConversationID") or None
	row = records.lock_row(INITIATOR, "name", doc.name, ["status"])
	values = {
		"originator_conversation_id": ocid,
		"conversation_id": answer.get("ConversationID") or None,
		"result_desc": answer.get("ResponseDescription"),
	}
	if states.can_move(states.INITIATOR, row.status, "Sent"):
		values["status"] = "Sent"
	frappe.db.set_value(INITIATOR, doc.name, values)
	frappe.db.commit()
	if ocid and records.match_unmatched(ocid):
		frappe.db.commit()
	return doc.name


def send_disbursement(name):
	"""Send a submitted, Queued B2C disbursement once (the background job after submit)."""
	row = records.lock_row(
		B2C,
		"name",
		name,
		["name", "docstatus", "status", "request_sent_on", "mpesa_settings", "originator_conversation_id"],
	)
	if not row or row.docstatus != 1 or row.status != "Queued" or row.request_sent_on:
		frappe.db.rollback()
		return None
	doc = frappe.get_doc(B2C, name)
	try:
		settings = get_settings(doc.mpesa_settings)
		arguments = initiator_arguments(settings)
	except frappe.ValidationError as error:
		# Nothing was sent: the approver fixes the settings and submits an amended copy.
		frappe.db.set_value(B2C, name, {"status": "Failed", "error": str(error)})
		frappe.db.commit()
		return "Failed"
	# Committed before the request: from here on this disbursement is never sent again.
	frappe.db.set_value(B2C, name, "request_sent_on", now_datetime())
	frappe.db.commit()
	try:
		answer = settings_store.call(
			settings,
			"b2c_payment",
			command_id=doc.command_id,
			amount=whole(doc.amount),
			party_a=settings_store.initiator_shortcode(settings),
			phone=doc.phone,
			remarks=doc.remarks,
			occasion=doc.occasion or None,
			originator_conversation_id=doc.originator_conversation_id,
			**arguments,
		)
	except DarajaCallError as error:
		new = "Unknown" if outcome_unknown(error) else "Failed"
		_b2c_move(name, new, {"error": str(error)})
		return new
	values = {"conversation_id": answer.get("ConversationID") or None}
	if answer.get("OriginatorConversationID") not in (None, doc.originator_conversation_id):
		values["error"] = _("Daraja answered with another OriginatorConversationID: {0}").format(
			answer.get("OriginatorConversationID")
		)
	return _b2c_move(name, "Sent", values)


def _b2c_move(name, new, values):
	"""Record an answer; the status only moves forward (a result may already have arrived)."""
	row = records.lock_row(B2C, "name", name, ["status"])
	if states.can_move(states.INITIATOR, row.status, new):
		values["status"] = new
	frappe.db.set_value(B2C, name, {k: v for k, v in values.items() if v is not None})
	frappe.db.commit()
	return values.get("status", row.status)


def whole(amount):
	"""Daraja takes whole shillings; the controllers refuse anything else before this point."""
	value = flt(amount)
	if value != cint(value) or value < 1:
		frappe.throw(_("Amount must be a whole number of shillings, at least 1"))
	return cint(value)


def resolve_disbursements(minutes=10, limit=50):
	"""Ask Daraja about disbursements left Sent or Unknown (or whose job never ran)."""
	cutoff = add_to_date(now_datetime(), minutes=-minutes)
	# Submitted but never sent (the job was lost): sending is still safe, nothing went out.
	for name in frappe.get_all(
		B2C,
		filters={
			"docstatus": 1,
			"status": "Queued",
			"request_sent_on": ("is", "not set"),
			"modified": ("<", cutoff),
		},
		pluck="name",
		limit=limit,
	):
		send_disbursement(name)
	unresolved = frappe.get_all(
		B2C,
		filters={
			"docstatus": 1,
			"status": ("in", ("Sent", "Unknown", "Queued")),
			"request_sent_on": ("<", cutoff),
		},
		or_filters=[["last_status_query", "is", "not set"], ["last_status_query", "<", cutoff]],
		fields=["name", "mpesa_settings", "originator_conversation_id", "transaction_receipt"],
		limit=limit,
	)
	for row in unresolved:
		frappe.db.set_value(B2C, row.name, "last_status_query", now_datetime(), update_modified=False)
		frappe.db.commit()
		try:
			start_request(
				row.mpesa_settings,
				"Transaction Status",
				transaction_id=row.transaction_receipt or None,
				original_conversation_id=None if row.transaction_receipt else row.originator_conversation_id,
				remarks="Status of a disbursement",
				reference_doctype=B2C,
				reference_name=row.name,
			)
		except frappe.ValidationError:
			frappe.log_error(title=f"Transaction Status query for {row.name} failed")
			frappe.db.commit()
