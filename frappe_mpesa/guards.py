"""What only the app writes stays out of users' hands.

The app moves its records' states and records Daraja's answers with ``frappe.db.set_value`` /
``db_set`` under a row lock, which runs no controller. So any save that reaches a controller
(REST PUT /api/resource, Desk's form save, ``frappe.client.set_value`` or ``save``, data import) is
a user's, and must leave those fields exactly as stored. ``read_only`` in the DocType only hides
the input in the browser; these checks are the rule.
"""

import frappe
from frappe import _
from frappe.utils import cstr, flt, get_datetime

NUMBER_TYPES = ("Currency", "Float", "Percent", "Int", "Check")


def comparable(doc, fieldname, value):
	"""``value`` as the field's type stores it, so "100" and 100.0, or a datetime and its text, agree;
	every kind of empty is None."""
	if value in (None, ""):
		return None
	fieldtype = doc.meta.get_field(fieldname).fieldtype
	if fieldtype in NUMBER_TYPES:
		return flt(value) or None
	if fieldtype == "Datetime":
		return get_datetime(value)
	return cstr(value)


def changed(doc, fieldnames, defaults=None):
	"""The fields among ``fieldnames`` whose value on ``doc`` differs from the stored row; for a new
	document, from ``defaults`` (else empty)."""
	before = doc.get_doc_before_save() if not doc.is_new() else None
	if before is None and not doc.is_new():
		before = frappe.get_doc(doc.doctype, doc.name, for_update=True)
	stored = before.get if before is not None else (defaults or {}).get
	return [
		fieldname
		for fieldname in fieldnames
		if comparable(doc, fieldname, doc.get(fieldname)) != comparable(doc, fieldname, stored(fieldname))
	]


def refuse_changes(doc, fieldnames, defaults=None):
	"""Throw PermissionError naming the first of ``fieldnames`` a user tried to change."""
	fields = changed(doc, fieldnames, defaults)
	if fields:
		label = doc.meta.get_field(fields[0]).label or fields[0]
		frappe.throw(
			_("{0} of {1} is written only by the app, never by a user").format(_(label), _(doc.doctype)),
			frappe.PermissionError,
		)


def refuse_user_save(doc):
	"""For records only the app writes: its own insert passes (it sets ignore_permissions); a
	user's insert, and every save of a stored record, is refused."""
	if doc.is_new() and doc.flags.ignore_permissions:
		return
	frappe.throw(
		_("{0} records are written only by the app, never by a user").format(_(doc.doctype)),
		frappe.PermissionError,
	)
