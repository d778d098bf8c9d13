{% include "frappe_mpesa/erpnext/client_scripts/payouts.js" %}

frappe.ui.form.on("Purchase Invoice", {
	refresh(frm) {
		if (frm.doc.docstatus !== 1 || !(frm.doc.outstanding_amount > 0)) return;
		const group = __("Pay by M-Pesa");
		frm.add_custom_button(
			__("To the supplier's Paybill or Till"),
			() =>
				frappe.prompt(
					[frappe_mpesa.payouts.settings_field()],
					(values) =>
						frappe
							.call({
								method: "frappe_mpesa.erpnext.payouts.make_batch",
								args: { doctype: frm.doctype, names: [frm.doc.name], mpesa_settings: values.mpesa_settings, kind: "B2B" },
								freeze: true,
							})
							.then(frappe_mpesa.payouts.open),
					__("Pay by M-Pesa"),
					__("Make batch")
				),
			group
		);
		frm.add_custom_button(__("Tax to KRA (PRN)"), () => frappe_mpesa.payouts.remit_tax(frm), group);
	},
});
