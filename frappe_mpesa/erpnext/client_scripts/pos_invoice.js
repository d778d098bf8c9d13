// The include inlines the shared checkout script into this form's bundle (Frappe's doctype_js).
{% include "frappe_mpesa/erpnext/client_scripts/checkout.js" %}

frappe.ui.form.on("POS Invoice", {
	refresh(frm) {
		frappe_mpesa.checkout.add_buttons(frm);
	},
});
