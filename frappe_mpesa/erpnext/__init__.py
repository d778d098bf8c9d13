"""The ERPNext layer: what this app does to ERPNext's books, one module per flow.

- ``setup``: accounting per shortcode on Mpesa Settings (Company, Mode of Payment, the M-Pesa
  clearing account, cost center) and the payouts' fields (Employee, Supplier, the batch), as
  Custom Fields made only where ERPNext is installed.
- ``matching_rules``: the settings record's rules and the database lookups behind ``matching``.
- ``c2b_validation``: the verdict for Daraja's C2B validation request (``mpesa_c2b_validators``).
- ``c2b_posting``: a recorded C2B payment matched and posted as one Payment Entry, in a job.
- ``payment_entry``: the one Payment Entry builder of every posting path, and what cancelling
  such an entry does to its receipt.
- ``express_posting``: a successful STK push for a Payment Request becomes its Payment Entry.
- ``checkout``: pushes asked for from a Sales Invoice, Sales Order, POS Invoice or Payment Entry,
  their live status, and payment links.
- ``pos``: M-Pesa in the point-of-sale page, C2B receipts applied to a POS Invoice, and the
  POS Invoice submitted only for what M-Pesa confirmed.
- ``reversal``: a C2B payment reversed through the Reversal API, and its Payment Entry cancelled.

Nothing below this package imports it: it reacts to the app's records through ``doc_events`` and
hooks in ``hooks.py`` and ``frappe.enqueue``. Every entry point returns at once on a site without
ERPNext, so the app works on Frappe alone.
"""

import frappe

ERPNEXT_APP = "erpnext"
C2B = "Mpesa C2B Payment Register"
SETTINGS = "Mpesa Settings"
B2C = "B2C Payment Disbursement"
PAYEE = "B2C Disbursement Payee"

# Register statuses (the DocType's Select options).
UNMATCHED, MATCHED, POSTED, PARTLY = "Unmatched", "Matched", "Posted", "Partly allocated"
CANCELLED, REVERSED = "Cancelled", "Reversed"


def active():
	"""True on a site where ERPNext is installed (and its tables exist)."""
	return ERPNEXT_APP in frappe.get_installed_apps()
