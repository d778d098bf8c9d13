// M-Pesa in ERPNext's point of sale (frappe_mpesa.erpnext.pos), a page_js include: Frappe runs it
// after the page's own script and before on_page_load, so the POS bundle is loaded here first and
// its Payment component extended before the Controller makes one. The server checks everything
// again; the invoice is submitted only for what M-Pesa confirmed (pos.before_submit).
(function () {
{% include "frappe_mpesa/erpnext/client_scripts/checkout.js" %}

const POS = "frappe_mpesa.erpnext.pos.";
const page = frappe.pages["point-of-sale"];
const STYLE = `
	.mode-of-payment .mpesa-pos { display: none; width: 100%; margin-top: var(--margin-sm); }
	.mode-of-payment.border-primary .mpesa-pos, .mode-of-payment .mpesa-pos.has-status { display: block; }
	.mpesa-pos .mpesa-pos-actions { display: flex; gap: var(--margin-sm); margin: var(--margin-xs) 0; }
	.mpesa-pos .mpesa-pos-status > div { margin-top: var(--margin-xs); font-size: var(--text-sm); }
	.mpesa-pos .mpesa-pos-phone .frappe-control { margin-bottom: 0; }
`;

frappe_mpesa.pos = frappe_mpesa.pos || {};

frappe_mpesa.pos.extend = function () {
	const Base = erpnext.PointOfSale.Payment;
	if (Base.with_mpesa) return;
	$("<style>").text(STYLE).appendTo("head");

	erpnext.PointOfSale.Payment = class extends Base {
		checkout() {
			super.checkout();
			this.mpesa_load();
		}

		// ERPNext redraws the methods whenever the paid amount changes, which unselects them: the
		// M-Pesa method stays selected, so its panel stays in view while the cashier works in it.
		render_payment_mode_dom() {
			const mode = this.mpesa_mode();
			const selected = mode && this.$payment_modes.find(`.mode-of-payment[data-mode="${mode}"]`).hasClass("border-primary");
			super.render_payment_mode_dom();
			this.mpesa_render();
			if (selected) this.mpesa_reselect();
		}

		mpesa_reselect() {
			const mode = this.mpesa_mode();
			const $card = this.$payment_modes.find(`.mode-of-payment[data-mode="${mode}"]`);
			$card.addClass("border-primary");
			$card.find(".mode-of-payment-control").css("display", "flex");
			this.$payment_modes.find(`.${mode}-amount`).css("display", "none");
			this.selected_mode = this[`${mode}_control`];
		}

		// ---- state ----

		mpesa_load() {
			const frm = this.events.get_frm();
			if (!this.mpesa_listening) {
				this.mpesa_listening = true;
				this.mpesa_watch = {};
				frappe.realtime.on("mpesa_checkout", (message) => this.mpesa_message(message));
			}
			if (this.mpesa_invoice !== frm.doc.name) {
				this.mpesa_invoice = frm.doc.name;
				this.mpesa_watch = {};
				this.mpesa_confirmed = { items: [], amount: 0, receipts: "" };
			}
			const ready = this.mpesa_profile === frm.doc.pos_profile
				? Promise.resolve()
				: frappe.call(POS + "pos_setup", { pos_profile: frm.doc.pos_profile }).then((r) => {
					this.mpesa_profile = frm.doc.pos_profile;
					this.mpesa_setup = r.message && r.message.in_profile ? r.message : null;
				});
			return ready.then(() => {
				this.mpesa_render();
				return this.mpesa_refresh();
			});
		}

		mpesa_mode() {
			return this.mpesa_setup && this.sanitize_mode_of_payment(this.mpesa_setup.mode_of_payment);
		}

		mpesa_row() {
			const doc = this.events.get_frm().doc;
			return (doc.payments || []).find((p) => this.mpesa_setup && p.mode_of_payment === this.mpesa_setup.mode_of_payment);
		}

		mpesa_saved() {
			const frm = this.events.get_frm();
			return !frm.is_new() && frm.doc.name;
		}

		// What M-Pesa confirmed for the invoice, then the payment row set to it.
		mpesa_refresh() {
			if (!this.mpesa_setup || !this.mpesa_saved()) return Promise.resolve();
			return frappe.call(POS + "confirmed", { pos_invoice: this.events.get_frm().doc.name }).then((r) => {
				this.mpesa_confirmed = r.message;
				this.mpesa_fill();
				this.mpesa_render_status();
			});
		}

		mpesa_fill() {
			const row = this.mpesa_row();
			const got = this.mpesa_confirmed;
			if (!row || !got || !got.items.length) return;
			const control = this[`${this.mpesa_mode()}_control`];
			frappe.model.set_value(row.doctype, row.name, "reference_no", got.receipts.slice(0, 140));
			if (flt(row.amount) !== flt(got.amount)) {
				frappe.model.set_value(row.doctype, row.name, "amount", flt(got.amount)).then(() => this.update_totals_section());
			}
			if (control && flt(control.get_value()) !== flt(got.amount)) control.set_value(got.amount);
			this.$payment_modes.find(`.${this.mpesa_mode()}-amount`).html(format_currency(got.amount, this.events.get_frm().doc.currency));
		}

		mpesa_message(message) {
			const frm = this.events.get_frm();
			if (!frm.doc || message.reference_doctype !== "POS Invoice" || message.reference_name !== frm.doc.name) return;
			const known = this.mpesa_watch[message.request] || {};
			if (frappe_mpesa.checkout.stale(known, message)) return;
			this.mpesa_watch[message.request] = Object.assign(known, message);
			if (message.status === "Success") {
				this.mpesa_refresh();
			} else {
				this.mpesa_render_status();
			}
		}

		// ---- screen ----

		mpesa_render() {
			const mode = this.mpesa_mode();
			if (!mode) return;
			const $card = this.$payment_modes.find(`.mode-of-payment[data-mode="${mode}"]`);
			if (!$card.length || $card.find(".mpesa-pos").length) return;
			const frm = this.events.get_frm();
			$card.append(`
				<div class="mpesa-pos">
					<div class="mpesa-pos-phone"></div>
					<div class="mpesa-pos-actions">
						<button class="btn btn-sm btn-primary mpesa-pos-request">${__("Request")}</button>
						<button class="btn btn-sm btn-default mpesa-pos-find">${__("Find C2B payment")}</button>
					</div>
					<div class="mpesa-pos-status"></div>
				</div>`);
			this.mpesa_phone = frappe.ui.form.make_control({
				df: { fieldtype: "Data", fieldname: "mpesa_phone", label: __("Customer's M-Pesa phone"),
					placeholder: "07XXXXXXXX" },
				parent: $card.find(".mpesa-pos-phone"),
				render_input: true,
			});
			this.mpesa_phone.set_value(this.mpesa_phone_value || frm.doc.contact_mobile || "");
			this.mpesa_phone.$input.on("input", () => (this.mpesa_phone_value = this.mpesa_phone.get_value()));
			$card.find(".mpesa-pos-request").on("click", (e) => { e.stopPropagation(); this.mpesa_request(); });
			$card.find(".mpesa-pos-find").on("click", (e) => { e.stopPropagation(); this.mpesa_find(); });
			$card.find(".mpesa-pos").on("click", (e) => e.stopPropagation());
			this.mpesa_render_status();
		}

		mpesa_render_status() {
			const $status = this.$payment_modes.find(".mpesa-pos-status");
			if (!$status.length) return;
			const esc = frappe.utils.escape_html;
			const currency = this.events.get_frm().doc.currency;
			const settled = new Set((this.mpesa_confirmed?.items || []).map((i) => i.request));
			const rows = Object.values(this.mpesa_watch || {})
				.filter((m) => !settled.has(m.request))
				.map((m) => {
					const colour = ["Pending", "Queued"].includes(m.status) ? "orange" : m.status === "Success" ? "green" : "red";
					return `<div class="mpesa-status" data-request="${esc(m.request)}" data-status="${esc(m.status)}">` +
						`<span class="indicator-pill ${colour}">${esc(m.label)}</span> ${format_currency(m.amount, currency)}</div>`;
				});
			const paid = (this.mpesa_confirmed?.items || []).map((i) =>
				`<div class="mpesa-status" data-request="${esc(i.request)}" data-status="Success">` +
				`<span class="indicator-pill green">${__("Paid")}</span> ${format_currency(i.amount, currency)} · ` +
				`${__("receipt")} <b class="mpesa-receipt">${esc(i.receipt)}</b>` +
				(i.kind === "c2b" ? ` <a class="mpesa-pos-release" data-receipt="${esc(i.receipt)}">${__("Remove")}</a>` : "") +
				`</div>`);
			$status.html(paid.concat(rows).join(""));
			$status.closest(".mpesa-pos").toggleClass("has-status", paid.length + rows.length > 0);
			$status.find(".mpesa-pos-release").on("click", (e) => {
				e.stopPropagation();
				this.mpesa_release($(e.currentTarget).attr("data-receipt"));
			});
		}

		mpesa_error(message) {
			this.$payment_modes.find(".mpesa-pos-status").append(
				`<div class="mpesa-pos-error text-danger">${frappe.utils.escape_html(message)}</div>`);
			this.$payment_modes.find(".mpesa-pos").addClass("has-status");
		}

		// ---- asking for payment ----

		async mpesa_request() {
			const frm = this.events.get_frm();
			const phone = (this.mpesa_phone && this.mpesa_phone.get_value()) || "";
			const hint = frappe_mpesa.checkout.phone_hint(phone);
			this.$payment_modes.find(".mpesa-pos-error").remove();
			if (hint) return this.mpesa_error(hint);
			const control = this[`${this.mpesa_mode()}_control`];
			const total = cint(frappe.sys_defaults.disable_rounded_total) ? frm.doc.grand_total : frm.doc.rounded_total;
			const others = flt(frm.doc.paid_amount) - flt(this.mpesa_row()?.amount);
			const wanted = flt(control && control.get_value()) || flt(total) - others;
			const amount = Math.round(wanted - flt(this.mpesa_confirmed?.amount));
			if (amount < 1) return this.mpesa_error(__("Nothing is left to ask for by M-Pesa"));
			const $button = this.$payment_modes.find(".mpesa-pos-request").prop("disabled", true);
			try {
				// Saved by checkout; only the payment rows change here, which the push does not read.
				if (frm.is_new()) await frm.save();
				const r = await frappe.call({
					method: "frappe_mpesa.erpnext.checkout.request_payment",
					args: { doctype: "POS Invoice", name: frm.doc.name, phone, amount, settings: this.mpesa_setup.settings, confirm: 1 },
				});
				(r.message || []).forEach((push) => {
					this.mpesa_watch[push.name] = Object.assign(this.mpesa_watch[push.name] || {},
						{ request: push.name, status: push.status, label: push.label, amount: push.amount || amount });
					this.mpesa_check_later(push.name);
				});
				this.mpesa_render_status();
			} catch (e) {
				// frappe.call has shown the server's message
			} finally {
				$button.prop("disabled", false);
			}
		}

		mpesa_check_later(name) {
			setTimeout(() => {
				const m = this.mpesa_watch[name];
				if (!m || !["Pending", "Queued"].includes(m.status)) return;
				frappe.call({ method: "frappe_mpesa.erpnext.checkout.check_now", args: { request: name } })
					.then((r) => this.mpesa_message(r.message));
			}, QUERY_AFTER_MS + 1000);
		}

		// ---- a C2B payment that reached the till ----

		async mpesa_find() {
			const frm = this.events.get_frm();
			if (frm.is_new()) await frm.save();
			const d = new frappe.ui.Dialog({
				title: __("M-Pesa payments to this till"),
				fields: [
					{ fieldname: "search", fieldtype: "Data", label: __("Amount, receipt's last characters or payer's first name"),
						onchange: () => load() },
					{ fieldname: "list", fieldtype: "HTML" },
				],
			});
			const esc = frappe.utils.escape_html;
			const load = () => frappe.call(POS + "recent_receipts", { pos_invoice: frm.doc.name, search: d.get_value("search") || "" })
				.then((r) => {
					const rows = (r.message || []).map((p) =>
						`<tr class="mpesa-c2b" data-receipt="${esc(p.receipt)}"><td>${esc(p.receipt)}</td>` +
						`<td class="text-right">${format_currency(p.amount, frm.doc.currency)}</td>` +
						`<td>${esc(p.payer)}</td><td>${esc(frappe.datetime.str_to_user(p.time))}</td>` +
						`<td><button class="btn btn-xs btn-primary mpesa-apply">${__("Apply")}</button></td></tr>`);
					d.fields_dict.list.$wrapper.html(rows.length
						? `<table class="table table-sm"><thead><tr><th>${__("Receipt")}</th><th class="text-right">${__("Amount")}</th>` +
						  `<th>${__("Payer")}</th><th>${__("Time")}</th><th></th></tr></thead><tbody>${rows.join("")}</tbody></table>`
						: `<p class="text-muted mpesa-c2b-none">${__("No unallocated M-Pesa payment in the last minutes")}</p>`);
					d.fields_dict.list.$wrapper.find(".mpesa-apply").on("click", (e) => {
						const receipt = $(e.currentTarget).closest("tr").attr("data-receipt");
						frappe.call({ method: POS + "apply_receipt", args: { pos_invoice: frm.doc.name, receipt } }).then((r) => {
							this.mpesa_confirmed = r.message;
							this.mpesa_fill();
							this.mpesa_render_status();
							d.hide();
						});
					});
				});
			d.show();
			load();
		}

		mpesa_release(receipt) {
			const frm = this.events.get_frm();
			frappe.call({ method: POS + "release_receipt", args: { pos_invoice: frm.doc.name, receipt } }).then((r) => {
				this.mpesa_confirmed = r.message;
				const row = this.mpesa_row();
				if (row) {
					frappe.model.set_value(row.doctype, row.name, "amount", flt(r.message.amount));
					frappe.model.set_value(row.doctype, row.name, "reference_no", r.message.receipts);
					const control = this[`${this.mpesa_mode()}_control`];
					control && control.set_value(r.message.amount);
				}
				this.mpesa_render_status();
			});
		}
	};
	erpnext.PointOfSale.Payment.with_mpesa = true;
};

const on_page_load = page.on_page_load;
page.on_page_load = function (wrapper) {
	frappe.require("point-of-sale.bundle.js", () => {
		frappe_mpesa.pos.extend();
		on_page_load(wrapper);
	});
};
})();
