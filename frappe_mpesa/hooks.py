app_name = "frappe_mpesa"
app_title = "Frappe M-Pesa"
app_publisher = "frappe_mpesa developers"
app_description = "M-Pesa (Safaricom Daraja) payments for Frappe and ERPNext, with a C core"
app_email = "maintainers@frappe-mpesa.invalid"
app_license = "MIT"
required_apps = ["frappe"]
