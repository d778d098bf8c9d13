// Copyright (c) 2026, frappe_mpesa developers and contributors
// For license information, please see license.txt

frappe.ui.form.on("Mpesa Initiator Request", {
	refresh(frm) {
		// Recorded by the app from Daraja's answers: nothing here is edited by hand.
		frm.disable_save();
		// A reversal awaiting approval: another Accounts Manager sends it or rejects it (the server
		// checks who may; these buttons only offer it).
		if (frm.doc.request_type !== "Reversal" || frm.doc.status !== "Awaiting Approval") return;
		const act = (method, message) =>
			frappe
				.call({ method: `frappe_mpesa.api.${method}`, args: { request: frm.doc.name }, freeze: true })
				.then(() => {
					frappe.show_alert({ message, indicator: "blue" });
					frm.reload_doc();
				});
		frm.add_custom_button(__("Approve and send"), () =>
			frappe.confirm(__("Send this reversal of {0} to M-Pesa?", [frm.doc.transaction_id]), () =>
				act("approve_reversal", __("Reversal sent"))
			)
		);
		frm.add_custom_button(__("Reject"), () => act("reject_reversal", __("Reversal rejected")));
	},
});
