// The tiny-tasks inbox: live regions over Server-Sent Events, answers sent without a
// reload, the partials' live tail. Plain JavaScript, no dependencies. Every value from
// a run is put in the page as text (textContent), or as HTML the server escaped.
"use strict";

(() => {
  const body = document.body;
  const skew = Number(body.dataset.now || 0) * 1000 - Date.now();

  // -- times: "3 min ago", kept current ---------------------------------------------
  const words = (seconds) => {
    const s = Math.abs(seconds);
    if (s < 5) return "just now";
    for (const [size, unit] of [[86400, "d"], [3600, "h"], [60, "min"]]) {
      if (s >= size) return `${Math.floor(s / size)} ${unit}`;
    }
    return `${Math.floor(s)} s`;
  };
  const refreshTimes = (root = document) => {
    const now = (Date.now() + skew) / 1000;
    for (const el of root.querySelectorAll("time[data-ts]")) {
      const at = Number(el.dataset.ts);
      const text = words(at - now);
      el.textContent = text === "just now" ? text : at > now ? `in ${text}` : `${text} ago`;
    }
  };
  setInterval(refreshTimes, 15000);

  // -- forms: JSON boxes checked as typed; what a person typed is never thrown away ----
  document.addEventListener("input", (event) => {
    const field = event.target;
    const form = field.closest && field.closest("form[data-answer]");
    if (form) form.dataset.dirty = "1";
    if (field.matches && field.matches("textarea[data-json]")) {
      try {
        if (field.value.trim()) JSON.parse(field.value);
        field.setCustomValidity("");
      } catch (error) {
        field.setCustomValidity("This is not valid JSON.");
      }
    }
  });

  const notice = (form, html, kind) => {
    const box = form.querySelector("[data-notice]");
    if (!box) return;
    box.className = `notice ${kind}`;
    box.innerHTML = html; // escaped by the server (or built from text below)
    box.hidden = false;
  };
  const textNotice = (form, text, kind) => {
    const p = document.createElement("p");
    p.textContent = text;
    notice(form, p.outerHTML, kind);
  };
  const clearErrors = (form) => {
    for (const el of form.querySelectorAll("[data-error-for]")) {
      el.hidden = true;
      el.textContent = "";
    }
  };
  const showErrors = (forms, errors) => {
    let first = null;
    for (const form of forms) {
      for (const el of form.querySelectorAll("[data-error-for]")) {
        const text = errors[el.dataset.errorFor];
        if (!text) continue;
        el.textContent = text;
        el.hidden = false;
        first = first || form.querySelector(`[name="${CSS.escape(el.dataset.errorFor)}"]`);
      }
    }
    if (first) first.focus();
  };
  const setBusy = (forms, busy) => {
    for (const form of forms) {
      for (const button of form.querySelectorAll("button")) button.disabled = busy;
      form.setAttribute("aria-busy", busy ? "true" : "false");
    }
  };

  const send = async (forms, params) => {
    for (const form of forms) form.dataset.sending = "1";
    try {
      await post(forms, params);
    } finally {
      for (const form of forms) delete form.dataset.sending;
    }
  };

  const post = async (forms, params) => {
    setBusy(forms, true);
    forms.forEach(clearErrors);
    let response;
    let data = {};
    try {
      response = await fetch(forms[0].action, {
        method: "POST",
        headers: {
          Accept: "application/json",
          "Content-Type": "application/x-www-form-urlencoded",
        },
        body: params,
        credentials: "same-origin",
      });
      data = await response.json().catch(() => ({}));
    } catch (error) {
      setBusy(forms, false);
      forms.forEach((f) => textNotice(f, "The server could not be reached. Your answer is still here: try again.", "bad"));
      return;
    }
    setBusy(forms, false);
    if (response.ok) {
      for (const form of forms) {
        form.dataset.sent = "1";
        delete form.dataset.dirty;
        form.closest("[data-key]").classList.add("sent");
        for (const el of form.elements) el.disabled = true;
        textNotice(form, "Answer sent. The run goes on.", "ok");
      }
      tidy(forms);
      return;
    }
    if (response.status === 409 && data.html) {
      for (const form of forms) {
        form.dataset.conflict = "1";
        notice(form, data.html, "bad");
        const dismiss = document.createElement("button");
        dismiss.type = "button";
        dismiss.textContent = "Dismiss";
        dismiss.addEventListener("click", () => {
          delete form.dataset.conflict;
          delete form.dataset.dirty;
          form.closest("[data-key]").classList.add("stale");
          tidy([form]);
        });
        form.querySelector("[data-notice]").append(dismiss);
      }
      forms[0].querySelector("[data-notice]").focus?.();
      return;
    }
    if (response.status === 422 && data.errors) {
      showErrors(forms, data.errors);
      forms.forEach((f) => textNotice(f, data.message || "Some answers need a fix.", "bad"));
      return;
    }
    forms.forEach((f) => textNotice(f, data.message || `The server answered ${response.status}.`, "bad"));
  };

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!form.matches("form[data-answer]")) return;
    event.preventDefault();
    send([form], new URLSearchParams(new FormData(form, event.submitter)));
  });

  document.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest("[data-answer-all] button");
    if (!button) return;
    const group = button.closest("[data-key]");
    const forms = [...group.querySelectorAll("form[data-answer][data-fields]")].filter(
      (f) => !f.dataset.sent,
    );
    for (const form of forms) {
      if (!form.reportValidity()) return;
    }
    const params = new URLSearchParams();
    forms.forEach((form, index) => {
      for (const [name, value] of new FormData(form)) {
        if (index > 0 && (name === "csrf" || name === "next")) continue;
        params.append(name, value);
      }
    });
    send(forms, params);
  });

  const showAnswerAll = (root = document) => {
    for (const box of root.querySelectorAll("[data-answer-all]")) {
      const group = box.closest("[data-key]") || box.parentElement;
      const open = group.querySelectorAll("form[data-answer][data-fields]:not([data-sent])").length;
      box.hidden = open < 2;
      const count = box.querySelector("[data-count]");
      if (count) count.textContent = String(open);
    }
  };

  // -- live regions: replaced, or merged by key so open forms stay as they are -----------
  // An item kept after it left the feed: being filled in, being sent, or showing a conflict.
  const keep = (el) =>
    el.querySelector(
      "form[data-answer][data-dirty]:not([data-sent]), form[data-sending], form[data-conflict]",
    );

  const retire = (el) => {
    // `el` is no longer in the feed. Returns whether it stays (marked stale).
    const inner = el.querySelector("[data-keyed]");
    const stays = inner ? (merge(inner, document.createElement(inner.tagName)), inner.children.length > 0) : Boolean(keep(el));
    if (stays && !el.classList.contains("stale")) {
      el.classList.add("stale");
      const form = inner ? null : el.querySelector("form[data-answer]");
      if (form && !form.dataset.conflict && !form.dataset.sending) {
        textNotice(form, "This is no longer waiting: it was answered elsewhere, or the run moved on. Your text is kept; send it to see who answered.", "warn");
      }
    }
    return stays;
  };

  const merge = (old, fresh) => {
    const mine = new Map();
    for (const el of old.children) if (el.dataset.key) mine.set(el.dataset.key, el);
    let previous = null;
    const place = (el) => {
      const spot = previous ? previous.nextElementSibling : old.firstElementChild;
      if (el !== spot) old.insertBefore(el, spot);
      previous = el;
    };
    for (const next of [...fresh.children]) {
      let el = mine.get(next.dataset.key);
      if (el) {
        mine.delete(next.dataset.key);
        const inner = el.querySelector("[data-keyed]");
        const innerFresh = next.querySelector("[data-keyed]");
        if (inner && innerFresh) merge(inner, innerFresh);
        el.classList.remove("stale");
      } else {
        el = next;
        refreshTimes(el);
      }
      place(el);
    }
    for (const el of mine.values()) {
      if (retire(el)) place(el);
      else el.remove();
    }
  };

  // After an answer was sent: what the feed already dropped goes now.
  const tidy = (forms) => {
    for (const form of forms) {
      const item = form.closest("[data-key]");
      if (!item || !item.classList.contains("stale")) continue;
      const group = item.parentElement.closest("[data-key]");
      item.remove();
      if (group && group.classList.contains("stale") && !group.querySelector("form[data-answer]")) {
        group.remove();
      }
    }
  };

  const apply = (regions) => {
    for (const [name, html] of Object.entries(regions)) {
      const el = document.querySelector(`[data-region="${name}"]`);
      if (!el) continue;
      if (el.hasAttribute("data-keyed")) {
        const fresh = document.createElement(el.tagName);
        fresh.innerHTML = html;
        merge(el, fresh);
      } else if (el.innerHTML !== html) {
        const open = [...el.querySelectorAll("details[open]")].map((d) => d.querySelector("summary")?.textContent);
        el.innerHTML = html;
        for (const d of el.querySelectorAll("details")) {
          if (open.includes(d.querySelector("summary")?.textContent)) d.open = true;
        }
        refreshTimes(el);
      }
    }
    showAnswerAll();
  };

  // -- the partials' live tail on a run's page ------------------------------------------
  const list = document.querySelector("ol[data-partials]");
  let tail = null;
  let lastSeq = list ? Number(list.dataset.after) : -1;
  const finished = (status) => ["done", "failed", "cancelled"].includes(status);
  const follow = () => {
    if (!list || tail) return;
    tail = new EventSource(`${list.dataset.stream}?after=${lastSeq}`);
    tail.addEventListener("partial", (event) => {
      const seq = Number(event.lastEventId);
      if (seq <= lastSeq) return;
      lastSeq = seq;
      const item = document.createElement("li");
      item.dataset.seq = String(seq);
      const number = document.createElement("span");
      number.className = "seq";
      number.textContent = `#${seq}`;
      const pre = document.createElement("pre");
      pre.className = "value";
      pre.textContent = JSON.stringify(JSON.parse(event.data), null, 2);
      item.append(number, pre);
      list.append(item);
      const empty = document.querySelector("[data-partials-empty]");
      if (empty) empty.hidden = true;
    });
    for (const end of ["interrupt", "done", "error", "cancelled"]) {
      tail.addEventListener(end, () => {
        if (tail) tail.close();
        tail = null;
      });
    }
  };
  if (list && !finished(list.dataset.status)) follow();

  // -- the feed ------------------------------------------------------------------------------
  if (body.dataset.feed) {
    const feed = new EventSource(body.dataset.feed);
    feed.addEventListener("update", (event) => {
      const data = JSON.parse(event.data);
      if (data.regions) apply(data.regions);
      if (typeof data.count === "number") {
        document.title = (data.count ? `(${data.count}) ` : "") + "Waiting on you · tiny-tasks";
      }
      if (list && data.status) {
        list.dataset.status = data.status;
        if (!finished(data.status) && data.status !== "paused") follow();
        else if (data.delivered - 1 > lastSeq && !tail) follow();
      }
    });
    feed.addEventListener("gone", () => {
      feed.close();
      const main = document.querySelector("main");
      const p = document.createElement("p");
      p.className = "notice warn";
      p.setAttribute("role", "status");
      p.textContent = "This run is no longer stored (it was deleted).";
      main.prepend(p);
    });
  }
  showAnswerAll();
  refreshTimes();
})();
