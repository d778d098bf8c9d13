"""The database side of ``matching``: a settings record's rules, the lookup each rule makes,
the payer-phone rule, and what validation and posting need to know of the document found."""

from decimal import Decimal
from functools import partial

import frappe
from frappe.utils import flt

from frappe_mpesa import matching

# SQL's version of matching.normalise (upper case, without spaces, dashes, underscores, dots,
# slashes): used only when no exact spelling was found.
_STRIPPED = ("' '", "'-'", "'_'", "'.'", "'/'", "'\\\\'")


def rules_of(settings):
	"""The settings record's rules in order (the defaults when it has none), plus the phone rule
	last when the record asks for it."""
	rows = settings.get("c2b_matching_rules") or []
	rules = [matching.Rule(row.reference_doctype, (row.reference_field or "name").strip()) for row in rows]
	rules = rules or list(matching.DEFAULT_RULES)
	if settings.get("c2b_match_phone"):
		rules.append(matching.PHONE_RULE)
	return rules


def _normalised_column(column):
	expression = f"`{column}`"
	for char in _STRIPPED:
		expression = f"replace({expression}, {char}, '')"
	return f"upper({expression})"


def lookup(rule, key, spellings, prefix=""):
	"""The name of the one document of ``rule.doctype`` whose ``rule.field`` is the reference:
	an exact (indexed) spelling first, then the normalised comparison (the field's value with or
	without the prefix customers leave out); None when nothing, or more than one document,
	answers to it."""
	if not frappe.db.table_exists(rule.doctype):
		return None
	meta = frappe.get_meta(rule.doctype)
	field = rule.field or "name"
	if field != "name" and not meta.has_field(field):
		return None
	for spelling in spellings:
		names = frappe.get_all(rule.doctype, filters={field: spelling}, pluck="name", limit=2)
		if len(names) == 1:
			return names[0]
		if names:
			return None  # ambiguous: a person decides
	keys = [key] + ([matching.normalise(prefix) + key] if prefix else [])
	names = frappe.db.sql(
		f"select name from `tab{rule.doctype}` where {_normalised_column(field)} in %s limit 2", (keys,)
	)
	return names[0][0] if len(names) == 1 else None


def phone_lookup(msisdn):
	"""The Contact (linked to a Customer) whose phone, hashed as Daraja hashes it, is the payer's;
	None when the MSISDN is masked or several Contacts share the number."""
	wanted = matching.msisdn_key(msisdn)
	if not wanted:
		return None
	rows = frappe.db.sql(
		"""select distinct phone.parent, phone.phone from `tabContact Phone` phone
		join `tabDynamic Link` link on link.parenttype = 'Contact' and link.parent = phone.parent
			and link.link_doctype = 'Customer'""",
		as_dict=True,
	)
	found = {row.parent for row in rows if matching.msisdn_key(row.phone) == wanted}
	return found.pop() if len(found) == 1 else None


def find(settings, reference, msisdn=None):
	"""The Match for a payment's account number (and payer) under ``settings``' rules, or None."""
	rules = rules_of(settings)
	prefix = settings.get("c2b_account_prefix") or ""
	found = matching.match(reference, rules, partial(lookup, prefix=prefix), prefix=prefix)
	if found is None and matching.PHONE_RULE in rules:
		contact = phone_lookup(msisdn)
		if contact:
			found = matching.Match(matching.PHONE_RULE, contact)
	return found


def customer_of(doctype, name):
	"""The Customer a matched document belongs to, or None."""
	if doctype == "Customer":
		return name
	if doctype == "Contact":
		return frappe.db.get_value(
			"Dynamic Link",
			{"parenttype": "Contact", "parent": name, "link_doctype": "Customer"},
			"link_name",
		)
	if frappe.get_meta(doctype).has_field("customer"):
		return frappe.db.get_value(doctype, name, "customer")
	return None


def sales_order_outstanding(name):
	row = frappe.db.get_value(
		"Sales Order", name, ["grand_total", "rounded_total", "advance_paid", "per_billed"], as_dict=True
	)
	if flt(row.per_billed) >= 100:
		return Decimal(0)
	total = flt(row.rounded_total) or flt(row.grand_total)
	return Decimal(str(flt(total - flt(row.advance_paid), 2)))


def target(found):
	"""The matching.Target validation judges for a Match."""
	doctype, name = found.rule.doctype, found.name
	meta = frappe.get_meta(doctype)
	fields = ["name"]
	if meta.is_submittable:
		fields.append("docstatus")
	if meta.has_field("disabled"):
		fields.append("disabled")
	if meta.has_field("outstanding_amount"):
		fields.append("outstanding_amount")
	row = frappe.db.get_value(doctype, name, fields, as_dict=True)
	outstanding = None
	if row.get("outstanding_amount") is not None:
		outstanding = Decimal(str(flt(row.outstanding_amount, 2)))
	elif doctype == "Sales Order" and row.get("docstatus") == 1:
		outstanding = sales_order_outstanding(name)
	elif doctype == "Sales Order":
		outstanding = Decimal(0)
	return matching.Target(
		doctype,
		name,
		int(row.get("docstatus", 1)) if meta.is_submittable else 1,
		outstanding,
		bool(row.get("disabled")),
	)
