// Signs an approval grant or a revocation with the agency key, in this browser only.
// The key file (PKCS#8 PEM, as `datalab` writes agency_key.pem) never leaves the page.
"use strict";

function canonical(value) {
  // The same bytes as datalab.canonical: sorted keys, no spaces, UTF-8.
  if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
  if (value !== null && typeof value === "object") {
    return "{" + Object.keys(value).sort().map(
      (k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
  }
  return JSON.stringify(value);
}

function hex(bytes) {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function importAgencyKey(file) {
  const pem = await file.text();
  const b64 = pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  const der = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  // Take the 32-byte seed (OCTET STRING in OCTET STRING) and wrap it as plain PKCS#8 v1.
  let seed = null;
  for (let i = 0; i + 36 <= der.length; i++) {
    if (der[i] === 0x04 && der[i + 1] === 0x22 && der[i + 2] === 0x04 && der[i + 3] === 0x20) {
      seed = der.slice(i + 4, i + 36);
      break;
    }
  }
  if (seed === null) throw new Error("not an Ed25519 private key");
  const prefix = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70,
                  0x04, 0x22, 0x04, 0x20];
  const pkcs8 = new Uint8Array([...prefix, ...seed]);
  return crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
}

async function signWith(form, kind, body) {
  const file = form.querySelector("input[type=file]").files[0];
  if (!file) throw new Error("choose the agency key file (agency_key.pem)");
  const key = await importAgencyKey(file);
  const message = new TextEncoder().encode(canonical({ [kind]: body }));
  const signature = hex(await crypto.subtle.sign({ name: "Ed25519" }, key, message));
  return JSON.stringify({ [kind === "approval" ? "grant" : "revocation"]: body, signature });
}

function newId() {
  return crypto.randomUUID().replace(/-/g, "");
}

function now() {
  return Math.round(Date.now()) / 1000;
}

async function onApprove(event) {
  event.preventDefault();
  const form = event.target;
  const d = form.dataset;
  const status = form.querySelector(".status");
  try {
    const grant = {
      approval_id: newId(),
      agency: d.agency,
      recipe: d.recipe,
      version: d.version,
      code_sha256: d.code,
      bounds: JSON.parse(form.querySelector("textarea[name=bounds]").value || "{}"),
      issued_at: now(),
      approved_by: d.person,
      request_id: d.request,
      note: form.querySelector("input[name=note]").value,
    };
    form.querySelector("input[name=signed]").value = await signWith(form, "approval", grant);
    form.submit();
  } catch (err) {
    status.textContent = "Not signed: " + err.message;
  }
}

async function onRevoke(event) {
  event.preventDefault();
  const form = event.target;
  const d = form.dataset;
  const status = form.querySelector(".status");
  try {
    const revocation = {
      approval_id: d.approval,
      agency: d.agency,
      recipe: d.recipe,
      version: d.version,
      revoked_at: now(),
      revoked_by: d.person,
      reason: form.querySelector("input[name=reason]").value,
    };
    form.querySelector("input[name=signed]").value = await signWith(form, "revocation", revocation);
    form.submit();
  } catch (err) {
    status.textContent = "Not signed: " + err.message;
  }
}

document.querySelectorAll("form.approve").forEach((f) => f.addEventListener("submit", onApprove));
document.querySelectorAll("form.revoke").forEach((f) => f.addEventListener("submit", onRevoke));
