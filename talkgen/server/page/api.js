// The server's job API (docs/serve.md), with the bearer token when the server asks for one.
// Paths are relative, so the page also works behind a proxy that serves it under a prefix.

const TOKEN_KEY = "talkgen.token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// A media URL (HLS playlist, MP4): the <video> element cannot send headers, so the token rides
// in the query, which the server accepts for GET media routes only.
export function mediaUrl(path) {
  const t = token();
  return t ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(t)}` : path;
}

export function authHeaders() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

async function call(path, options = {}) {
  const res = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try {
      message = (await res.json()).error || message;
    } catch {
      // not JSON: keep the status line
    }
    throw new ApiError(res.status, message);
  }
  return res;
}

export async function health() {
  return (await call("v1/health")).json();
}

export async function listJobs() {
  return (await (await call("v1/jobs")).json()).jobs;
}

export async function cancelJob(id) {
  return (await call(`v1/jobs/${encodeURIComponent(id)}`, { method: "DELETE" })).json();
}

// A typed question: {script, persona, session}.
export async function askText(fields) {
  const res = await call("v1/jobs", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(fields),
  });
  return res.json();
}

// A recorded question: the audio Blob as a multipart upload, with persona and session.
export async function askAudio(audio, fields) {
  const form = new FormData();
  const ext = audio.type.includes("ogg") ? "ogg" : audio.type.includes("mp4") ? "m4a" : "webm";
  form.append("audio", audio, `question.${ext}`);
  for (const [name, value] of Object.entries(fields)) {
    if (value !== null && value !== undefined && value !== "") form.append(name, value);
  }
  return (await call("v1/jobs", { method: "POST", body: form })).json();
}

export function jobPath(id, file) {
  return `v1/jobs/${encodeURIComponent(id)}/${file}`;
}

// The job's server-sent events, read through fetch rather than EventSource so that the
// Authorization header goes with them. A dropped connection is reopened; the server replays a
// job's events from the start, so the ones already seen (by their id, else their place) are
// skipped. Calls onEvent(name, data) until done, failed or cancelled, or the signal aborts.
export async function followEvents(id, onEvent, signal) {
  const terminal = new Set(["done", "failed", "cancelled"]);
  let seen = 0;
  let delay = 500;
  while (!signal.aborted) {
    let index = 0;
    try {
      const res = await call(jobPath(id, "events"), { headers: { Accept: "text/event-stream" }, signal });
      for await (const [name, data, number] of readEvents(res.body)) {
        index = Number.isInteger(number) ? number : index + 1;
        if (index <= seen) continue;
        seen = index;
        delay = 500;
        onEvent(name, data);
        if (terminal.has(name)) return;
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError && err.status >= 400 && err.status < 500) {
        onEvent("failed", { error: err.message });
        return;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 5000);
  }
}

// text/event-stream -> [event name, parsed JSON data, numeric id or null]; comments
// (keep-alives) are skipped.
async function* readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      // A "\r" at the very end may be the first half of a "\r\n" split across reads.
      buffer = (buffer + value).replace(/\r\n|\r(?!$)/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = parseBlock(block);
        if (event) yield event;
      }
    }
  } finally {
    // Closes the connection when the caller stops early (a terminal event, an abort).
    reader.cancel().catch(() => {});
  }
}

function parseBlock(block) {
  let name = "message";
  let id = null;
  const data = [];
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
    else if (field === "id" && /^\d+$/.test(value)) id = Number(value);
  }
  if (data.length === 0) return null;
  try {
    return [name, JSON.parse(data.join("\n")), id];
  } catch {
    return [name, data.join("\n"), id];
  }
}
