// Copyright (c) 2026, frappe_mpesa developers and contributors
// For license information, please see license.txt

frappe.ui.form.on("B2C Payment Disbursement", {
	refresh(frm) {
		const colors = { Draft: "gray", Queued: "blue", Sent: "orange", Completed: "green", Failed: "red", Unknown: "yellow" };
		if (frm.doc.status) frm.page.set_indicator(__(frm.doc.status), colors[frm.doc.status] || "gray");
		if (frm.doc.docstatus === 1 && ["Sent", "Unknown"].includes(frm.doc.status) && frm.doc.originator_conversation_id) {
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
