// twofold-web: the countdown of the enrollment page, and security keys through WebAuthn.
// Binary fields cross as base64url text; the server checks everything the browser says.
"use strict";

function fromB64url(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const raw = atob(b64 + "===".slice((b64.length + 3) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

function toB64url(buffer) {
  let raw = "";
  for (const byte of new Uint8Array(buffer)) raw += String.fromCharCode(byte);
  return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function csrf() {
  const meta = document.querySelector('meta[name="csrf"]');
  return meta ? meta.content : "";
}

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
    body: JSON.stringify(body),
  });
  let answer = {};
  try { answer = await response.json(); } catch (e) { answer = {}; }
  if (!response.ok) throw new Error(answer.error || "The request failed. Reload the page and try again.");
  return answer;
}

function showError(text) {
  let box = document.getElementById("error");
  if (!box) {
    box = document.createElement("p");
    box.id = "error";
    box.className = "error";
    document.querySelector("h1").after(box);
  }
  box.hidden = false;
  box.textContent = text;
}

function credentialJson(credential) {
  const r = credential.response;
  const response = { clientDataJSON: toB64url(r.clientDataJSON) };
  if (r.attestationObject) response.attestationObject = toB64url(r.attestationObject);
  if (r.authenticatorData) response.authenticatorData = toB64url(r.authenticatorData);
  if (r.signature) response.signature = toB64url(r.signature);
  if (r.userHandle) response.userHandle = toB64url(r.userHandle);
  if (r.getTransports) response.transports = r.getTransports();
  return { id: credential.id, rawId: toB64url(credential.rawId), type: credential.type, response };
}

async function addKey(button) {
  const name = document.getElementById("key-name").value.trim();
  if (!name) { showError("Give the key a name first."); return; }
  const options = await post(button.dataset.options, { name });
  options.challenge = fromB64url(options.challenge);
  options.user.id = fromB64url(options.user.id);
  for (const c of options.excludeCredentials || []) c.id = fromB64url(c.id);
  const credential = await navigator.credentials.create({ publicKey: options });
  const answer = await post(button.dataset.finish, credentialJson(credential));
  window.location.assign(answer.redirect);
}

async function useKey(button) {
  const options = await post(button.dataset.options, {});
  options.challenge = fromB64url(options.challenge);
  for (const c of options.allowCredentials || []) c.id = fromB64url(c.id);
  const credential = await navigator.credentials.get({ publicKey: options });
  const answer = await post(button.dataset.finish, credentialJson(credential));
  window.location.assign(answer.redirect);
}

function guarded(action) {
  return async (event) => {
    const button = event.currentTarget;
    if (!window.PublicKeyCredential) { showError("This browser cannot use security keys here."); return; }
    button.disabled = true;
    try { await action(button); } catch (e) {
      showError(e.name === "NotAllowedError" ? "The key was not used in time, or the request was cancelled." : e.message);
    } finally { button.disabled = false; }
  };
}

function countdown(element) {
  const period = Number(element.dataset.period) || 30;
  const tick = () => { element.textContent = String(period - (Math.floor(Date.now() / 1000) % period)); };
  tick();
  setInterval(tick, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  const add = document.getElementById("add-key");
  if (add) add.addEventListener("click", guarded(addKey));
  const use = document.getElementById("use-key");
  if (use) use.addEventListener("click", guarded(useKey));
  const clock = document.getElementById("countdown");
  if (clock) countdown(clock);
});
