# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""M-Pesa Payouts: every payee of every payout batch (B2C, B2B, tax), by batch, payee, status and charges; with a
party filter, one employee's (or supplier's) payout history."""

import frappe
from frappe import _

B2C = "B2C Payment Disbursement"
PAYEE = "B2C Disbursement Payee"


def execute(filters=None):
	filters = frappe._dict(filters or {})
	return columns(), data(filters)


def columns():
	return [
		{"fieldname": "batch", "label": _("Batch"), "fieldtype": "Link", "options": B2C, "width": 140},
		{"fieldname": "batch_status", "label": _("Batch Status"), "fieldtype": "Data", "width": 110},
		{"fieldname": "payout_kind", "label": _("Kind"), "fieldtype": "Data", "width": 90},
		{"fieldname": "party_type", "label": _("Party Type"), "fieldtype": "Data", "width": 90},
		{"fieldname": "party", "label": _("Party"), "fieldtype": "Dynamic Link", "options": "party_type", "width": 130},
		{"fieldname": "payee_name", "label": _("Payee"), "fieldtype": "Data", "width": 150},
		{"fieldname": "phone", "label": _("Phone"), "fieldtype": "Data", "width": 120},
		{"fieldname": "amount", "label": _("Amount"), "fieldtype": "Currency", "width": 110},
		{"fieldname": "status", "label": _("Status"), "fieldtype": "Data", "width": 100},
		{"fieldname": "transaction_receipt", "label": _("Receipt"), "fieldtype": "Data", "width": 120},
		{"fieldname": "charges", "label": _("Charges"), "fieldtype": "Currency", "width": 90},
		{"fieldname": "completed_on", "label": _("Completed On"), "fieldtype": "Datetime", "width": 150},
		{"fieldname": "reference_doctype", "label": _("Paid Document Type"), "fieldtype": "Data", "width": 120},
		{"fieldname": "reference_name", "label": _("Paid Document"), "fieldtype": "Dynamic Link", "options": "reference_doctype", "width": 140},
		{"fieldname": "ledger_entry_type", "label": _("Ledger Entry Type"), "fieldtype": "Data", "width": 110},
		{"fieldname": "ledger_entry", "label": _("Ledger Entry"), "fieldtype": "Dynamic Link", "options": "ledger_entry_type", "width": 140},
	]


def data(filters):
	conditions = ["b.docstatus < 2", "p.retried = 0"]
	values = {}
	for key, column in (
		("batch", "b.name"),
		("mpesa_settings", "b.mpesa_settings"),
		("status", "p.status"),
		("payout_kind", "p.payout_kind"),
		("party_type", "p.party_type"),
		("party", "p.party"),
		("phone", "p.phone"),
	):
		if filters.get(key):
			conditions.append(f"{column} = %({key})s")
			values[key] = filters[key]
	if filters.get("from_date"):
		conditions.append("date(coalesce(p.completed_on, b.creation)) >= %(from_date)s")
		values["from_date"] = filters.from_date
	if filters.get("to_date"):
		conditions.append("date(coalesce(p.completed_on, b.creation)) <= %(to_date)s")
		values["to_date"] = filters.to_date
	return frappe.db.sql(
		f"""select b.name as batch, b.status as batch_status, p.payout_kind, p.party_type, p.party, p.payee_name, p.phone,
			p.amount, p.status, p.transaction_receipt, p.charges, p.completed_on, p.reference_doctype,
			p.reference_name, p.ledger_entry_type, p.ledger_entry
		from `tab{PAYEE}` p join `tab{B2C}` b on b.name = p.parent and p.parenttype = '{B2C}'
		where {" and ".join(conditions)}
		order by b.creation desc, p.idx asc""",
		values,
		as_dict=True,
	)
