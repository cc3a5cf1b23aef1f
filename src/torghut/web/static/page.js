// The page's only script: the halt/resume and sign-in forms (a bearer header needs fetch),
// and a reload every few seconds unless the operator is typing in a form.
"use strict";
(function () {
  const REFRESH_MS = 15000;
  function busy() {
    const active = document.activeElement;
    if (active && active.tagName === "INPUT") return true;
    return Array.from(document.querySelectorAll("form input")).some((i) => i.value !== "");
  }
  const state = document.getElementById("refresh-state");
  if (state) {
    setInterval(function () {
      if (busy()) { state.textContent = "paused while a form is filled"; return; }
      window.location.reload();
    }, REFRESH_MS);
  }

  async function post(path, token, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json"},
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
    let data = {};
    try { data = await response.json(); } catch (e) { /* not JSON */ }
    return {ok: response.ok, status: response.status, data: data};
  }

  const control = document.getElementById("control-form");
  if (control) {
    let action = "halt";
    control.querySelectorAll("button[data-action]").forEach(function (b) {
      b.addEventListener("click", function () { action = b.dataset.action; });
    });
    control.addEventListener("submit", async function (event) {
      event.preventDefault();
      const out = document.getElementById("control-result");
      const token = document.getElementById("control-token").value;
      const reason = document.getElementById("control-reason").value;
      out.textContent = action + "...";
      const r = await post("/trading/" + action, token, {reason: reason});
      if (r.ok) {
        out.textContent = action === "halt" ? "halted" : "resumed";
        control.reset();
        window.location.reload();
      } else {
        out.textContent = "refused (" + r.status + "): " + (r.data.error || "error");
      }
    });
  }

  const signin = document.getElementById("signin-form");
  if (signin) {
    signin.addEventListener("submit", async function (event) {
      event.preventDefault();
      const token = document.getElementById("signin-token").value;
      const r = await post("/signin", token);
      if (r.ok) { signin.reset(); window.location.reload(); }
      else { document.getElementById("signin-message").textContent = r.data.error || "refused"; }
    });
  }
})();
