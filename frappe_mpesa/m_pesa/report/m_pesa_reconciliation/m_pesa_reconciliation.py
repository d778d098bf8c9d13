# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""M-Pesa Reconciliation: each receipt, and where it is: in the register, in a submitted Payment
Entry for its full amount (ERPNext only), in an imported M-Pesa statement (when the statement
import DocType is installed). A receipt missing from any one of them is flagged. Receipts a
statement lists that the register lacks are rows too."""

import frappe
from frappe import _
from frappe.utils import add_days, flt, getdate, nowdate

C2B = "Mpesa C2B Payment Register"
STATEMENT_LINE = "Mpesa Statement Import Line"
STATEMENT = "Mpesa Statement Import"
# Receipts that need no Payment Entry: set aside by hand, reversed, or booked through the POS
# Invoice they were applied to at the till.
NO_ENTRY_NEEDED = ("Cancelled", "Reversed", "In POS Invoice")


def has_entries():
	return "erpnext" in frappe.get_installed_apps() and frappe.get_meta(C2B).has_field("payment_entry")


def has_statements():
	return bool(frappe.db.exists("DocType", STATEMENT_LINE)) and bool(frappe.db.exists("DocType", STATEMENT))


def execute(filters=None):
	filters = frappe._dict(filters or {})
	entries, statements = has_entries(), has_statements()
	rows = data(filters, entries, statements)
	if filters.only_flagged:
		rows = [row for row in rows if row.flag]
	return columns(entries, statements), rows


def columns(entries, statements):
	cols = [
		{"fieldname": "trans_id", "label": _("Receipt"), "fieldtype": "Data", "width": 130},
		{"fieldname": "trans_time", "label": _("Time"), "fieldtype": "Datetime", "width": 140},
		{"fieldname": "mpesa_settings", "label": _("Mpesa Settings"), "fieldtype": "Link", "options": "Mpesa Settings", "width": 140},
		{"fieldname": "amount", "label": _("Amount"), "fieldtype": "Currency", "options": "currency", "width": 120},
		{"fieldname": "status", "label": _("Status"), "fieldtype": "Data", "width": 120},
		{"fieldname": "in_register", "label": _("In Register"), "fieldtype": "Check", "width": 100},
	]
	if entries:
		cols += [
			{"fieldname": "payment_entry", "label": _("Payment Entry"), "fieldtype": "Link", "options": "Payment Entry", "width": 150},
			{"fieldname": "in_payment_entry", "label": _("In Payment Entry"), "fieldtype": "Check", "width": 120},
		]
	if statements:
		cols.append({"fieldname": "in_statement", "label": _("In Statement"), "fieldtype": "Check", "width": 110})
	cols += [
		{"fieldname": "flag", "label": _("Missing"), "fieldtype": "Data", "width": 170},
		{"fieldname": "currency", "label": _("Currency"), "fieldtype": "Data", "hidden": 1},
	]
	return cols


def data(filters, entries, statements):
	from_date = getdate(filters.from_date or add_days(nowdate(), -30))
	to_date = getdate(filters.to_date or nowdate())
	if from_date > to_date:
		frappe.throw(_("From Date {0} is after To Date {1}").format(from_date, to_date))
	values = {"from_time": f"{from_date} 00:00:00", "to_time": f"{to_date} 23:59:59.999999"}
	where = "r.trans_time >= %(from_time)s and r.trans_time <= %(to_time)s"
	if filters.mpesa_settings:
		where += " and r.mpesa_settings = %(mpesa_settings)s"
		values["mpesa_settings"] = filters.mpesa_settings
	entry_columns = (
		", r.payment_entry, pe.docstatus as pe_docstatus, pe.received_amount as pe_amount" if entries else ""
	)
	entry_join = "left join `tabPayment Entry` pe on pe.name = r.payment_entry" if entries else ""
	rows = frappe.db.sql(
		f"""select r.name as trans_id, r.trans_time, r.mpesa_settings, r.trans_amount as amount, r.status,
			ifnull(r.currency, 'KES') as currency{entry_columns}
		from `tab{C2B}` r {entry_join}
		where {where} order by r.trans_time desc""",
		values,
		as_dict=True,
	)
	listed = set()
	if statements:
		listed = statement_receipts([row.trans_id for row in rows])
		rows += statement_only(filters, values)
	for row in rows:
		row.in_register = int(row.get("in_register", 1))
		missing = [] if row.in_register else [_("register")]
		if entries and row.in_register:
			row.in_payment_entry = int(
				bool(row.payment_entry) and row.pe_docstatus == 1 and flt(row.pe_amount, 2) == flt(row.amount, 2)
			)
			if not row.in_payment_entry and row.status not in NO_ENTRY_NEEDED:
				missing.append(_("Payment Entry"))
		if statements:
			row.in_statement = int(row.get("in_statement", row.trans_id in listed))
			if not row.in_statement:
				missing.append(_("statement"))
		row.flag = ", ".join(missing)
		row.amount = flt(row.amount, 2)
	return rows


def statement_receipts(names):
	if not names:
		return set()
	return set(
		frappe.get_all(STATEMENT_LINE, filters={"receipt": ("in", names), "parenttype": STATEMENT}, pluck="receipt")
	)


def statement_only(filters, values):
	"""Statement lines in the period whose receipt the register lacks."""
	where = "l.completed_at >= %(from_time)s and l.completed_at <= %(to_time)s"
	if filters.mpesa_settings:
		where += " and s.mpesa_settings = %(mpesa_settings)s"
	rows = frappe.db.sql(
		f"""select distinct l.receipt as trans_id, l.completed_at as trans_time, s.mpesa_settings,
			l.amount, 'KES' as currency
		from `tab{STATEMENT_LINE}` l join `tab{STATEMENT}` s on s.name = l.parent and l.parenttype = %(parenttype)s
		left join `tab{C2B}` r on r.name = l.receipt
		where {where} and r.name is null and ifnull(l.receipt, '') != ''""",
		dict(values, parenttype=STATEMENT),
		as_dict=True,
	)
	for row in rows:
		row.update(in_register=0, in_statement=1, status="")
	return rows
