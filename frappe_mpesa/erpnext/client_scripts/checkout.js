// M-Pesa checkout on a submitted Sales Invoice or Sales Order, or a draft POS Invoice or Payment
// Entry (frappe_mpesa.erpnext.checkout). Included by each form's script and by the point of sale's;
// the server checks everything again.
frappe.provide("frappe_mpesa.checkout");

const CHECKOUT = "frappe_mpesa.erpnext.checkout.";
const QUERY_AFTER_MS = 60 * 1000;

// The core's rule (daraja.normalize_phone), as a hint only: 07/01 + 8 digits, 7/1 + 8 digits,
// or 254/+254 + 7/1 + 8 digits, spaces and dashes ignored.
frappe_mpesa.checkout.phone_hint = function (value) {
	const digits = (value || "").replace(/[\s-]/g, "");
	const ok = /^(?:\+?254|0)?[17]\d{8}$/.test(digits);
	return ok ? "" : __("Enter a Kenyan mobile number: 07XXXXXXXX, 01XXXXXXXX or 2547XXXXXXXX");
};

// Asked for while a draft (the others once submitted).
frappe_mpesa.checkout.DRAFTS = ["POS Invoice", "Payment Entry"];

frappe_mpesa.checkout.is_open = function (doc) {
	if (frappe_mpesa.checkout.DRAFTS.includes(doc.doctype)) {
		if (doc.docstatus !== 0 || doc.__islocal) return false;
		if (doc.doctype === "Payment Entry") {
			return doc.payment_type === "Receive" && doc.party_type === "Customer" && flt(doc.paid_amount) > 0;
		}
		return flt(doc.rounded_total || doc.grand_total) > 0;
	}
	if (doc.docstatus !== 1) return false;
	return doc.doctype === "Sales Invoice"
		? flt(doc.outstanding_amount) > 0
		: flt(doc.rounded_total || doc.grand_total) - flt(doc.advance_paid) > 0;
};

// A message that would move a settled request back to Queued or Pending (it came late).
frappe_mpesa.checkout.stale = function (known, message) {
	const open = ["Queued", "Pending"];
	return open.includes(message.status) && known.status && !open.includes(known.status);
};

frappe_mpesa.checkout.add_buttons = function (frm) {
	if (!frappe_mpesa.checkout.is_open(frm.doc) || frm.is_dirty()) return;
	frm.add_custom_button(__("Request M-Pesa payment"), () => frappe_mpesa.checkout.dialog(frm), __("M-Pesa"));
	if (frm.doc.doctype === "Sales Invoice") {
		frm.add_custom_button(__("Get payment link"), () => {
			frappe.call({
				method: CHECKOUT + "get_payment_link",
				args: { name: frm.doc.name },
				callback: (r) => {
					const url = r.message.url;
					frappe.msgprint({
						title: __("Payment link"),
						message: `<p>${__("Valid for {0} days", [r.message.expires_in_days])}</p>` +
							`<input class="form-control mpesa-payment-link" readonly value="${frappe.utils.escape_html(url)}">`,
					});
					if (navigator.clipboard) navigator.clipboard.writeText(url).catch(() => {});
				},
			});
		}, __("M-Pesa"));
	}
};

frappe_mpesa.checkout.dialog = function (frm) {
	frappe.call({
		method: CHECKOUT + "checkout_defaults",
		args: { doctype: frm.doc.doctype, name: frm.doc.name },
		callback: (r) => frappe_mpesa.checkout.show(frm, r.message),
	});
};

frappe_mpesa.checkout.show = function (frm, defaults) {
	const watched = {};
	const d = new frappe.ui.Dialog({
		title: __("Request M-Pesa payment"),
		fields: [
			{ fieldname: "phone", fieldtype: "Data", label: __("Phone"), reqd: 1, default: defaults.phone,
				description: __("The customer's M-Pesa number"),
				onchange: () => d.set_df_property("phone", "description",
					frappe_mpesa.checkout.phone_hint(d.get_value("phone")) || __("The customer's M-Pesa number")) },
			{ fieldname: "amount", fieldtype: "Int", label: __("Amount (KES)"), reqd: 1, default: defaults.amount,
				read_only: frm.doc.doctype === "Payment Entry" ? 1 : 0,
				description: __("Outstanding {0}; at most {1} can be asked for now",
					[format_currency(defaults.outstanding, defaults.currency), defaults.amount]) },
			{ fieldname: "settings", fieldtype: "Link", options: "Mpesa Settings", label: __("Mpesa Settings"),
				reqd: 1, default: defaults.settings },
			{ fieldname: "split", fieldtype: "Check", label: __("Split into several prompts above the transaction limit"),
				hidden: frm.doc.doctype === "Payment Entry" ? 1 : 0,
				description: defaults.transaction_limit ? __("Limit: {0} per prompt", [defaults.transaction_limit]) : "" },
			{ fieldname: "status_html", fieldtype: "HTML" },
		],
		primary_action_label: __("Send prompt"),
		primary_action: (values) => send(values, 0),
	});
	d.$wrapper.addClass("mpesa-checkout-dialog");
	const render = () => {
		const rows = Object.values(watched).map((m) => {
			const colour = m.status === "Success" ? "green" : (m.status === "Pending" || m.status === "Queued") ? "orange" : "red";
			const extra = m.receipt ? ` ${__("receipt")} ${frappe.utils.escape_html(m.receipt)}` : "";
			return `<div class="mpesa-status" data-request="${m.request}" data-status="${m.status}">` +
				`<span class="indicator-pill ${colour}">${frappe.utils.escape_html(m.label)}</span> ` +
				`KES ${m.amount} · ${m.request}${extra}</div>`;
		});
		d.fields_dict.status_html.$wrapper.html(rows.join(""));
	};
	const update = (message) => {
		if (!watched[message.request] || frappe_mpesa.checkout.stale(watched[message.request], message)) return;
		Object.assign(watched[message.request], message);
		render();
		if (message.status === "Success") frm.reload_doc();
	};
	const handler = (message) => update(message);
	frappe.realtime.on("mpesa_checkout", handler);
	d.onhide = () => {
		frappe.realtime.off("mpesa_checkout", handler);
		Object.values(watched).forEach((m) => clearTimeout(m.timer));
	};
	const check_later = (name) => {
		watched[name].timer = setTimeout(() => {
			if (!["Pending", "Queued"].includes(watched[name].status)) return;
			frappe.call({ method: CHECKOUT + "check_now", args: { request: name }, callback: (r) => update(r.message) });
		}, QUERY_AFTER_MS + 1000);
	};
	const send = (values, confirm) => {
		const hint = frappe_mpesa.checkout.phone_hint(values.phone);
		if (hint) { frappe.msgprint({ title: __("Phone"), message: hint, indicator: "red" }); return; }
		d.get_primary_btn().prop("disabled", true);
		frappe.call({
			method: CHECKOUT + "request_payment",
			args: { doctype: frm.doc.doctype, name: frm.doc.name, phone: values.phone, amount: values.amount,
				settings: values.settings, split: values.split ? 1 : 0, confirm },
			callback: (r) => {
				(r.message || []).forEach((push) => {
					watched[push.name] = { request: push.name, status: push.status, label: push.label, amount: push.amount || "" };
					check_later(push.name);
				});
				render();
			},
			error: (r) => {
				if (r && r.exc_type === "PendingPushError") {
					frappe.confirm(__("A prompt to this phone is still pending. Send another?"), () => send(values, 1));
				}
			},
			always: () => d.get_primary_btn().prop("disabled", false),
		});
	};
	d.show();
	return d;
};
