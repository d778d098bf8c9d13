"""Install, migrate and uninstall, including living beside frappe/payments.

frappe/payments ships its own DocType named "Mpesa Settings" (module Payment Gateways). A site
has one DocType per name, so this app takes it over: its definition replaces payments' (the
table and every record stay, with their names and encrypted secrets), payments' records are
mapped to this app's fields, and the takeover is asserted again after every migrate and after
any app install, because payments' own sync would otherwise put its definition back. On
uninstall the DocType is handed back to payments with its records, so nothing of payments is
lost. docs/frappe.md describes the consequences for payments' own M-Pesa gateway.
"""

import frappe

from frappe_mpesa import payment_requests, remote, settings_store

MODULE = "M-Pesa"
SETTINGS = "Mpesa Settings"
PAYMENTS = "payments"
ROLES = ("Accounts User", "Accounts Manager")
CREATED_ROLES_KEY = "frappe_mpesa_created_roles"
OUR_DOCTYPES = (
	"Mpesa Settings",
	"Mpesa Public Key Certificate",
	"Mpesa Express Request",
	"Mpesa C2B Payment Register",
	"B2C Payment Disbursement",
	"Mpesa Initiator Request",
	"Mpesa Account Balance",
	"Mpesa Callback Log",
)
OUR_PASSWORD_FIELDS = ("initiator_password", "callback_secret", "access_token")


def after_install():
	ensure_roles()
	take_over_settings()
	payment_requests.ensure_gateways()


def after_migrate():
	take_over_settings()
	payment_requests.ensure_gateways()


def after_app_install(app_name):
	if app_name == PAYMENTS:
		take_over_settings()
	if app_name in (PAYMENTS, payment_requests.ERPNEXT_APP):
		# Payment Gateway records for ERPNext's Payment Requests (docs/frappe.md, "ERPNext Payment Requests").
		payment_requests.ensure_gateways()


def ensure_roles():
	"""ERPNext's accounting roles, created on a site without ERPNext so permissions can name them."""
	created = []
	for role in ROLES:
		if not frappe.db.exists("Role", role):
			frappe.get_doc({"doctype": "Role", "role_name": role, "desk_access": 1}).insert(
				ignore_permissions=True
			)
			created.append(role)
	if created:
		frappe.db.set_default(CREATED_ROLES_KEY, ",".join(created))


def payments_installed():
	return PAYMENTS in frappe.get_installed_apps()


def take_over_settings():
	"""Make "Mpesa Settings" this app's DocType again, mapping any record payments left."""
	if frappe.db.get_value("DocType", SETTINGS, "module") != MODULE:
		frappe.reload_doc("m_pesa", "doctype", "mpesa_settings", force=True)
		frappe.clear_cache(doctype=SETTINGS)
	adopt_payments_records()


def _columns():
	return set(frappe.db.get_table_columns(SETTINGS))


def adopt_payments_records():
	"""Fill this app's fields on records created by frappe/payments (they lack a callback id)."""
	columns = _columns()
	for name in frappe.get_all(SETTINGS, filters={"callback_id": ("is", "not set")}, pluck="name"):
		row = frappe.db.sql(f"select * from `tab{SETTINGS}` where name = %s", name, as_dict=True)[0]
		sandbox = bool(row.get("sandbox")) if "sandbox" in columns else True
		till = (row.get("till_number") or "").strip() or None
		shortcode = (row.get("business_shortcode") or "").strip() or None
		values = {
			"environment": "Sandbox" if sandbox else "Production",
			"enabled": 1,
			"callback_id": settings_store.new_callback_id(),
			"callback_base_url": default_base_url(),
			"allowlist_mode": row.get("allowlist_mode") or remote.ENFORCE,
			"callback_allowlist": row.get("callback_allowlist") or remote.DEFAULT_ALLOWLIST,
			"client_ip_header": "X-Forwarded-For",
			"proxy_hops": 1,
			"c2b_response_type": "Completed",
		}
		# payments pushes with the till number as shortcode in the sandbox (PayBill), and with the
		# business shortcode plus the till as PartyB in production (Buy Goods).
		if sandbox:
			values.update(transaction_type="PayBill", business_shortcode=till or shortcode)
		else:
			values.update(transaction_type="BuyGoods", business_shortcode=shortcode or till, till_number=till)
		secret = settings_store.new_callback_secret()
		# The column holds asterisks, the secret itself lives encrypted in __Auth (as Frappe does).
		values["callback_secret"] = "*" * len(secret)
		frappe.db.set_value(SETTINGS, name, values, update_modified=False)
		frappe.utils.password.set_encrypted_password(SETTINGS, name, secret, "callback_secret")
		if "security_credential" in columns:
			# A Security Credential is never stored by this app: it is derived when needed.
			frappe.db.sql(f"update `tab{SETTINGS}` set security_credential = null where name = %s", name)


def default_base_url():
	from frappe_mpesa.m_pesa.doctype.mpesa_settings.mpesa_settings import default_base_url as base

	return base()


def before_uninstall():
	forget_tokens()
	ours = list(OUR_DOCTYPES)
	if payments_installed() and frappe.db.get_value("DocType", SETTINGS, "module") == MODULE:
		hand_back_settings()
		# payments' records keep their consumer secrets and passkeys.
		ours.remove(SETTINGS)
	frappe.db.delete("__Auth", {"doctype": ("in", ours)})
	# Frappe v15 leaves an uninstalled app's Scheduled Job Types behind.
	frappe.db.delete("Scheduled Job Type", {"method": ("like", "frappe_mpesa.%")})


def hand_back_settings():
	"""Give "Mpesa Settings" back to frappe/payments with its records; drop only what we added."""
	ours = {
		field["fieldname"] for field in _definition(frappe.get_app_path("frappe_mpesa"), "m_pesa")["fields"]
	}
	theirs = {
		field["fieldname"]
		for field in _definition(frappe.get_app_path(PAYMENTS), "payment_gateways")["fields"]
	}
	columns = _columns()
	if "sandbox" in columns and "environment" in columns:
		frappe.db.sql(f"update `tab{SETTINGS}` set sandbox = (environment = 'Sandbox')")
	frappe.reload_doc("payment_gateways", "doctype", "mpesa_settings", force=True)
	frappe.db.delete("__Auth", {"doctype": SETTINGS, "fieldname": ("in", OUR_PASSWORD_FIELDS)})
	for column in sorted((ours - theirs) & columns):
		frappe.db.sql_ddl(f"alter table `tab{SETTINGS}` drop column `{column}`")
	frappe.clear_cache(doctype=SETTINGS)


def _definition(app_path, module_folder):
	import json
	import os

	path = os.path.join(app_path, module_folder, "doctype", "mpesa_settings", "mpesa_settings.json")
	with open(path) as f:
		return json.load(f)


def forget_tokens():
	for name in frappe.get_all(SETTINGS, pluck="name") if frappe.db.table_exists(SETTINGS) else []:
		settings_store.TokenStore(name).forget()
	frappe.cache.delete_keys("frappe_mpesa:")


def after_uninstall():
	created = [role for role in (frappe.db.get_default(CREATED_ROLES_KEY) or "").split(",") if role]
	for role in created:
		# Only roles this app created, and only while no remaining DocType grants them.
		if frappe.db.exists("Role", role) and not frappe.db.exists("DocPerm", {"role": role}):
			frappe.delete_doc("Role", role, ignore_permissions=True, force=True)
	frappe.db.sql("delete from `tabDefaultValue` where defkey = %s", CREATED_ROLES_KEY)
	# Frappe has already committed the uninstall and commits nothing after this hook.
	frappe.db.commit()
