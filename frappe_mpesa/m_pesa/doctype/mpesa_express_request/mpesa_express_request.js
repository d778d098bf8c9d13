// Copyright (c) 2026, frappe_mpesa developers and contributors
// For license information, please see license.txt

frappe.ui.form.on("Mpesa Express Request", {
	refresh(frm) {
		// Recorded by the app from Daraja's answers: nothing here is edited by hand.
		frm.disable_save();
		if (frm.doc.status === "Pending") {
			frm.add_custom_button(__("Query status"), () =>
				frappe.call({ method: "frappe_mpesa.api.stk_query", args: { request: frm.doc.name }, freeze: true })
					.then(() => frm.reload_doc())
			);
		}
	},
});
