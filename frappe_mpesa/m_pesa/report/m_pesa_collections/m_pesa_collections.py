# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""M-Pesa Collections: C2B receipts by day, shortcode and status, with what was matched against
what was not (a chart per day and a summary). Reads only the register: works on Frappe alone."""

import frappe
from frappe import _
from frappe.utils import add_days, flt, getdate, nowdate

C2B = "Mpesa C2B Payment Register"
# Matched: the account number named a document (posted or not); Unmatched: it named nothing.
MATCHED = ("Matched", "Posted", "Partly allocated")
UNMATCHED = ("Unmatched",)


def execute(filters=None):
	filters = frappe._dict(filters or {})
	rows = data(filters)
	return columns(), rows, None, chart(rows), summary(rows)


def columns():
	return [
		{"fieldname": "day", "label": _("Date"), "fieldtype": "Date", "width": 110},
		{"fieldname": "mpesa_settings", "label": _("Mpesa Settings"), "fieldtype": "Link", "options": "Mpesa Settings", "width": 180},
		{"fieldname": "business_shortcode", "label": _("Shortcode"), "fieldtype": "Data", "width": 100},
		{"fieldname": "status", "label": _("Status"), "fieldtype": "Data", "width": 130},
		{"fieldname": "receipts", "label": _("Receipts"), "fieldtype": "Int", "width": 90},
		{"fieldname": "amount", "label": _("Amount"), "fieldtype": "Currency", "options": "currency", "width": 140},
		{"fieldname": "currency", "label": _("Currency"), "fieldtype": "Data", "hidden": 1},
	]


def conditions(filters):
	"""The WHERE clause and its values for the report's filters."""
	where, values = ["1=1"], {}
	from_date = getdate(filters.from_date or add_days(nowdate(), -30))
	to_date = getdate(filters.to_date or nowdate())
	if from_date > to_date:
		frappe.throw(_("From Date {0} is after To Date {1}").format(from_date, to_date))
	where.append("trans_time >= %(from_time)s and trans_time <= %(to_time)s")
	values.update(from_time=f"{from_date} 00:00:00", to_time=f"{to_date} 23:59:59.999999")
	if filters.mpesa_settings:
		where.append("mpesa_settings = %(mpesa_settings)s")
		values["mpesa_settings"] = filters.mpesa_settings
	if filters.status:
		where.append("status = %(status)s")
		values["status"] = filters.status
	return " and ".join(where), values


def data(filters):
	where, values = conditions(filters)
	rows = frappe.db.sql(
		f"""select date(trans_time) as day, mpesa_settings, business_shortcode, status,
			count(*) as receipts, sum(trans_amount) as amount, max(ifnull(currency, '')) as currency
		from `tab{C2B}` where {where}
		group by date(trans_time), mpesa_settings, business_shortcode, status
		order by day desc, mpesa_settings, status""",
		values,
		as_dict=True,
	)
	for row in rows:
		row.amount = flt(row.amount, 2)
		row.currency = row.currency or "KES"
	return rows


def totals(rows):
	matched = sum(r.amount for r in rows if r.status in MATCHED)
	unmatched = sum(r.amount for r in rows if r.status in UNMATCHED)
	return flt(matched, 2), flt(unmatched, 2), flt(sum(r.amount for r in rows), 2)


def chart(rows):
	days = sorted({r.day for r in rows})
	by = {(r.day, "m" if r.status in MATCHED else "u" if r.status in UNMATCHED else "o"): 0 for r in rows}
	for r in rows:
		key = (r.day, "m" if r.status in MATCHED else "u" if r.status in UNMATCHED else "o")
		by[key] = flt(by[key] + r.amount, 2)
	return {
		"data": {
			"labels": [str(day) for day in days],
			"datasets": [
				{"name": _("Matched"), "values": [by.get((day, "m"), 0) for day in days]},
				{"name": _("Unmatched"), "values": [by.get((day, "u"), 0) for day in days]},
			],
		},
		"type": "bar",
		"barOptions": {"stacked": 1},
		"colors": ["#28a745", "#fd7e14"],
		"fieldtype": "Currency",
		"options": "KES",
	}


def summary(rows):
	matched, unmatched, total = totals(rows)
	currency = {"datatype": "Currency", "currency": "KES"}
	return [
		{"label": _("Collected"), "value": total, "indicator": "Blue", **currency},
		{"label": _("Matched"), "value": matched, "indicator": "Green", **currency},
		{"label": _("Unmatched"), "value": unmatched, "indicator": "Orange", **currency},
		{"label": _("Receipts"), "value": sum(r.receipts for r in rows), "datatype": "Int", "indicator": "Blue"},
	]
