// Copyright (c) 2026, frappe_mpesa developers and contributors
// For license information, please see license.txt

frappe.ui.form.on("B2C Payment Disbursement", {
	setup(frm) {
		frm.set_query("mpesa_settings", () => ({ filters: { enabled: 1 } }));
	},
	refresh(frm) {
		// An input shows a bare number: its label says the currency.
		frm.set_currency_labels(["amount"], frm.doc.currency || "KES");
		// Transaction Status is asked by a manager (the API checks the role as well).
		const manager = frappe.user.has_role("Accounts Manager") || frappe.user.has_role("System Manager");
		if (manager && frm.doc.docstatus === 1 && ["Sent", "Unknown"].includes(frm.doc.status) && frm.doc.originator_conversation_id) {
			frm.add_custom_button(__("Query status"), () =>
				frappe.call({
					method: "frappe_mpesa.api.transaction_status",
					args: {
						settings: frm.doc.mpesa_settings,
						transaction_id: frm.doc.transaction_receipt || null,
						original_conversation_id: frm.doc.transaction_receipt ? null : frm.doc.originator_conversation_id,
					},
					freeze: true,
				}).then((r) => frappe.show_alert({ message: __("Status requested: {0}", [r.message]), indicator: "blue" }))
			);
		}
	},
});
