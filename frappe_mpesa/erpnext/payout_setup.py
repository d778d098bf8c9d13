"""The fields payouts need where ERPNext is installed, as Custom Fields (see ``setup`` for why):

- Mpesa Settings: the expense account B2C charges are posted to;
- Employee: the M-Pesa number salaries, claims and advances are paid to;
- Supplier: the M-Pesa number a supplier is paid to by B2C, and (for B2B payouts, later) the
  paybill or till and the account reference;
- B2C Payment Disbursement: the account a payee paid for no document is debited to.

Made after install, after migrate and when ERPNext is installed later; removed when either app is
uninstalled, by the same hooks as ``setup``'s.
"""

import frappe
from frappe.custom.doctype.custom_field.custom_field import create_custom_fields

from frappe_mpesa.erpnext import ERPNEXT_APP, SETTINGS, active

B2C = "B2C Payment Disbursement"

CUSTOM_FIELDS = {
	SETTINGS: [
		{
			"fieldname": "b2c_charges_account",
			"fieldtype": "Link",
			"options": "Account",
			"label": "B2C Charges Account",
			"insert_after": "cost_center",
			"description": "The expense account B2C charges are posted to, where Daraja's result reports them.",
		},
	],
	"Employee": [
		{
			"fieldname": "mpesa_number",
			"fieldtype": "Data",
			"options": "Phone",
			"label": "M-Pesa Number",
			"insert_after": "cell_number",
			"description": "Salaries, expense claims and advances are paid to this number by M-Pesa.",
		},
	],
	"Supplier": [
		{
			"fieldname": "section_mpesa",
			"fieldtype": "Section Break",
			"label": "M-Pesa",
			"insert_after": "supplier_details",
			"collapsible": 1,
		},
		{
			"fieldname": "mpesa_number",
			"fieldtype": "Data",
			"options": "Phone",
			"label": "M-Pesa Number",
			"insert_after": "section_mpesa",
		},
		{
			"fieldname": "mpesa_paybill",
			"fieldtype": "Data",
			"label": "M-Pesa Paybill",
			"insert_after": "mpesa_number",
		},
		{
			"fieldname": "mpesa_till",
			"fieldtype": "Data",
			"label": "M-Pesa Till",
			"insert_after": "mpesa_paybill",
		},
		{
			"fieldname": "mpesa_account_reference",
			"fieldtype": "Data",
			"label": "M-Pesa Account Reference",
			"insert_after": "mpesa_till",
			"description": "The account number at the supplier's paybill.",
		},
	],
	B2C: [
		{
			"fieldname": "payout_account",
			"fieldtype": "Link",
			"options": "Account",
			"label": "Account for Payees Without a Document",
			"insert_after": "occasion",
			"description": "Debited by the Journal Entry of each completed payee that pays no document.",
		},
	],
}


def after_install():
	if active():
		make_fields()


def after_migrate():
	if active():
		make_fields()


def after_app_install(app_name):
	if app_name == ERPNEXT_APP:
		make_fields()


def before_app_uninstall(app_name):
	if app_name == ERPNEXT_APP:
		remove_fields()


def before_uninstall():
	remove_fields()


def make_fields():
	fields = {dt: f for dt, f in CUSTOM_FIELDS.items() if frappe.db.exists("DocType", dt)}
	create_custom_fields(fields, ignore_validate=True, update=True)
	for doctype in fields:
		frappe.clear_cache(doctype=doctype)


def remove_fields():
	for doctype, fields in CUSTOM_FIELDS.items():
		for field in fields:
			name = frappe.db.get_value("Custom Field", {"dt": doctype, "fieldname": field["fieldname"]})
			if name:
				frappe.delete_doc("Custom Field", name, ignore_permissions=True, force=True)
		frappe.clear_cache(doctype=doctype)
