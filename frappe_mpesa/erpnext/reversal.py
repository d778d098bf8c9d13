"""A C2B payment given back through Daraja's Reversal API, and its Payment Entry cancelled.

``reverse`` (Accounts Manager only) asks for the reversal of a register row: an Mpesa Initiator
Request Awaiting Approval, referring to the row, which another Accounts Manager approves (and so
sends) with ``api.approve_reversal``. Daraja's result comes to the result callback; ``records``
moves the request to Completed through ``db_set``, and this module's ``on_change`` (doc_events)
then, in that same transaction and under the register row's lock, cancels the row's Payment Entry
and marks the row Reversed. Completed is final, so this happens once. A reversal asked for with
``api.reverse_transaction`` (no reference) finds its row by the receipt it reverses.
"""

import frappe
from frappe import _

from frappe_mpesa import initiator, records
from frappe_mpesa.erpnext import C2B, REVERSED, active

REVERSAL = "Reversal"
COMPLETED = "Completed"
MANAGERS = ("Accounts Manager", "System Manager")


@frappe.whitelist(methods=["POST"])
def reverse(trans_id, remarks=None):
	"""Ask for C2B payment ``trans_id`` to be reversed; returns the Mpesa Initiator Request, Awaiting
	Approval by another Accounts Manager (nothing is sent before)."""
	from frappe_mpesa.settings_store import require_roles

	require_roles(MANAGERS)
	row = frappe.db.get_value(C2B, trans_id, ["name", "status", "mpesa_settings", "trans_amount"], as_dict=True)
	if not row:
		frappe.throw(_("No M-Pesa receipt {0}").format(trans_id), frappe.DoesNotExistError)
	if row.status == REVERSED:
		frappe.throw(_("M-Pesa receipt {0} is already reversed").format(trans_id))
	pending = frappe.db.exists(
		records.INITIATOR,
		{
			"request_type": REVERSAL,
			"reference_doctype": C2B,
			"reference_name": trans_id,
			"status": ("in", ("Awaiting Approval", "Queued", "Sent", "Unknown", COMPLETED)),
		},
	)
	if pending:
		# Money-moving: never sent twice; the earlier request's outcome settles it.
		frappe.throw(_("M-Pesa receipt {0} already has a reversal request: {1}").format(trans_id, pending))
	amount = int(round(float(row.trans_amount)))
	name = initiator.request_reversal(row.mpesa_settings, trans_id, amount, (remarks or "Reversal")[:100])
	frappe.db.set_value(records.INITIATOR, name, {"reference_doctype": C2B, "reference_name": trans_id})
	frappe.db.commit()
	return name


def on_change(doc, method=None):
	"""doc_events on Mpesa Initiator Request: a completed reversal of a register row."""
	before = doc.get_doc_before_save()
	if doc.request_type != REVERSAL or doc.status != COMPLETED or before is None or before.status == COMPLETED:
		return
	if doc.reference_doctype and doc.reference_doctype != C2B:
		return
	trans_id = doc.reference_name if doc.reference_doctype == C2B else doc.transaction_id
	# On Frappe alone the register has no Payment Entry link (an ERPNext Custom Field).
	books = active()
	row = records.lock_row(C2B, "name", trans_id, ["name", "status"] + (["payment_entry"] if books else []))
	if not row or row.status == REVERSED:
		return
	note = _("Reversed by {0} ({1})").format(doc.name, doc.result_receipt or doc.result_desc or "")
	if books and row.payment_entry:
		frappe.db.savepoint("frappe_mpesa_reversal")
		try:
			cancel_entry(row.payment_entry)
		except Exception as error:
			# The money went back whatever the books say: the row is Reversed, the entry left for a
			# person to cancel (Error Log), and the callback that brought the result still applies.
			frappe.db.rollback(save_point="frappe_mpesa_reversal")
			frappe.log_error(title=f"M-Pesa: cancelling {row.payment_entry} after reversal failed")
			note += _("; Payment Entry {0} not cancelled, cancel it by hand: {1}").format(row.payment_entry, error)
	frappe.db.set_value(C2B, row.name, {"status": REVERSED, "posting_note": note}, update_modified=False)


def cancel_entry(name):
	"""Cancel the row's Payment Entry as the reversal's own act (the result arrives as Guest)."""
	from frappe_mpesa.payment_requests import as_administrator

	entry = frappe.get_doc("Payment Entry", name)
	if entry.docstatus != 1:
		return
	frappe.flags.mpesa_reversing = name
	try:
		with as_administrator():
			entry.flags.ignore_permissions = True
			entry.cancel()
	finally:
		frappe.flags.mpesa_reversing = None
