"""The M-Pesa reconciliation screen and Sales Invoice's "Get M-Pesa payments": receipts nobody
posted, beside the company's open Sales Invoices, with suggested matches, allocated and posted by
a person.

Who: Accounts Users (and Managers) read; posting needs an Accounts Manager, or an Accounts User
whom ERPNext lets create Payment Entries. Every answer is for a logged-in user (no guest method).

Exactly once: each receipt becomes one submitted Payment Entry, made under the register row's lock
(``records.lock_row``) only while the row has none, and the link's unique index refuses a second
entry; ``c2b_posting.make_payment_entry`` builds it, with the invoices and amounts chosen here.
One receipt over several invoices is one entry with several references; several receipts to one
invoice are one entry each.
"""

import json

import frappe
from frappe import _
from frappe.utils import flt, getdate, now_datetime

from frappe_mpesa import allocation, matching, records
from frappe_mpesa.erpnext import C2B, MATCHED, PARTLY, POSTED, SETTINGS, UNMATCHED, active, c2b_posting

INVOICE = "Sales Invoice"
READERS = ("Accounts User", "Accounts Manager", "System Manager")
OPEN_STATUSES = (UNMATCHED, MATCHED, PARTLY)
RECEIPT_FIELDS = [
	"name",
	"mpesa_settings",
	"business_shortcode",
	"trans_time",
	"trans_amount",
	"bill_ref_number",
	"msisdn",
	"first_name",
	"middle_name",
	"last_name",
	"status",
	"customer",
	"posting_note",
]
LIMIT = 500
PAGE = 100  # open invoices shown at a time; the pager and filters reach the rest


# ---- who -------------------------------------------------------------------------------


def require_reader():
	from frappe_mpesa.settings_store import require_roles

	if not active():
		frappe.throw(_("M-Pesa reconciliation needs ERPNext on this site"))
	require_roles(READERS)


def may_post():
	roles = set(frappe.get_roles())
	if "Accounts Manager" in roles:
		return True
	return "Accounts User" in roles and bool(frappe.has_permission("Payment Entry", "create"))


def require_poster():
	require_reader()
	if not may_post():
		frappe.throw(
			_("Only an Accounts Manager, or an Accounts User who may create Payment Entries, posts M-Pesa receipts"),
			frappe.PermissionError,
		)


# ---- reading ---------------------------------------------------------------------------


def _filters(value):
	if isinstance(value, str):
		value = json.loads(value or "{}")
	return frappe._dict(value or {})


def _amount(value, what):
	"""A filter's amount as a float for the query; a clear error naming the filter otherwise."""
	try:
		return flt(allocation.money(value, what=what))
	except allocation.AllocationError as error:
		frappe.throw(str(error))


def receipts(filters=None, limit=LIMIT):
	"""Unallocated receipts (no Payment Entry; Unmatched, Matched or Partly allocated) the user may
	read, newest first, filtered by settings record, dates, amount and reference."""
	f = _filters(filters)
	conditions = [[C2B, "payment_entry", "is", "not set"], [C2B, "status", "in", OPEN_STATUSES]]
	if isinstance(f.mpesa_settings, list | tuple):
		conditions.append([C2B, "mpesa_settings", "in", list(f.mpesa_settings) or [""]])
	elif f.mpesa_settings:
		conditions.append([C2B, "mpesa_settings", "=", f.mpesa_settings])
	if f.from_date:
		conditions.append([C2B, "trans_time", ">=", f"{getdate(f.from_date)} 00:00:00"])
	if f.to_date:
		conditions.append([C2B, "trans_time", "<=", f"{getdate(f.to_date)} 23:59:59.999999"])
	if f.amount not in (None, ""):
		conditions.append([C2B, "trans_amount", "=", _amount(f.amount, _("Amount"))])
	if f.reference:
		conditions.append([C2B, "bill_ref_number", "like", f"%{f.reference.strip()}%"])
	if f.trans_id:
		conditions.append([C2B, "name", "=", f.trans_id])
	rows = frappe.get_list(C2B, filters=conditions, fields=RECEIPT_FIELDS, order_by="trans_time desc", limit=limit)
	for row in rows:
		row.payer = c2b_posting.payer_name(row)
	return rows


INVOICE_FIELDS = [
	"name",
	"customer",
	"customer_name",
	"company",
	"posting_date",
	"due_date",
	"grand_total",
	"outstanding_amount",
	"currency",
]


def _invoice_conditions(company=None, customer=None, reference=None, amount=None):
	conditions = [[INVOICE, "docstatus", "=", 1], [INVOICE, "outstanding_amount", ">", 0]]
	if company:
		conditions.append([INVOICE, "company", "=", company])
	if customer:
		conditions.append([INVOICE, "customer", "=", customer])
	if reference and reference.strip():
		conditions.append([INVOICE, "name", "like", f"%{reference.strip()}%"])
	if amount not in (None, ""):
		conditions.append([INVOICE, "outstanding_amount", "=", _amount(amount, _("Invoice Amount"))])
	return conditions


def invoices(company=None, customer=None, limit=LIMIT, reference=None, amount=None, start=0):
	"""Submitted Sales Invoices with something outstanding the user may read, oldest due first;
	filtered by customer, invoice number (any part of it) and outstanding amount, a page of
	``limit`` from ``start``."""
	return frappe.get_list(
		INVOICE,
		filters=_invoice_conditions(company, customer, reference, amount),
		fields=INVOICE_FIELDS,
		order_by="due_date asc, posting_date asc, name asc",
		start=start,
		limit=limit,
	)


def invoice_count(company=None, customer=None, reference=None, amount=None):
	"""How many invoices ``invoices`` pages through (those the user may read)."""
	rows = frappe.get_list(
		INVOICE, filters=_invoice_conditions(company, customer, reference, amount), fields=["count(*) as n"]
	)
	return int(rows[0].n) if rows else 0


def named_invoices(receipts, company=None):
	"""The open invoices the receipts' account numbers name, as typed or upper-cased, wherever they
	fall in the list: a suggestion by reference never depends on the page shown."""
	names = {spelling for row in receipts for spelling in matching.variants(row.bill_ref_number)}
	if not names:
		return []
	conditions = _invoice_conditions(company)
	conditions.append([INVOICE, "name", "in", sorted(names)])
	return frappe.get_list(INVOICE, filters=conditions, fields=INVOICE_FIELDS, limit=len(names))


def name_words(text):
	"""The words of a person's or customer's name, lower case, without punctuation."""
	cleaned = "".join(ch.lower() if ch.isalnum() else " " for ch in (text or ""))
	return {word for word in cleaned.split() if len(word) > 1}


def similar_reference(reference, invoice):
	"""Is the account number the invoice's name as matching compares them (upper case, without
	spaces, dashes, dots...), or its customer's, or the customer's written inside it or the other
	way round (at least four characters)? An invoice number is never compared by containment:
	INV-0001 is not INV-00012."""
	key = matching.normalise(reference)
	if not key:
		return False
	if key == matching.normalise(invoice.name):
		return True
	for other in (invoice.customer, invoice.customer_name):
		theirs = matching.normalise(other)
		if theirs and (key == theirs or (min(len(key), len(theirs)) >= 4 and (key in theirs or theirs in key))):
			return True
	return False


def same_payer(receipt, invoice):
	"""Daraja's payer name (often only a first name) is part of the customer's name, or the other
	way round."""
	payer = name_words(" ".join(filter(None, (receipt.first_name, receipt.middle_name, receipt.last_name))))
	customer = name_words(invoice.customer_name or invoice.customer)
	return bool(payer and customer and (payer <= customer or customer <= payer))


def suggest(receipt, open_invoices):
	"""The invoices that look like what ``receipt`` pays, best first: [{invoice, score, why}]."""
	found = []
	amount = allocation.money(receipt.trans_amount)
	for invoice in open_invoices:
		why = []
		if similar_reference(receipt.bill_ref_number, invoice):
			why.append("reference")
		if allocation.money(invoice.outstanding_amount) == amount:
			why.append("amount")
		if same_payer(receipt, invoice):
			why.append("payer")
		if why:
			score = 4 * ("reference" in why) + 2 * ("amount" in why) + ("payer" in why)
			found.append({"invoice": invoice.name, "customer": invoice.customer, "score": score, "why": why})
	found.sort(key=lambda s: (-s["score"], s["invoice"]))
	return found


def company_of(settings_name):
	return frappe.db.get_value(SETTINGS, settings_name, "company") if settings_name else None


def _page(f):
	"""The invoice page asked for: (start, page length), within bounds."""
	start = max(0, int(f.invoice_start or 0))
	length = min(LIMIT, max(1, int(f.invoice_page_length or PAGE)))
	return start, length


def _invoice_page(f, company):
	start, length = _page(f)
	found = dict(company=company, customer=f.customer, reference=f.invoice, amount=f.invoice_amount)
	return {
		"invoices": invoices(limit=length, start=start, **found),
		"invoice_count": invoice_count(**found),
		"invoice_start": start,
		"invoice_page_length": length,
	}


@frappe.whitelist()
def get_data(filters=None):
	"""The screen: receipts; a page of the open invoices of the settings record's company (or every
	company when no record is picked), filtered by customer, invoice number and amount; suggestions
	per receipt (from the oldest open invoices and those the receipts' account numbers name); and
	whether the user may post."""
	require_reader()
	f = _filters(filters)
	rows = receipts(f)
	company = company_of(f.mpesa_settings)
	page = _invoice_page(f, company)
	pool = {i.name: i for i in invoices(company=company, customer=f.customer)}
	pool.update((i.name, i) for i in named_invoices(rows, company))
	candidates = list(pool.values())
	for row in rows:
		theirs = company_of(row.mpesa_settings)
		row.suggestions = suggest(row, [i for i in candidates if not theirs or i.company == theirs])[:5]
	return {"receipts": rows, **page, "may_post": may_post(), "company": company}


@frappe.whitelist()
def get_invoices(filters=None):
	"""One page of open invoices for the screen (its invoice filters and pager), nothing else."""
	require_reader()
	f = _filters(filters)
	return _invoice_page(f, company_of(f.mpesa_settings))


@frappe.whitelist()
def receipts_for_invoice(invoice):
	"""Sales Invoice's "Get M-Pesa payments": the unallocated receipts of the invoice's company
	whose customer, account number or payer looks like the invoice's, best first."""
	require_reader()
	if not frappe.has_permission(INVOICE, "read", invoice):
		frappe.throw(_("Not permitted to read Sales Invoice {0}").format(invoice), frappe.PermissionError)
	doc = frappe.get_doc(INVOICE, invoice)
	target = frappe._dict(
		name=doc.name, customer=doc.customer, customer_name=doc.customer_name, outstanding_amount=doc.outstanding_amount
	)
	settings = frappe.get_all(SETTINGS, filters={"company": doc.company}, pluck="name")
	found = []
	for row in receipts({"mpesa_settings": settings}, limit=LIMIT):
		why = [w for s in suggest(row, [target]) for w in s["why"]]
		if row.customer == doc.customer:
			why.insert(0, "customer")
		if why:
			row.why = why
			found.append(row)
	rank = {"customer": 8, "reference": 4, "amount": 2, "payer": 1}
	found.sort(key=lambda r: -sum(rank[w] for w in r.why))
	return {"receipts": found, "may_post": may_post(), "outstanding": flt(doc.outstanding_amount)}


# ---- posting ---------------------------------------------------------------------------


def _plan(allocations):
	"""[{trans_id, invoice, amount}] as {trans_id: [(invoice, amount)]} in the given order; a clear
	error naming the row for anything malformed."""
	if isinstance(allocations, str):
		allocations = json.loads(allocations or "[]")
	if not allocations:
		frappe.throw(_("Nothing to post: choose a receipt and an invoice"))
	plan = {}
	for number, item in enumerate(allocations, 1):
		item = frappe._dict(item or {})
		if not item.trans_id or not item.invoice:
			frappe.throw(_("Row {0}: a receipt and an invoice are needed").format(number))
		try:
			amount = allocation.money(item.amount, what=_("Row {0}: amount").format(number))
		except allocation.AllocationError as error:
			frappe.throw(str(error))
		if amount <= 0:
			frappe.throw(_("Row {0}: the amount {1} is not positive").format(number, amount))
		plan.setdefault(item.trans_id, []).append((item.invoice, amount))
	return plan


@frappe.whitelist(methods=["POST"])
def post(allocations):
	"""Post each receipt named in ``allocations`` ([{trans_id, invoice, amount}]) as one Payment
	Entry paying those invoices those amounts; the rest of a receipt stays unallocated on its entry.
	All or nothing: an error names the receipt and nothing is posted. Returns {trans_id: entry}."""
	require_poster()
	plan = _plan(allocations)
	posted = {}
	for trans_id, shares in plan.items():
		posted[trans_id] = _post_one(trans_id, shares)
	return posted


@frappe.whitelist(methods=["POST"])
def apply_to_invoice(trans_id, invoice):
	"""Sales Invoice's "Get M-Pesa payments": post the receipt against this invoice, up to what is
	outstanding on it."""
	require_poster()
	outstanding = allocation.money(frappe.db.get_value(INVOICE, invoice, "outstanding_amount") or 0)
	amount = frappe.db.get_value(C2B, trans_id, "trans_amount")
	if amount is None:
		frappe.throw(_("No M-Pesa receipt {0}").format(trans_id))
	share = min(allocation.money(amount), outstanding)
	if share <= 0:
		frappe.throw(_("Sales Invoice {0} has nothing outstanding").format(invoice))
	return _post_one(trans_id, [(invoice, share)])


def _post_one(trans_id, shares):
	row = records.lock_row(C2B, "name", trans_id, c2b_posting.FIELDS + ["customer"])
	if not row:
		frappe.throw(_("No M-Pesa receipt {0}").format(trans_id))
	if not frappe.has_permission(C2B, "read", trans_id):
		frappe.throw(_("Not permitted to read M-Pesa receipt {0}").format(trans_id), frappe.PermissionError)
	if row.payment_entry:
		frappe.throw(_("M-Pesa receipt {0} is already posted in Payment Entry {1}").format(trans_id, row.payment_entry))
	if row.status not in (UNMATCHED, MATCHED):
		frappe.throw(_("M-Pesa receipt {0} is {1}: only an unposted receipt is posted").format(trans_id, _(row.status)))
	settings = frappe.get_doc(SETTINGS, row.mpesa_settings)
	company = settings.get("company")
	customers, items = set(), []
	total = allocation.Decimal(0)
	for invoice, amount in shares:
		doc = frappe.db.get_value(
			INVOICE,
			invoice,
			["name", "customer", "company", "docstatus", "outstanding_amount", "due_date", "posting_date"],
			as_dict=True,
		)
		if not doc or doc.docstatus != 1:
			frappe.throw(_("{0}: Sales Invoice {1} is not a submitted invoice").format(trans_id, invoice))
		if not frappe.has_permission(INVOICE, "read", invoice):
			frappe.throw(_("Not permitted to read Sales Invoice {0}").format(invoice), frappe.PermissionError)
		if doc.company != company:
			frappe.throw(
				_("{0}: Sales Invoice {1} is of {2}, the shortcode's company is {3}").format(
					trans_id, invoice, doc.company, company
				)
			)
		outstanding = allocation.money(doc.outstanding_amount)
		if amount > outstanding:
			frappe.throw(
				_("{0}: {1} is more than the {2} outstanding on Sales Invoice {3}").format(
					trans_id, amount, outstanding, invoice
				)
			)
		customers.add(doc.customer)
		items.append(allocation.OpenItem(invoice, amount, doc.due_date, doc.posting_date))
		total += amount
	if len(customers) != 1:
		frappe.throw(_("{0}: one receipt pays the invoices of one customer").format(trans_id))
	if total > allocation.money(row.trans_amount):
		frappe.throw(
			_("{0}: {1} allocated is more than the receipt's {2}").format(trans_id, total, allocation.money(row.trans_amount))
		)
	customer = customers.pop()
	try:
		entry = c2b_posting.make_payment_entry(settings, row, None, customer, items=items)
	except c2b_posting.NotPosted as error:
		frappe.throw(_("{0} not posted: {1}").format(trans_id, error))
	unallocated = flt(entry.unallocated_amount)
	c2b_posting._write(
		trans_id,
		{
			"payment_entry": entry.name,
			"customer": customer,
			"reference_doctype": INVOICE,
			"reference_name": shares[0][0],
			"status": POSTED if unallocated == 0 else PARTLY,
			"processed_on": row.processed_on or now_datetime(),
			"posting_note": _("Payment Entry {0}, allocated by {1}").format(entry.name, frappe.session.user)
			+ (_(", {0} unallocated").format(unallocated) if unallocated else ""),
		},
	)
	return entry.name
