"""Accounting per shortcode on Mpesa Settings, and the fields ERPNext needs on the app's records.

Each settings record (one shortcode) belongs to one Company and posts to one receiving account,
the M-Pesa clearing account (Bank or Cash), with a Mode of Payment and a cost center.

Why Custom Fields: a Link to Company, Account, Mode of Payment or Payment Entry names a DocType
only ERPNext has. Migrate would accept such a field in our DocType JSON (imports skip
validation), but on Frappe alone every save of the record would look the link target's table up
and fail, and Desk would offer links to nowhere. So the DocType JSONs hold only what works
everywhere, and these fields are Custom Fields made where ERPNext is installed (after install,
after migrate, when ERPNext is installed later), and removed when either app is uninstalled, as
ERPNext's regional modules and India Compliance do. The JSON's plain ``company`` (Data) field
becomes a Link to Company through a Property Setter, which keeps its column and its values.

Payouts add theirs to the same table: the expense account B2C charges are posted to (Mpesa
Settings); the M-Pesa number salaries, claims and advances are paid to (Employee); a supplier's
M-Pesa number, paybill or till and account reference (Supplier); the account a payee paid for no
document is debited to (the batch), and the tax account a remittance pays (the payee row).
"""

import frappe
from frappe import _
from frappe.custom.doctype.custom_field.custom_field import create_custom_fields

from frappe_mpesa import matching
from frappe_mpesa.erpnext import B2C, C2B, ERPNEXT_APP, PAYEE, SETTINGS, active

DEFAULT_MODE_OF_PAYMENT = "M-Pesa"
DEFAULT_ACCOUNT_NAME = "M-Pesa"
RECEIVING_ACCOUNT_TYPES = ("Bank", "Cash")

CUSTOM_FIELDS = {
	SETTINGS: [
		{
			"fieldname": "section_accounting",
			"fieldtype": "Section Break",
			"label": "Accounting",
			"insert_after": "c2b_matching_rules",
			"collapsible": 1,
			"description": "Where this shortcode's collections are posted. Left blank, the company's "
			"default cost center, an account \"M-Pesa\" under its bank accounts and a Mode of "
			"Payment \"M-Pesa\" are used (and made when missing).",
		},
		{
			"fieldname": "mpesa_account",
			"fieldtype": "Link",
			"options": "Account",
			"label": "M-Pesa Clearing Account",
			"insert_after": "section_accounting",
			"description": "The Bank or Cash account receipts are paid to.",
		},
		{
			"fieldname": "mode_of_payment",
			"fieldtype": "Link",
			"options": "Mode of Payment",
			"label": "Mode of Payment",
			"insert_after": "mpesa_account",
		},
		{
			"fieldname": "column_break_accounting",
			"fieldtype": "Column Break",
			"insert_after": "mode_of_payment",
		},
		{
			"fieldname": "cost_center",
			"fieldtype": "Link",
			"options": "Cost Center",
			"label": "Cost Center",
			"insert_after": "column_break_accounting",
		},
	],
	C2B: [
		{
			"fieldname": "customer",
			"fieldtype": "Link",
			"options": "Customer",
			"label": "Customer",
			"insert_after": "posting_note",
			"read_only": 1,
			"in_standard_filter": 1,
		},
		{
			# At most one Payment Entry per receipt, and one receipt per Payment Entry: the unique
			# index makes a second link fail in the database whatever path tries it.
			"fieldname": "payment_entry",
			"fieldtype": "Link",
			"options": "Payment Entry",
			"label": "Payment Entry",
			"insert_after": "customer",
			"read_only": 1,
			"unique": 1,
			"no_copy": 1,
		},
		{
			# The draft or submitted POS Invoice a receipt was applied to at the till (erpnext/pos.py):
			# its money reaches the books through that invoice, so it never gets a Payment Entry
			# (LEDGER_CONSTRAINT). Several receipts may pay one POS Invoice: not unique.
			"fieldname": "pos_invoice",
			"fieldtype": "Link",
			"options": "POS Invoice",
			"label": "POS Invoice",
			"insert_after": "payment_entry",
			"read_only": 1,
			"no_copy": 1,
			"search_index": 1,
		},
	],
	# ---- payouts ----
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
			"description": "Invoices paid by M-Pesa B2B go to this paybill, with the account reference below.",
		},
		{
			"fieldname": "mpesa_till",
			"fieldtype": "Data",
			"label": "M-Pesa Till",
			"insert_after": "mpesa_paybill",
			"description": "Or to this till (Buy Goods), when the supplier has no paybill.",
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
	PAYEE: [
		{
			"fieldname": "debit_account",
			"fieldtype": "Link",
			"options": "Account",
			"label": "Tax Account",
			"insert_after": "account_reference",
			"depends_on": "eval:doc.payout_kind=='Tax'",
			"description": "The tax liability a remittance pays: debited by its Journal Entry.",
		},
	],
}
# One ledger entry per receipt, in the database: a register row names a Payment Entry or a POS
# Invoice, never both (MariaDB enforces CHECK constraints; Frappe's schema sync leaves them alone).
LEDGER_CONSTRAINT = "mpesa_receipt_one_ledger_entry"
CUSTOM_FIELDS[SETTINGS].append(
	{
		"fieldname": "b2c_charges_account",
		"fieldtype": "Link",
		"options": "Account",
		"label": "B2C Charges Account",
		"insert_after": "cost_center",
		"description": "The expense account B2C charges are posted to, where Daraja's result reports them.",
	}
)
# The JSON's company field, a Link where ERPNext is there.
PROPERTY_SETTERS = (("company", "fieldtype", "Link", "Select"), ("company", "options", "Company", "Text"))


# ---- install, migrate, uninstall ----------------------------------------------------------


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
	fields = {doctype: f for doctype, f in CUSTOM_FIELDS.items() if frappe.db.exists("DocType", doctype)}
	create_custom_fields(fields, ignore_validate=True, update=True)
	for fieldname, prop, value, property_type in PROPERTY_SETTERS:
		frappe.make_property_setter(
			{
				"doctype": SETTINGS,
				"fieldname": fieldname,
				"property": prop,
				"value": value,
				"property_type": property_type,
			},
			validate_fields_for_doctype=False,
		)
	for doctype in fields:
		frappe.clear_cache(doctype=doctype)
	ensure_ledger_constraint()


def ledger_constraint_exists():
	return bool(
		frappe.db.sql(
			"""select 1 from information_schema.check_constraints
			where constraint_schema = database() and table_name = %s and constraint_name = %s""",
			(f"tab{C2B}", LEDGER_CONSTRAINT),
		)
	)


def ensure_ledger_constraint():
	"""Add LEDGER_CONSTRAINT to the register's table once both its columns are there (MariaDB)."""
	if frappe.db.db_type != "mariadb":
		return
	columns = set(frappe.db.get_table_columns(C2B))
	if not {"payment_entry", "pos_invoice"} <= columns or ledger_constraint_exists():
		return
	frappe.db.sql_ddl(
		f"""alter table `tab{C2B}` add constraint `{LEDGER_CONSTRAINT}`
		check (coalesce(`payment_entry`, '') = '' or coalesce(`pos_invoice`, '') = '')"""
	)


def drop_ledger_constraint():
	if frappe.db.db_type == "mariadb" and ledger_constraint_exists():
		frappe.db.sql_ddl(f"alter table `tab{C2B}` drop constraint `{LEDGER_CONSTRAINT}`")


def remove_fields():
	drop_ledger_constraint()
	for doctype, fields in CUSTOM_FIELDS.items():
		for field in fields:
			name = frappe.db.get_value("Custom Field", {"dt": doctype, "fieldname": field["fieldname"]})
			if name:
				frappe.delete_doc("Custom Field", name, ignore_permissions=True, force=True)
		frappe.clear_cache(doctype=doctype)
	for fieldname, prop, _value, _type in PROPERTY_SETTERS:
		frappe.db.delete("Property Setter", {"doc_type": SETTINGS, "field_name": fieldname, "property": prop})
	frappe.clear_cache(doctype=SETTINGS)


# ---- Mpesa Settings: validate (doc_events) ----------------------------------------------------


def validate_settings(doc, method=None):
	"""Fill and check the record's accounting; make its Mode of Payment when missing."""
	if not active():
		return
	if not doc.get("c2b_matching_rules"):
		for rule in matching.DEFAULT_RULES:
			doc.append("c2b_matching_rules", {"reference_doctype": rule.doctype, "reference_field": rule.field})
	check_rules(doc)
	if not doc.meta.has_field("mpesa_account"):
		return  # the Custom Fields are not there yet (first migrate)
	company = doc.company or frappe.db.get_single_value("Global Defaults", "default_company")
	if not company or not frappe.db.exists("Company", company):
		frappe.throw(_("Mpesa Settings {0}: set the Company this shortcode belongs to").format(doc.name))
	doc.company = company
	doc.mpesa_account = doc.mpesa_account or ensure_clearing_account(company)
	check_account(doc.mpesa_account, company)
	doc.cost_center = doc.cost_center or frappe.get_cached_value("Company", company, "cost_center")
	if doc.cost_center and frappe.db.get_value("Cost Center", doc.cost_center, "company") != company:
		frappe.throw(_("Cost Center {0} is not of company {1}").format(doc.cost_center, company))
	doc.mode_of_payment = ensure_mode_of_payment(
		doc.mode_of_payment or DEFAULT_MODE_OF_PAYMENT, company, doc.mpesa_account
	)


def check_rules(doc):
	for row in doc.c2b_matching_rules:
		row.reference_field = (row.reference_field or "name").strip()
		if not frappe.db.exists("DocType", row.reference_doctype):
			frappe.throw(_("Matching rule {0}: DocType {1} does not exist").format(row.idx, row.reference_doctype))
		meta = frappe.get_meta(row.reference_doctype)
		if meta.istable or meta.issingle:
			frappe.throw(_("Matching rule {0}: {1} has no documents to match").format(row.idx, row.reference_doctype))
		if row.reference_field != "name" and not meta.has_field(row.reference_field):
			frappe.throw(
				_("Matching rule {0}: {1} has no field {2}").format(
					row.idx, row.reference_doctype, row.reference_field
				)
			)


def check_account(account, company):
	row = frappe.db.get_value(
		"Account", account, ["company", "account_type", "is_group", "disabled"], as_dict=True
	)
	if not row:
		frappe.throw(_("M-Pesa Clearing Account {0} does not exist").format(account))
	if row.company != company:
		frappe.throw(_("M-Pesa Clearing Account {0} is not of company {1}").format(account, company))
	if row.is_group or row.disabled or row.account_type not in RECEIVING_ACCOUNT_TYPES:
		frappe.throw(
			_("M-Pesa Clearing Account {0} must be an enabled Bank or Cash ledger (not a group)").format(account)
		)


def ensure_clearing_account(company):
	"""The company's account "M-Pesa", made under its bank accounts group when missing."""
	abbr = frappe.get_cached_value("Company", company, "abbr")
	name = f"{DEFAULT_ACCOUNT_NAME} - {abbr}"
	if frappe.db.exists("Account", name):
		return name
	parent = frappe.db.get_value(
		"Account", {"company": company, "account_type": "Bank", "is_group": 1}, "name", order_by="lft"
	)
	if not parent:
		frappe.throw(_("Company {0} has no bank accounts group: set the M-Pesa Clearing Account").format(company))
	account = frappe.get_doc(
		{
			"doctype": "Account",
			"account_name": DEFAULT_ACCOUNT_NAME,
			"company": company,
			"parent_account": parent,
			"account_type": "Bank",
			"account_currency": frappe.get_cached_value("Company", company, "default_currency"),
		}
	)
	account.flags.ignore_permissions = True
	account.insert()
	return account.name


def ensure_mode_of_payment(name, company, account):
	"""Mode of Payment ``name``, made when missing, with ``account`` for ``company`` unless it
	already names one for that company."""
	account_type = frappe.db.get_value("Account", account, "account_type")
	if frappe.db.exists("Mode of Payment", name):
		mode = frappe.get_doc("Mode of Payment", name)
	else:
		mode = frappe.get_doc(
			{"doctype": "Mode of Payment", "mode_of_payment": name, "type": account_type, "enabled": 1}
		)
	if not any(row.company == company for row in mode.accounts):
		mode.append("accounts", {"company": company, "default_account": account})
		mode.flags.ignore_permissions = True
		mode.save()
	return mode.name
