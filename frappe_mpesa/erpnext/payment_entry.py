"""Payment Entries for M-Pesa receipts: the one builder every posting path calls (``build``: a C2B
receipt, a checkout push from a Sales Invoice or Sales Order, a receipt allocated by hand), and
what this app does when such an entry is cancelled (doc_events).

Only an Accounts Manager (or System Manager) cancels such an entry. Cancelling it returns the
receipt to unallocated: nothing is deleted, the register row loses its link (so the receipt may be
posted again, by hand or with ``c2b_posting.repost``) and goes back to Matched, or Unmatched when
it names nothing. A row being reversed (``reversal``) becomes Reversed instead.
"""

import frappe
from frappe import _
from frappe.utils import flt

from frappe_mpesa import allocation
from frappe_mpesa.erpnext import C2B, MATCHED, REVERSED, UNMATCHED

MANAGERS = ("Accounts Manager", "System Manager")


class NotPosted(Exception):
	"""Why a receipt was not posted; the message goes on its record for a person."""


def build(settings, amount, day, customer, items, reference_no, remarks):
	"""Insert and submit the Receive Payment Entry for ``amount`` shillings received by the
	shortcode of ``settings`` on ``day`` from ``customer``: paid to the settings' clearing account
	with its Mode of Payment and cost center, Reference No ``reference_no``. ``items`` (a list of
	allocation.OpenItems, or a function of the customer's receivable account returning one) are
	paid oldest due first, each up to its outstanding amount; the rest stays unallocated, an
	advance. A customer account in another currency is paid at ERPNext's rate for ``day``.
	Raises NotPosted when the settings lack their accounting or the amount is not positive."""
	from erpnext.accounts.party import get_party_account
	from erpnext.setup.utils import get_exchange_rate

	company = settings.get("company")
	account = settings.get("mpesa_account")
	if not company or not account:
		raise NotPosted(_("Mpesa Settings {0} has no Company or M-Pesa Clearing Account").format(settings.name))
	amount = allocation.money(amount)
	if amount <= 0:
		raise NotPosted(_("the amount {0} is not positive").format(amount))
	company_currency = frappe.get_cached_value("Company", company, "default_currency")
	party_account = get_party_account("Customer", customer, company)
	party_currency = frappe.get_cached_value("Account", party_account, "account_currency") or company_currency
	rate = 1
	paid_amount = amount
	if party_currency != company_currency:
		# The receipt is in shillings; the customer's account (and its invoices) in another currency.
		rate = flt(get_exchange_rate(party_currency, company_currency, day, "for_buying"), 9) or 0
		if rate <= 0:
			raise NotPosted(_("no exchange rate from {0} to {1} on {2}").format(party_currency, company_currency, day))
		paid_amount = allocation.convert(amount, 1 / allocation.money(rate, 9))

	if callable(items):
		items = items(party_account)
	plan = allocation.allocate(paid_amount, items)
	pe = frappe.new_doc("Payment Entry")
	pe.update(
		{
			"payment_type": "Receive",
			"company": company,
			"posting_date": day,
			"mode_of_payment": settings.get("mode_of_payment"),
			"party_type": "Customer",
			"party": customer,
			"paid_from": party_account,
			"paid_from_account_currency": party_currency,
			"paid_to": account,
			"paid_to_account_currency": frappe.get_cached_value("Account", account, "account_currency"),
			"paid_amount": flt(paid_amount),
			"received_amount": flt(amount),
			"source_exchange_rate": rate,
			"target_exchange_rate": 1,
			"reference_no": reference_no,
			"reference_date": day,
			"cost_center": settings.get("cost_center"),
			"custom_remarks": 1,
			"remarks": remarks,
		}
	)
	for item, share in plan.rows:
		pe.append(
			"references",
			{"reference_doctype": item.doctype, "reference_name": item.name, "allocated_amount": flt(share)},
		)
	pe.setup_party_account_field()
	pe.set_missing_values()
	pe.set_missing_ref_details()
	pe.flags.ignore_permissions = True
	pe.insert()
	pe.submit()
	return pe


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
