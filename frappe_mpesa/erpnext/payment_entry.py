"""What this app does when a Payment Entry made for an M-Pesa receipt is cancelled (doc_events).

Only an Accounts Manager (or System Manager) cancels such an entry. Cancelling it returns the
receipt to unallocated: nothing is deleted, the register row loses its link (so the receipt may be
posted again, by hand or with ``c2b_posting.repost``) and goes back to Matched, or Unmatched when
it names nothing. A row being reversed (``reversal``) becomes Reversed instead.
"""

import frappe
from frappe import _

from frappe_mpesa.erpnext import C2B, MATCHED, REVERSED, UNMATCHED

MANAGERS = ("Accounts Manager", "System Manager")


def register_row(entry_name):
	return frappe.db.get_value(C2B, {"payment_entry": entry_name}, ["name", "reference_name"], as_dict=True)


def before_cancel(doc, method=None):
	if not register_row(doc.name):
		return
	if frappe.flags.get("mpesa_reversing") == doc.name:
		return  # the reversal result cancels it, whoever's session received it
	if not set(MANAGERS) & set(frappe.get_roles()):
		frappe.throw(
			_("Payment Entry {0} records an M-Pesa receipt: only an Accounts Manager may cancel it").format(
				doc.name
			),
			frappe.PermissionError,
		)


def on_cancel(doc, method=None):
	row = register_row(doc.name)
	if not row:
		return
	reversing = frappe.flags.get("mpesa_reversing") == doc.name
	status = REVERSED if reversing else MATCHED if row.reference_name else UNMATCHED
	frappe.db.set_value(
		C2B,
		row.name,
		{
			"payment_entry": None,
			"status": status,
			"posting_note": _("Payment Entry {0} cancelled{1}").format(
				doc.name, _(" by the reversal") if reversing else ""
			),
		},
		update_modified=False,
	)
