app_name = "frappe_mpesa"
app_title = "Frappe M-Pesa"
app_publisher = "frappe_mpesa developers"
app_description = "M-Pesa (Safaricom Daraja) payments for Frappe and ERPNext, with a C core"
app_email = "maintainers@frappe-mpesa.invalid"
app_license = "MIT"
# No required_apps: Frappe is always there, and v15's install-app resolves a bare "frappe"
# through api.github.com, which fails on an offline bench.

# Daraja refuses callback URLs containing "mpesa" (and safaricom, exe, exec, cmd, sql, query),
# and this app's module path contains it: callbacks are served under these neutral names,
# e.g. /api/method/daraja_stk. Every URL the app hands to Daraja is built from these.
override_whitelisted_methods = {
	"daraja_stk": "frappe_mpesa.callbacks.stk",
	"daraja_c2b_validation": "frappe_mpesa.callbacks.c2b_validation",
	"daraja_c2b_confirmation": "frappe_mpesa.callbacks.c2b_confirmation",
	"daraja_result": "frappe_mpesa.callbacks.result",
	"daraja_timeout": "frappe_mpesa.callbacks.timeout",
	"daraja_pull": "frappe_mpesa.callbacks.pull",
}

# Frappe parses a JSON body before any app code runs and answers one it cannot parse with its own
# error: these hooks let a refused callback still get the callback handlers' answer and log entry.
before_request = ["frappe_mpesa.callbacks.before_request"]
after_request = ["frappe_mpesa.callbacks.after_request"]

# What no callback resolved: STK query for Pending pushes, Transaction Status for disbursements
# left Sent or Unknown, and callbacks kept until their record existed.
scheduler_events = {
	"cron": {
		"*/5 * * * *": [
			"frappe_mpesa.tasks.query_pending_stk",
			"frappe_mpesa.tasks.resolve_disbursements",
			"frappe_mpesa.tasks.match_unmatched_callbacks",
			"frappe_mpesa.erpnext.c2b_posting.post_pending",
			"frappe_mpesa.erpnext.payouts.post_pending",
		],
		# Pull Transactions: each record's own schedule (off, hourly, every N minutes) decides.
		"* * * * *": ["frappe_mpesa.tasks.pull_transactions"],
	},
}

after_install = [
	"frappe_mpesa.install.after_install",
	"frappe_mpesa.erpnext.setup.after_install",
]
after_migrate = [
	"frappe_mpesa.install.after_migrate",
	"frappe_mpesa.erpnext.setup.after_migrate",
]
# frappe/payments ships a DocType of the same name, "Mpesa Settings": see install.py.
after_app_install = [
	"frappe_mpesa.install.after_app_install",
	"frappe_mpesa.erpnext.setup.after_app_install",
]
before_app_uninstall = [
	"frappe_mpesa.erpnext.setup.before_app_uninstall",
]
before_uninstall = [
	"frappe_mpesa.erpnext.setup.before_uninstall",
	"frappe_mpesa.install.before_uninstall",
]
after_uninstall = "frappe_mpesa.install.after_uninstall"

# The ERPNext layer (frappe_mpesa/erpnext/) reacts to the app's records; each handler returns at
# once on a site without ERPNext. records.py moves statuses with db_set, so on_change runs.
# Checkout (erpnext/checkout.py) posts pushes made from a Sales Invoice or Sales Order.
doc_events = {
	"Mpesa Settings": {"validate": "frappe_mpesa.erpnext.setup.validate_settings"},
	"Mpesa C2B Payment Register": {"after_insert": "frappe_mpesa.erpnext.c2b_posting.on_register_insert"},
	"Mpesa Express Request": {
		"before_insert": "frappe_mpesa.erpnext.checkout.before_insert",
		"on_change": [
			"frappe_mpesa.erpnext.express_posting.on_change",
			"frappe_mpesa.erpnext.checkout.on_change",
		],
	},
	"Mpesa Initiator Request": {"on_change": "frappe_mpesa.erpnext.reversal.on_change"},
	"Payment Entry": {
		"before_cancel": "frappe_mpesa.erpnext.payment_entry.before_cancel",
		"on_cancel": "frappe_mpesa.erpnext.payment_entry.on_cancel",
	},
	# Payouts (erpnext/payouts.py): a payee row reaching Completed is posted.
	"B2C Disbursement Payee": {"on_change": "frappe_mpesa.erpnext.payouts.on_payee_change"},
	# The point of sale (erpnext/pos.py): M-Pesa rows submitted only for what M-Pesa confirmed.
	"POS Invoice": {
		"before_submit": "frappe_mpesa.erpnext.pos.before_submit",
		"on_submit": "frappe_mpesa.erpnext.pos.on_submit",
		"on_cancel": "frappe_mpesa.erpnext.pos.on_cancel",
		"on_trash": "frappe_mpesa.erpnext.pos.on_trash",
	},
	# A tax row's account, defaulted from its Journal Entry and checked before approval.
	"B2C Payment Disbursement": {"validate": "frappe_mpesa.erpnext.payouts.validate_batch"},
}
# "Pay by M-Pesa" in the list of each document a payout pays.
doctype_list_js = {
	"Salary Slip": "public/js/pay_by_mpesa.js",
	"Expense Claim": "public/js/pay_by_mpesa.js",
	"Employee Advance": "public/js/pay_by_mpesa.js",
	"Purchase Invoice": "public/js/pay_by_mpesa.js",
}
# Form scripts; each is loaded only where its DocType exists.
doctype_js = {
	# An employee's payout history.
	"Employee": "public/js/employee_payouts.js",
	# The checkout buttons on the sale's own form.
	# Checkout, and "Get M-Pesa payments" (frappe_mpesa/erpnext/reconciliation.py).
	"Sales Invoice": [
		"erpnext/client_scripts/sales_invoice.js",
		"erpnext/client_scripts/sales_invoice_payments.js",
	],
	"Sales Order": "erpnext/client_scripts/sales_order.js",
	"POS Invoice": "erpnext/client_scripts/pos_invoice.js",
	"Payment Entry": "erpnext/client_scripts/payment_entry.js",
	# "Pay by M-Pesa" (B2B to the supplier's paybill or till, or tax to KRA) and "Remit tax to KRA".
	"Purchase Invoice": "erpnext/client_scripts/purchase_invoice.js",
	"Journal Entry": "erpnext/client_scripts/journal_entry.js",
}
# M-Pesa in the point-of-sale page (erpnext/pos.py); the page exists only with ERPNext.
page_js = {"point-of-sale": "erpnext/client_scripts/point_of_sale.js"}

# Asked in turn by callbacks.validate_c2b, each as fn(settings_name, parsed) -> None to accept or
# Daraja's rejection code; the first code wins.
mpesa_c2b_validators = ["frappe_mpesa.erpnext.c2b_validation.validate"]

