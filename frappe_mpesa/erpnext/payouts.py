"""Payouts into the books: batches made from ERPNext documents, and each completed payee posted.

- ``make_batch``: the list action "Pay by M-Pesa" on submitted Salary Slips, Expense Claims,
  Employee Advances and Purchase Invoices: one draft B2C batch, a payee row per document.
- ``on_payee_change`` (doc_events on the payee row): a row that reaches Completed is posted in a
  job, ``post_row``: a Salary Slip as a Journal Entry debiting payroll payable for the employee and
  crediting the shortcode's M-Pesa account; an Expense Claim, Employee Advance or Purchase Invoice
  as a Payment Entry (Pay) allocated to it; a row paying no document as a Journal Entry debiting
  the batch's payout account. Charges the result reports go to the settings' B2C charges account.
  Every entry carries the M-Pesa receipt (cheque_no / reference_no). The row's ``ledger_entry``
  is set by ``update ... where ledger_entry is null`` in the entry's own transaction, and is a
  unique column: a second entry for one receipt is rolled back, whoever makes it.

records.py knows nothing of this; it only moves the row (db_set, so on_change runs).
"""

import frappe
from frappe import _
from frappe.utils import flt, getdate, nowdate

from frappe_mpesa import payees
from frappe_mpesa.erpnext import B2C, PAYEE, SETTINGS, active

PAYABLE_DOCTYPES = ("Salary Slip", "Expense Claim", "Employee Advance", "Purchase Invoice")
# What a tax remittance pays: a Journal Entry that credited the tax liability, or KRA's invoice.
TAX_DOCTYPES = ("Journal Entry", "Purchase Invoice")
# Documents paid by a Payment Entry allocated to them, whatever the kind of payout.
PAYMENT_ENTRY_DOCTYPES = ("Expense Claim", "Employee Advance", "Purchase Invoice")
POSTING_MANAGERS = ("Accounts Manager", "System Manager")


# ---- batches from documents ------------------------------------------------------------


def supplier_b2b(supplier, where):
	"""(kind, paybill or till, account reference) of a supplier paid by B2B: its paybill (with the
	account there) or its till; the error names the document and the field."""
	values = frappe.db.get_value(
		"Supplier", supplier, ["mpesa_paybill", "mpesa_till", "mpesa_account_reference"], as_dict=True
	) or frappe._dict()
	paybill, till = (values.mpesa_paybill or "").strip(), (values.mpesa_till or "").strip()
	if paybill and till:
		frappe.throw(_("{0}: Supplier {1} has both an M-Pesa Paybill and an M-Pesa Till: keep the one to pay").format(where, supplier))
	if not paybill and not till:
		frappe.throw(_("{0}: set the M-Pesa Paybill or M-Pesa Till of Supplier {1}").format(where, supplier))
	kind = payees.PAYBILL if paybill else payees.TILL
	label = _("M-Pesa Paybill") if paybill else _("M-Pesa Till")
	try:
		code = payees.shortcode(paybill or till)
	except ValueError as error:
		frappe.throw(_("{0}: Supplier {1}'s {2} {3}").format(where, supplier, label, error))
	try:
		reference = payees.account_reference(values.mpesa_account_reference, required=kind == payees.PAYBILL)
	except ValueError as error:
		frappe.throw(_("{0}: Supplier {1}'s M-Pesa Account Reference {2}").format(where, supplier, error))
	return kind, code, reference


def payee_of(doc):
	"""(party_type, party, payee name, phone, amount still to pay) for a submitted document."""
	if doc.doctype == "Salary Slip":
		amount = flt(doc.rounded_total) or flt(doc.net_pay)
		party_type, party, name = "Employee", doc.employee, doc.employee_name
	elif doc.doctype == "Expense Claim":
		amount = flt(doc.grand_total) - flt(doc.total_amount_reimbursed)
		party_type, party, name = "Employee", doc.employee, doc.employee_name
	elif doc.doctype == "Employee Advance":
		amount = flt(doc.advance_amount) - flt(doc.paid_amount)
		party_type, party, name = "Employee", doc.employee, doc.employee_name
	else:
		amount = flt(doc.outstanding_amount)
		party_type, party, name = "Supplier", doc.supplier, doc.supplier_name
	phone = frappe.db.get_value(party_type, party, "mpesa_number")
	return party_type, party, name, phone, amount


def already_in_a_batch(doctype, name):
	"""A live batch row (draft, or submitted and not Failed) that pays this document, or None."""
	rows = frappe.get_all(
		PAYEE,
		filters={"reference_doctype": doctype, "reference_name": name, "docstatus": ("<", 2), "retried": 0},
		fields=["parent", "status", "docstatus"],
	)
	for row in rows:
		if row.docstatus == 0 or row.status != "Failed":
			return row.parent
	return None


@frappe.whitelist()
def make_batch(doctype, names, mpesa_settings, remarks=None, kind=payees.B2C):
	"""A draft batch paying each of ``names`` (submitted documents of ``doctype``) its unpaid amount
	by M-Pesa; returns its name. ``kind`` B2C pays the party's M-Pesa number; B2B (Purchase Invoices)
	the supplier's paybill or till. A document that cannot be paid is named in the error."""
	if not active():
		frappe.throw(_("Paying documents by M-Pesa needs ERPNext"))
	if doctype not in PAYABLE_DOCTYPES:
		frappe.throw(_("{0} cannot be paid by M-Pesa").format(doctype))
	b2b = kind == "B2B"
	if b2b and doctype != "Purchase Invoice":
		frappe.throw(_("Only Purchase Invoices are paid to a paybill or till"))
	if not b2b and kind != payees.B2C:
		frappe.throw(_("Pay by M-Pesa: kind {0} is not B2C or B2B").format(kind))
	names = frappe.parse_json(names) if isinstance(names, str) else names
	if not names:
		frappe.throw(_("Select the documents to pay"))
	frappe.has_permission(B2C, "create", throw=True)
	company = frappe.db.get_value(SETTINGS, mpesa_settings, "company")
	batch = frappe.get_doc(
		{
			"doctype": B2C,
			"mpesa_settings": mpesa_settings,
			"command_id": "SalaryPayment" if doctype == "Salary Slip" else "BusinessPayment",
			"remarks": remarks or (_("Salaries") if doctype == "Salary Slip" else _("Payment of {0}").format(_(doctype))),
		}
	)
	for name in names:
		doc = frappe.get_doc(doctype, name)
		doc.check_permission("read")
		where = f"{_(doctype)} {name}"
		if doc.docstatus != 1:
			frappe.throw(_("{0} is not submitted").format(where))
		if company and doc.company != company:
			frappe.throw(_("{0} is of company {1}, not {2}'s {3}").format(where, doc.company, mpesa_settings, company))
		other = already_in_a_batch(doctype, name)
		if other:
			frappe.throw(_("{0} is already paid by disbursement {1}").format(where, other))
		party_type, party, payee_name, phone, amount = payee_of(doc)
		if amount <= 0:
			frappe.throw(_("{0} has nothing left to pay").format(where))
		if amount != int(amount):
			frappe.throw(_("{0}: {1} is not a whole number of shillings").format(where, amount))
		row = {
			"party_type": party_type,
			"party": party,
			"payee_name": payee_name,
			"amount": int(amount),
			"reference_doctype": doctype,
			"reference_name": name,
			"remarks": f"{doctype} {name}"[:100],
		}
		if b2b:
			row["payout_kind"], row["party_shortcode"], row["account_reference"] = supplier_b2b(party, where)
		elif not phone:
			frappe.throw(_("{0}: set the M-Pesa Number of {1} {2}").format(where, _(party_type), party))
		else:
			row["phone"] = phone
		batch.append("payees", row)
	batch.insert()
	return batch.name


# ---- tax remittance ------------------------------------------------------------------------


def tax_lines(entry):
	"""{account: credit left on it} of a Journal Entry's credit lines on Liability accounts, tax
	accounts first."""
	lines = {}
	for line in entry.accounts:
		net = flt(line.credit_in_account_currency) - flt(line.debit_in_account_currency)
		root, account_type = frappe.get_cached_value("Account", line.account, ["root_type", "account_type"])
		if net > 0 and root == "Liability" and account_type not in ("Payable", "Receivable"):
			lines[line.account] = lines.get(line.account, 0) + net
	return dict(sorted(lines.items(), key=lambda item: frappe.get_cached_value("Account", item[0], "account_type") != "Tax"))


@frappe.whitelist()
def make_tax_remittance(doctype, name, mpesa_settings, prn, tax_account=None, amount=None, remarks=None):
	"""A draft batch remitting tax to KRA against ``prn`` for a submitted Journal Entry (the tax it
	credited to ``tax_account``, by default its tax account) or Purchase Invoice (what is unpaid);
	returns the batch's name. Bad input is named in the error and nothing is made."""
	if not active():
		frappe.throw(_("Remitting tax by M-Pesa needs ERPNext"))
	if doctype not in TAX_DOCTYPES:
		frappe.throw(_("Tax is remitted from a Journal Entry or a Purchase Invoice, not a {0}").format(_(doctype)))
	frappe.has_permission(B2C, "create", throw=True)
	doc = frappe.get_doc(doctype, name)
	doc.check_permission("read")
	where = f"{_(doctype)} {name}"
	if doc.docstatus != 1:
		frappe.throw(_("{0} is not submitted").format(where))
	try:
		prn = payees.prn(prn)
	except ValueError as error:
		frappe.throw(_("{0}: PRN {1}").format(where, error))
	company = frappe.db.get_value(SETTINGS, mpesa_settings, "company")
	if company and doc.company != company:
		frappe.throw(_("{0} is of company {1}, not {2}'s {3}").format(where, doc.company, mpesa_settings, company))
	other = already_in_a_batch(doctype, name)
	if other:
		frappe.throw(_("{0} is already paid by disbursement {1}").format(where, other))
	row = {"payout_kind": payees.TAX, "account_reference": prn, "reference_doctype": doctype, "reference_name": name}
	if doctype == "Journal Entry":
		lines = tax_lines(doc)
		tax_account = tax_account or next(iter(lines), None)
		if not tax_account:
			frappe.throw(_("{0} credits no tax account: choose the Tax Account").format(where))
		due = lines.get(tax_account, 0)
		row.update(debit_account=tax_account, payee_name=_("Kenya Revenue Authority"))
	else:
		due = flt(doc.outstanding_amount)
		row.update(party_type="Supplier", party=doc.supplier, payee_name=doc.supplier_name)
	amount = flt(amount) or due
	if amount <= 0:
		frappe.throw(_("{0} has no tax left to pay").format(where))
	if due and amount > due:
		frappe.throw(_("{0}: {1} is more than the {2} it owes").format(where, amount, due))
	row.update(amount=amount, remarks=f"Tax {doctype} {name}"[:100])
	batch = frappe.get_doc(
		{
			"doctype": B2C,
			"mpesa_settings": mpesa_settings,
			"command_id": "BusinessPayment",
			"remarks": remarks or _("Tax to KRA, PRN {0}").format(prn),
			"payees": [row],
		}
	)
	batch.insert()
	return batch.name


def validate_batch(doc, method=None):
	"""doc_events: a tax row's account, before anything is approved: defaulted from its Journal
	Entry, an account of the shortcode's company; the error names the row and the field."""
	if not active() or not doc.meta.get_field("payees"):
		return
	company = frappe.db.get_value(SETTINGS, doc.mpesa_settings, "company")
	for row in doc.payees:
		if row.payout_kind != payees.TAX or row.reference_doctype == "Purchase Invoice":
			continue
		if not row.get("debit_account") and row.reference_doctype == "Journal Entry" and row.reference_name:
			row.debit_account = next(iter(tax_lines(frappe.get_doc("Journal Entry", row.reference_name))), None)
		if not row.get("debit_account"):
			frappe.throw(_("Payee row {0}: Tax Account is not set: the tax liability this remittance pays").format(row.idx))
		account = frappe.db.get_value("Account", row.debit_account, ["company", "is_group"], as_dict=True)
		if not account or account.is_group or (company and account.company != company):
			frappe.throw(
				_("Payee row {0}: Tax Account {1} is not a ledger of company {2}").format(row.idx, row.debit_account, company)
			)


# ---- posting -------------------------------------------------------------------------------


def on_payee_change(doc, method=None):
	"""doc_events: a payee row that reached Completed is posted by a job after this commit."""
	if doc.status != "Completed" or doc.ledger_entry or not active():
		return
	frappe.enqueue(
		"frappe_mpesa.erpnext.payouts.post_row",
		row_name=doc.name,
		queue="short",
		enqueue_after_commit=True,
	)


def post_pending(limit=500):
	"""Post every Completed payee row without a ledger entry (the scheduler's catch-up, and what a
	person runs after fixing an account); returns how many were posted."""
	if not active():
		return 0
	posted = 0
	for name in frappe.get_all(
		PAYEE,
		filters={"status": "Completed", "ledger_entry": ("is", "not set"), "docstatus": 1},
		pluck="name",
		order_by="completed_on asc",
		limit=limit,
	):
		if post_row(name):
			posted += 1
	return posted


def post_batch(name):
	"""Post every Completed row of batch ``name`` still without a ledger entry; returns how many."""
	posted = 0
	for row in frappe.get_all(
		PAYEE, filters={"parent": name, "status": "Completed", "ledger_entry": ("is", "not set")}, pluck="name"
	):
		if post_row(row):
			posted += 1
	return posted


def post_row(row_name):
	"""The ledger entry of one completed payee, made once; returns its name, or None. Commits.

	Runs as the job's user (Administrator) or a scheduler: the app posts what Daraja confirmed, so
	permissions are not asked for; a failure is logged and left for ``post_pending``."""
	if not active():
		return None
	frappe.db.commit()  # a fresh snapshot: the row as committed now
	row = frappe.db.get_value(PAYEE, row_name, "*", as_dict=True)
	if not row or row.status != "Completed" or row.ledger_entry or not row.transaction_receipt:
		return None
	try:
		entry = make_entry(row)
		frappe.db.sql(
			f"update `tab{PAYEE}` set ledger_entry_type = %s, ledger_entry = %s where name = %s and ledger_entry is null",
			(entry.doctype, entry.name, row_name),
		)
		if frappe.db._cursor.rowcount != 1:
			# Another job posted this receipt first: this entry is undone with its transaction.
			frappe.db.rollback()
			return None
		frappe.db.commit()
		return entry.name
	except Exception:
		frappe.db.rollback()
		frappe.log_error(title=f"M-Pesa payout {row_name}: ledger entry not made")
		frappe.db.set_value(
			PAYEE,
			row_name,
			"error",
			_("Ledger entry not made: {0}").format(frappe.get_traceback(with_context=False).strip().splitlines()[-1])[:1000],
			update_modified=False,
		)
		frappe.db.commit()
		return None


def accounting(batch):
	"""The shortcode's company, M-Pesa clearing account, cost center, Mode of Payment and charges account."""
	meta = frappe.get_meta(SETTINGS)
	fields = [f for f in ("company", "mpesa_account", "cost_center", "mode_of_payment", "b2c_charges_account") if meta.has_field(f)]
	values = frappe.db.get_value(SETTINGS, batch.mpesa_settings, fields, as_dict=True) or frappe._dict()
	if not values.get("company") or not values.get("mpesa_account"):
		frappe.throw(
			_("Mpesa Settings {0}: set its Company and M-Pesa Clearing Account before payouts are posted").format(
				batch.mpesa_settings
			)
		)
	return values


def make_entry(row):
	batch = frappe.db.get_value(B2C, row.parent, "*", as_dict=True)
	books = accounting(batch)
	date = getdate(row.completed_on) if row.completed_on else getdate(nowdate())
	charges = flt(row.charges)
	if row.reference_doctype in PAYMENT_ENTRY_DOCTYPES:
		entry = payment_entry(row, books, date)
		if charges:
			journal_entry(
				row, books, date, charge_lines(books, charges),
				_("M-Pesa charges of payout {0}, receipt {1}").format(row.parent, row.transaction_receipt),
			)
		return entry
	if row.payout_kind == payees.TAX:
		if not row.debit_account:
			frappe.throw(_("Payee row {0}: set the Tax Account this remittance pays").format(row.idx))
		debit, party_type, party = row.debit_account, None, None
		remark = _("M-Pesa tax remittance {0} to KRA, PRN {1}, receipt {2}").format(
			row.parent, row.account_reference, row.transaction_receipt
		)
	elif row.reference_doctype == "Salary Slip":
		slip = frappe.db.get_value(
			"Salary Slip", row.reference_name, ["employee", "company", "payroll_entry"], as_dict=True
		)
		debit = payroll_payable_account(slip)
		party_type, party = "Employee", slip.employee
		remark = None
	else:
		debit = batch.get("payout_account")
		if not debit:
			frappe.throw(_("Disbursement {0}: set the account for payees without a document").format(batch.name))
		party_type, party = row.party_type, row.party
		remark = None
	accounts = paid_lines(books, debit, flt(row.amount), party_type, party)
	if charges:
		accounts += charge_lines(books, charges)
	remark = remark or _("M-Pesa payout {0} to {1} ({2}), receipt {3}").format(
		row.parent, row.payee_name or row.party or row.phone, row.phone or row.party_shortcode, row.transaction_receipt
	)
	return journal_entry(row, books, date, accounts, remark)


def payroll_payable_account(slip):
	account = None
	if slip.payroll_entry:
		account = frappe.db.get_value("Payroll Entry", slip.payroll_entry, "payroll_payable_account")
	account = account or frappe.get_cached_value("Company", slip.company, "default_payroll_payable_account")
	if not account:
		frappe.throw(_("Company {0} has no Default Payroll Payable Account").format(slip.company))
	return account


def party_line(account, party_type, party):
	"""The party of a line, where the account keeps one (Payable or Receivable)."""
	if party_type and party and frappe.get_cached_value("Account", account, "account_type") in ("Payable", "Receivable"):
		return {"party_type": party_type, "party": party}
	return {}


def paid_lines(books, debit_account, amount, party_type=None, party=None):
	"""``amount`` paid out of the M-Pesa clearing account to ``debit_account``."""
	return [
		{
			"account": debit_account,
			"debit_in_account_currency": amount,
			"cost_center": books.get("cost_center"),
			**party_line(debit_account, party_type, party),
		},
		{"account": books.mpesa_account, "credit_in_account_currency": amount, "cost_center": books.get("cost_center")},
	]


def charge_lines(books, charges):
	account = books.get("b2c_charges_account")
	if not account:
		frappe.throw(_("Set the B2C Charges Account on Mpesa Settings: the result reports charges"))
	return paid_lines(books, account, charges)


def journal_entry(row, books, date, accounts, remark):
	"""The one Journal Entry builder: a Bank Entry of ``accounts`` carrying the row's receipt."""
	entry = frappe.get_doc(
		{
			"doctype": "Journal Entry",
			"voucher_type": "Bank Entry",
			"company": books.company,
			"posting_date": date,
			"cheque_no": row.transaction_receipt,
			"cheque_date": date,
			"mode_of_payment": books.get("mode_of_payment"),
			"user_remark": remark,
			"accounts": accounts,
		}
	)
	entry.flags.ignore_permissions = True
	entry.insert()
	entry.submit()
	return entry


def payment_entry(row, books, date):
	amount = flt(row.amount)
	if row.reference_doctype == "Purchase Invoice":
		from erpnext.accounts.doctype.payment_entry.payment_entry import get_payment_entry

		entry = get_payment_entry(
			row.reference_doctype, row.reference_name, party_amount=amount, bank_account=books.mpesa_account
		)
	else:
		from hrms.overrides.employee_payment_entry import get_payment_entry_for_employee

		entry = get_payment_entry_for_employee(
			row.reference_doctype, row.reference_name, party_amount=amount, bank_account=books.mpesa_account
		)
	entry.paid_from = books.mpesa_account
	entry.paid_amount = entry.received_amount = amount
	for reference in entry.references:
		reference.allocated_amount = min(flt(reference.outstanding_amount) or amount, amount)
	entry.posting_date = date
	entry.reference_no = row.transaction_receipt
	entry.reference_date = date
	entry.mode_of_payment = books.get("mode_of_payment") or entry.mode_of_payment
	entry.cost_center = books.get("cost_center") or entry.cost_center
	entry.remarks = _("M-Pesa payout {0}, receipt {1}").format(row.parent, row.transaction_receipt)
	entry.flags.ignore_permissions = True
	entry.insert()
	entry.submit()
	return entry
