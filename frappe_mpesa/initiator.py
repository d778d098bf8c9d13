"""Requests made with the initiator's credentials (B2C, transaction status, balance, reversal).

Their outcome comes later to the result or timeout callback. Each is recorded before it is sent
and committed, so a callback always finds its record (or is kept until it does); a money-moving
request is never sent twice: the moment of sending is committed first, and a failure after
that is "Unknown", resolved by a Transaction Status query, never by sending again.
"""

import hashlib
import hmac

import frappe
from frappe import _
from frappe.utils import add_to_date, cint, flt, now_datetime
from frappe.utils.password import get_encryption_key

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


def request_arguments(settings, request_type, transaction_id, original_conversation_id, amount, remarks):
	"""The Client method and its arguments for one status, balance or reversal request."""
	arguments = initiator_arguments(settings)
	party_a = settings_store.initiator_shortcode(settings)
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
	return METHODS[request_type], arguments


def record_request(settings, request_type, status, **values):
	"""Insert the Mpesa Initiator Request (the app's own insert) and commit it."""
	doc = frappe.get_doc(
		{
			"doctype": INITIATOR,
			"request_type": request_type,
			"mpesa_settings": settings.name,
			"status": status,
			"requested_by": frappe.session.user,
			**values,
		}
	)
	doc.flags.ignore_permissions = True
	doc.insert()
	frappe.db.commit()
	return doc.name


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
	"""Record and send a status or balance request; returns the record's name.

	Commits: the record must be visible to the callback's request before Daraja can answer. A
	reversal moves money and goes through request_reversal / approve_reversal instead.
	"""
	if request_type == "Reversal":
		frappe.throw(_("A reversal is requested first, then approved by another Accounts Manager"))
	settings = get_settings(settings_name)
	method, arguments = request_arguments(
		settings, request_type, transaction_id, original_conversation_id, amount, remarks
	)
	name = record_request(
		settings,
		request_type,
		"Queued",
		transaction_id=transaction_id,
		original_conversation_id=original_conversation_id,
		amount=amount,
		remarks=remarks,
		reference_doctype=reference_doctype,
		reference_name=reference_name,
		request_sent_on=now_datetime(),
	)
	return _send_request(settings, name, method, arguments)


def _send_request(settings, name, method, arguments):
	"""Send a recorded, committed request once and record Daraja's answer; returns ``name``."""
	try:
		answer = settings_store.call(settings, method, **arguments)
	except DarajaCallError as error:
		status = "Unknown" if outcome_unknown(error) else "Failed"
		frappe.db.set_value(INITIATOR, name, {"status": status, "error": str(error)})
		frappe.db.commit()
		raise
	ocid = answer.get("OriginatorConversationID") or None
	row = records.lock_row(INITIATOR, "name", name, ["status"])
	values = {
		"originator_conversation_id": ocid,
		"conversation_id": answer.get("ConversationID") or None,
		"result_desc": answer.get("ResponseDescription"),
	}
	if states.can_move(states.INITIATOR, row.status, "Sent"):
		values["status"] = "Sent"
	frappe.db.set_value(INITIATOR, name, values)
	frappe.db.commit()
	if ocid and records.match_unmatched(ocid):
		frappe.db.commit()
	return name


def request_reversal(settings_name, transaction_id, amount, remarks=None):
	"""Record a reversal for another Accounts Manager to approve; nothing is sent. Returns its name."""
	settings = get_settings(settings_name)
	# Built now so a reversal Daraja would refuse (a bad receipt, no certificate) fails before a
	# second person is asked to look at it.
	request_arguments(settings, "Reversal", transaction_id, None, amount, remarks)
	return record_request(
		settings,
		"Reversal",
		"Awaiting Approval",
		transaction_id=transaction_id,
		amount=amount,
		remarks=remarks or "Reversal",
	)


def _awaiting_reversal(name):
	"""The reversal ``name``, locked, if it still awaits approval; else throw."""
	row = records.lock_row(
		INITIATOR,
		"name",
		name,
		[
			"name",
			"status",
			"request_type",
			"requested_by",
			"owner",
			"mpesa_settings",
			"transaction_id",
			"amount",
			"remarks",
		],
	)
	if not row or row.request_type != "Reversal":
		frappe.throw(_("{0} is not a reversal request").format(name), frappe.DoesNotExistError)
	if row.status != "Awaiting Approval":
		frappe.throw(_("Reversal {0} is {1}, not awaiting approval").format(name, _(row.status)))
	return row


def approve_reversal(name):
	"""A second Accounts Manager approves a reversal; it is sent once, now. Returns its name."""
	row = _awaiting_reversal(name)
	user = frappe.session.user
	if user in (row.requested_by, row.owner):
		frappe.throw(
			_("You asked for this reversal; another Accounts Manager must approve it"), frappe.PermissionError
		)
	settings = get_settings(row.mpesa_settings)
	method, arguments = request_arguments(
		settings, "Reversal", row.transaction_id, None, row.amount, row.remarks
	)
	if not states.can_move(states.INITIATOR, row.status, "Queued"):
		frappe.throw(_("Reversal {0} cannot be approved now").format(name))
	# Committed before the request: approved once, sent once.
	frappe.db.set_value(
		INITIATOR, name, {"status": "Queued", "approved_by": user, "request_sent_on": now_datetime()}
	)
	frappe.db.commit()
	return _send_request(settings, name, method, arguments)


def reject_reversal(name):
	"""Close a reversal that is not to be sent (its requester or another Accounts Manager)."""
	_awaiting_reversal(name)
	frappe.db.set_value(INITIATOR, name, {"status": "Rejected", "approved_by": frappe.session.user})
	frappe.db.commit()
	return name


def approval_digest(row):
	"""What a B2C approver approved, sealed with the site's key: the disbursement, its settings,
	payee, amount and command, the approver and the OriginatorConversationID."""
	message = "\0".join(
		str(value or "")
		for value in (
			row.name,
			row.mpesa_settings,
			row.phone,
			cint(flt(row.amount)),
			row.command_id,
			row.approved_by,
			row.originator_conversation_id,
		)
	)
	return hmac.new(get_encryption_key().encode(), message.encode(), hashlib.sha256).hexdigest()


def ever_sent(row):
	"""True when anything shows a request may have gone out: the moment of sending (set once, never
	cleared by the app), Daraja's answer or a result. Such a disbursement is only ever queried."""
	return (
		bool(row.request_sent_on or row.conversation_id or row.transaction_receipt or row.result_code)
		or row.status != "Queued"
	)


def send_disbursement(name):
	"""Send a submitted, Queued B2C disbursement once (the background job after submit).

	Under the row lock: nothing that has ever been sent is sent again, and only what the approver
	approved (the approval digest) is sent at all; a row changed since is voided, not sent.
	"""
	row = records.lock_row(
		B2C,
		"name",
		name,
		[
			"name",
			"docstatus",
			"status",
			"request_sent_on",
			"conversation_id",
			"transaction_receipt",
			"result_code",
			"mpesa_settings",
			"originator_conversation_id",
			"phone",
			"amount",
			"command_id",
			"remarks",
			"occasion",
			"approved_by",
			"approval_digest",
		],
	)
	if not row or row.docstatus != 1 or ever_sent(row) or not row.originator_conversation_id:
		frappe.db.rollback()
		return None
	if not hmac.compare_digest(row.approval_digest or "", approval_digest(row)):
		frappe.db.set_value(
			B2C,
			name,
			{
				"status": "Failed",
				"error": _("Changed after approval: nothing was sent. Submit an amended copy."),
			},
		)
		frappe.db.commit()
		return "Failed"
	try:
		settings = get_settings(row.mpesa_settings)
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
			command_id=row.command_id,
			amount=whole(row.amount),
			party_a=settings_store.initiator_shortcode(settings),
			phone=row.phone,
			remarks=row.remarks,
			occasion=row.occasion or None,
			originator_conversation_id=row.originator_conversation_id,
			**arguments,
		)
	except DarajaCallError as error:
		new = "Unknown" if outcome_unknown(error) else "Failed"
		_b2c_move(name, new, {"error": str(error)})
		return new
	values = {"conversation_id": answer.get("ConversationID") or None}
	if answer.get("OriginatorConversationID") not in (None, row.originator_conversation_id):
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
