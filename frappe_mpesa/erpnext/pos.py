"""M-Pesa in ERPNext's point-of-sale page (/app/point-of-sale) and the POS Invoice it sells with.

The page (``public/js/point_of_sale.js``, a ``page_js`` include) adds to the payment mode of the
company's Mpesa Settings (its Mode of Payment) a phone, a Request button and the live status, and
a list of the till's recent C2B payments to apply. What this module answers and enforces:

- ``pos_setup``: which Mode of Payment is M-Pesa for a POS Profile, and with which settings.
- A push for a draft POS Invoice goes through ``checkout.request_payment`` like any checkout
  push; its Success posts nothing (the money reaches the books when the invoice is consolidated
  into a Sales Invoice, through its payment rows, as every POS payment does).
- ``recent_receipts`` / ``apply_receipt`` / ``release_receipt``: a C2B payment that reached the
  till, unallocated (no Payment Entry, Unmatched or Matched), is reserved for one draft POS
  Invoice: its register row gets ``pos_invoice`` and the status "In POS Invoice", under the row's
  lock. ``c2b_posting``, the sweep, ``repost`` and the reconciliation screen post only Unmatched or
  Matched rows without a Payment Entry, and the database refuses a row with both a Payment Entry
  and a POS Invoice (the CHECK constraint ``setup.LEDGER_CONSTRAINT``): a receipt is in the books
  once, through the Payment Entry or through the POS Invoice, never both. A second POS Invoice
  finds the row taken and is refused.
- ``before_submit`` (doc_events): the M-Pesa rows of a POS Invoice must add up to exactly what
  M-Pesa confirmed for it (Success pushes and the receipts reserved for it), else a clear error
  naming the row. ``on_submit`` notes the consumption on the rows; cancelling or deleting the
  invoice gives its C2B receipts back (Unmatched or Matched, to be posted or applied again).

The cashier holds no Accounts role: each method checks the POS Invoice's write permission.
"""

import frappe
from frappe import _
from frappe.utils import add_to_date, cint, flt, now_datetime

from frappe_mpesa.erpnext import C2B, MATCHED, SETTINGS, UNMATCHED, active, checkout

POS_INVOICE = "POS Invoice"
IN_POS = "In POS Invoice"  # the register's status for a receipt reserved for or consumed by one
RECENT_MINUTES = 30  # how far back the till's payments are offered
RECENT_LIMIT = 20
EXPRESS = checkout.EXPRESS


# ---- what the page needs ------------------------------------------------------------------


def mpesa_modes(company):
	"""{Mode of Payment: settings name} for the company's enabled settings records."""
	if not frappe.get_meta(SETTINGS).has_field("mode_of_payment"):
		return {}
	rows = frappe.get_all(
		SETTINGS,
		filters={"enabled": 1, "company": company},
		fields=["name", "mode_of_payment"],
		order_by="creation",
	)
	modes = {}
	for row in rows:
		if row.mode_of_payment:
			modes.setdefault(row.mode_of_payment, row.name)
	return modes


@frappe.whitelist()
def pos_setup(pos_profile):
	"""The M-Pesa payment method of a POS Profile: its company's settings record, that record's Mode
	of Payment (which must be one of the profile's payment methods) and its transaction limit."""
	frappe.has_permission("POS Profile", "read", pos_profile, throw=True)
	if not active():
		return None
	company = frappe.db.get_value("POS Profile", pos_profile, "company")
	settings = checkout.default_settings(company)
	if not settings:
		return None
	record = frappe.db.get_value(
		SETTINGS, settings, ["name", "mode_of_payment", "transaction_limit", "business_shortcode"], as_dict=True
	)
	methods = frappe.get_all(
		"POS Payment Method", filters={"parent": pos_profile, "parenttype": "POS Profile"}, pluck="mode_of_payment"
	)
	return {
		"settings": record.name,
		"mode_of_payment": record.mode_of_payment,
		"in_profile": record.mode_of_payment in methods,
		"transaction_limit": flt(record.transaction_limit),
	}


def draft_invoice(name, for_update=False):
	"""The draft POS Invoice ``name`` the user may edit; a clear error otherwise."""
	if not name or not frappe.db.exists(POS_INVOICE, name):
		frappe.throw(_("POS Invoice {0} does not exist: save the sale first").format(name or ""))
	frappe.has_permission(POS_INVOICE, "write", name, throw=True)
	if for_update:
		frappe.db.get_value(POS_INVOICE, name, "name", for_update=True)
	doc = frappe.get_doc(POS_INVOICE, name)
	if doc.docstatus != 0:
		frappe.throw(_("POS Invoice {0} is submitted or cancelled: M-Pesa is applied to a draft").format(name))
	return doc


def till_settings(doc):
	"""The settings record of the invoice's company (the till)."""
	return checkout.settings_for(doc)


def payer(row):
	return (row.first_name or "").strip() or _("unknown")


@frappe.whitelist()
def confirmed(pos_invoice):
	"""What M-Pesa confirmed for a POS Invoice: Success pushes and reserved C2B receipts."""
	frappe.has_permission(POS_INVOICE, "read", pos_invoice, throw=True)
	return confirmations(pos_invoice)


def confirmations(pos_invoice, for_update=False):
	lock = " for update" if for_update else ""
	pushes = frappe.db.sql(
		f"""select name, amount, receipt_number from `tab{EXPRESS}`
		where reference_doctype = %s and reference_name = %s and status = 'Success'
		order by creation{lock}""",
		(POS_INVOICE, pos_invoice),
		as_dict=True,
	)
	receipts = frappe.db.sql(
		f"""select name, trans_amount, first_name from `tab{C2B}` where pos_invoice = %s
		order by creation{lock}""",
		(pos_invoice,),
		as_dict=True,
	)
	items = [
		{"kind": "push", "request": p.name, "receipt": p.receipt_number or p.name, "amount": flt(p.amount, 2)}
		for p in pushes
	] + [
		{"kind": "c2b", "request": r.name, "receipt": r.name, "amount": flt(r.trans_amount, 2), "payer": payer(r)}
		for r in receipts
	]
	return {
		"items": items,
		"amount": flt(sum(item["amount"] for item in items), 2),
		"receipts": ", ".join(item["receipt"] for item in items),
	}


# ---- C2B payments at the till ---------------------------------------------------------------


def till_filters(settings):
	"""The register rows of the till's shortcode (any settings record on it)."""
	codes = [code for code in (settings.business_shortcode, settings.get("till_number")) if code]
	return [[C2B, "business_shortcode", "in", codes]] if codes else [[C2B, "mpesa_settings", "=", settings.name]]


@frappe.whitelist()
def recent_receipts(pos_invoice, search=None):
	"""Unallocated C2B payments that reached the invoice's till in the last RECENT_MINUTES, newest
	first, matching ``search``: an amount, the receipt's last characters or the payer's first name.
	Only the receipt, amount, time and first name are returned."""
	doc = draft_invoice(pos_invoice)
	settings = till_settings(doc)
	filters = till_filters(settings) + [
		[C2B, "payment_entry", "is", "not set"],
		[C2B, "pos_invoice", "is", "not set"],
		[C2B, "status", "in", (UNMATCHED, MATCHED)],
		[C2B, "trans_time", ">=", add_to_date(now_datetime(), minutes=-RECENT_MINUTES)],
	]
	or_filters = None
	text = (search or "").strip()
	if text:
		number = text.replace(",", "")
		or_filters = [[C2B, "name", "like", f"%{text.upper()}"], [C2B, "first_name", "like", f"{text}%"]]
		if number.replace(".", "", 1).isdigit():
			or_filters.append([C2B, "trans_amount", "=", flt(number)])
	rows = frappe.get_all(
		C2B,
		filters=filters,
		or_filters=or_filters,
		fields=["name", "trans_amount", "trans_time", "first_name"],
		order_by="trans_time desc",
		limit=RECENT_LIMIT,
	)
	return [
		{"receipt": r.name, "amount": flt(r.trans_amount, 2), "time": r.trans_time, "payer": payer(r)} for r in rows
	]


@frappe.whitelist(methods=["POST"])
def apply_receipt(pos_invoice, receipt):
	"""Reserve C2B receipt ``receipt`` for draft POS Invoice ``pos_invoice``; returns what M-Pesa
	has confirmed for the invoice. Refused when the receipt is another till's, already posted or
	already applied to a POS Invoice."""
	doc = draft_invoice(pos_invoice, for_update=True)
	settings = till_settings(doc)
	receipt = (receipt or "").strip().upper()
	row = frappe.db.sql(
		f"""select name, status, payment_entry, pos_invoice, business_shortcode, mpesa_settings, trans_amount
		from `tab{C2B}` where name = %s for update""",
		(receipt,),
		as_dict=True,
	)
	if not row:
		frappe.throw(_("M-Pesa receipt {0}: no such C2B payment").format(receipt))
	row = row[0]
	codes = {settings.business_shortcode, settings.get("till_number")} - {None, ""}
	if row.business_shortcode not in codes and row.mpesa_settings != settings.name:
		frappe.throw(_("M-Pesa receipt {0} was paid to another shortcode, not this till").format(receipt))
	if row.pos_invoice:
		frappe.throw(
			_("M-Pesa receipt {0} is already applied to POS Invoice {1}").format(receipt, row.pos_invoice),
			title=_("Receipt taken"),
		)
	if row.payment_entry:
		frappe.throw(
			_("M-Pesa receipt {0} is already posted in Payment Entry {1}").format(receipt, row.payment_entry),
			title=_("Receipt taken"),
		)
	if row.status not in (UNMATCHED, MATCHED):
		frappe.throw(_("M-Pesa receipt {0} is {1}: only an unallocated receipt is applied").format(receipt, _(row.status)))
	total = flt(doc.rounded_total) or flt(doc.grand_total)
	already = confirmations(pos_invoice, for_update=True)["amount"]
	if already >= total:
		frappe.throw(_("POS Invoice {0} is already paid by M-Pesa ({1})").format(pos_invoice, already))
	frappe.db.set_value(
		C2B,
		receipt,
		{
			"pos_invoice": pos_invoice,
			"status": IN_POS,
			"processed_on": now_datetime(),
			"posting_note": _("Applied to draft POS Invoice {0} by {1}").format(pos_invoice, frappe.session.user),
		},
		update_modified=False,
	)
	return confirmations(pos_invoice)


@frappe.whitelist(methods=["POST"])
def release_receipt(pos_invoice, receipt):
	"""Give a reserved receipt back (the cashier removed it from the draft sale)."""
	draft_invoice(pos_invoice, for_update=True)
	row = frappe.db.get_value(C2B, {"name": receipt, "pos_invoice": pos_invoice}, "name", for_update=True)
	if not row:
		frappe.throw(_("M-Pesa receipt {0} is not applied to POS Invoice {1}").format(receipt, pos_invoice))
	give_back(receipt, _("Removed from draft POS Invoice {0} by {1}").format(pos_invoice, frappe.session.user))
	return confirmations(pos_invoice)


def give_back(receipt, note):
	reference = frappe.db.get_value(C2B, receipt, "reference_name")
	frappe.db.set_value(
		C2B,
		receipt,
		{"pos_invoice": None, "status": MATCHED if reference else UNMATCHED, "posting_note": note},
		update_modified=False,
	)


# ---- the POS Invoice (doc_events) ---------------------------------------------------------


def mpesa_rows(doc):
	modes = mpesa_modes(doc.company)
	return [row for row in doc.get("payments") or [] if row.mode_of_payment in modes]


def before_submit(doc, method=None):
	"""An M-Pesa payment row may be submitted only for what M-Pesa confirmed for this invoice."""
	if not active() or cint(doc.get("is_return")):
		return
	rows = mpesa_rows(doc)
	got = confirmations(doc.name, for_update=True)
	recorded = flt(sum(flt(row.amount) for row in rows), 2)
	if recorded == got["amount"]:
		for row in rows:
			if flt(row.amount) and not row.reference_no and got["receipts"]:
				row.reference_no = got["receipts"][:140]
		return
	if recorded > got["amount"]:
		row = next(row for row in rows if flt(row.amount))
		frappe.throw(
			_(
				"Payment row {0} ({1}): {2} by M-Pesa is not confirmed; M-Pesa confirmed {3} for POS Invoice {4}{5}. "
				"Request the payment or apply the customer's C2B payment first."
			).format(
				row.idx,
				row.mode_of_payment,
				recorded,
				got["amount"],
				doc.name,
				_(" ({0})").format(got["receipts"]) if got["receipts"] else "",
			),
			title=_("M-Pesa not confirmed"),
		)
	where = (
		_("payment row {0} ({1}) records only {2}").format(rows[0].idx, rows[0].mode_of_payment, recorded)
		if rows
		else _("no payment row records it")
	)
	frappe.throw(
		_("M-Pesa confirmed {0} for POS Invoice {1} ({2}) but {3}: set the M-Pesa amount to {0}").format(
			got["amount"], doc.name, got["receipts"], where
		),
		title=_("M-Pesa amount"),
	)


def on_submit(doc, method=None):
	if not active():
		return
	for item in confirmations(doc.name)["items"]:
		if item["kind"] == "c2b":
			frappe.db.set_value(
				C2B, item["request"], "posting_note", _("In POS Invoice {0} (submitted)").format(doc.name),
				update_modified=False,
			)
		else:
			frappe.db.set_value(
				EXPRESS, item["request"], "reference_outcome", _("In POS Invoice {0}").format(doc.name),
				update_modified=False,
			)


def on_cancel(doc, method=None):
	"""The invoice's C2B receipts go back to unallocated, to be posted or applied again."""
	if not active():
		return
	for receipt in frappe.get_all(C2B, filters={"pos_invoice": doc.name}, pluck="name"):
		give_back(receipt, _("POS Invoice {0} cancelled").format(doc.name))


def on_trash(doc, method=None):
	"""A draft sale deleted: its C2B receipts go back; one that M-Pesa paid by push is kept."""
	if not active():
		return
	paid = frappe.get_all(
		EXPRESS,
		filters={"reference_doctype": POS_INVOICE, "reference_name": doc.name, "status": "Success"},
		pluck="receipt_number",
	)
	if paid:
		frappe.throw(
			_("POS Invoice {0} was paid by M-Pesa ({1}): submit it (or return it) instead of deleting it").format(
				doc.name, ", ".join(r or "?" for r in paid)
			)
		)
	on_cancel(doc)
