// Copyright (c) 2026, frappe_mpesa developers and contributors
// For license information, please see license.txt

frappe.ui.form.on("Mpesa C2B Payment Register", {
	refresh(frm) {
		// Recorded by the app from Daraja's confirmations: nothing here is edited by hand.
		frm.disable_save();
	},
});
