// The web page at /api/ui: start an image job with the request's levers, then watch it: the
// honest state and its sentence, the queue position and ETA, previews as they arrive, the final
// image and a waterfall of the job's clocks. No build step, no library: the page is this file,
// index.html and style.css, served by the app (http_api/web_page.py) under a strict CSP, so
// nothing here is inline and nothing is written as HTML (textContent and elements only).
//
// One job per intent. Every start sends an Idempotency-Key made when the form last changed (or
// after the job shown ended), and the button is disabled while the start is under way: a double
// click, a second click, or a start tried again after a network error all send the same key, and
// the service answers with the same job. Nothing here starts a job because another one is slow.
//
// The key: the person types the function key; it stays in this tab's sessionStorage and goes
// out as the x-functions-key header, never in a URL (docs/job-contract.md, "The web page").
"use strict";

(() => {
  // Polls honour Retry-After, but a person is watching: never longer than this between looks,
  // so a preview shows within two seconds of being stored (the CLI's cap is 30 s).
  const MAX_POLL_S = 2;
  // Nor shorter than this, whatever the service says.
  const MIN_POLL_S = 0.25;
  // A start that met no answer or a 503 is sent again, with the same key: the same job.
  const START_TRIES = 3;
  const REPORT_TRIES = 3;
  // The service refuses client times past ten minutes (rules/client_timings.py).
  const MAX_CLIENT_MS = 600000;
  const KEY_STORE = "imagejobs.functionKey";
  const TERMINAL = new Set(["saved", "failed", "cancelled"]);

  const $ = (id) => document.getElementById(id);
  // The page is /api/ui/ under any route prefix: the API is one folder up.
  const apiUrl = (path) => new URL(path, new URL("../", document.baseURI)).href;
  const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

  let memoryKey = null; // where sessionStorage is refused (a locked-down browser)
  let idempotencyKey = null; // made at the first start after the form changed
  let starting = false;
  let followToken = 0; // a newer job shown stops the older one's polling
  let current = null;

  // --- the function key --------------------------------------------------------------------

  function functionKey() {
    try {
      return sessionStorage.getItem(KEY_STORE) || memoryKey;
    } catch {
      return memoryKey;
    }
  }

  function keepKey(value) {
    memoryKey = value;
    try {
      if (value) sessionStorage.setItem(KEY_STORE, value);
      else sessionStorage.removeItem(KEY_STORE);
    } catch {
      // memoryKey holds it for this page's life
    }
    showKeyState();
    if (value) offerFormats();
  }

  function showKeyState() {
    const set = Boolean(functionKey());
    $("key").placeholder = set ? "key set (type to replace)" : "function key";
    $("key-status").textContent = set
      ? "A key is set for this tab (sessionStorage only), sent as the x-functions-key header; never put in a URL."
      : "No key yet: paste the function key (python -m devhost keys locally). It stays in this tab only.";
    $("key-section").classList.toggle("needed", !set);
  }

  // --- the route's formats -----------------------------------------------------------------

  // Only the formats the default route takes are offered (GET /api/routes: the route marked
  // default, its outputFormats): Azure's routes take png and jpeg, not webp. Without an answer
  // every format stays offered, and the service's 400 names a refused one.
  async function offerFormats() {
    const key = functionKey();
    if (!key) return;
    let routes;
    try {
      const response = await fetch(apiUrl("routes"), {
        headers: { "x-functions-key": key },
        cache: "no-store",
      });
      if (response.status !== 200) return;
      routes = (await response.json()).routes;
    } catch {
      return;
    }
    const route = Array.isArray(routes) ? routes.find((r) => r.default) : null;
    if (!route || !Array.isArray(route.outputFormats)) return;
    const taken = new Set(route.outputFormats);
    const select = $("job-form").elements.namedItem("output_format");
    for (const option of select.options) {
      option.disabled = !taken.has(option.value);
      option.hidden = option.disabled;
    }
    if (select.selectedOptions[0]?.disabled) {
      const first = Array.from(select.options).find((option) => !option.disabled);
      if (first) select.value = first.value;
    }
  }

  // --- starting a job ----------------------------------------------------------------------

  function newKey() {
    // A version 4 UUID from getRandomValues (randomUUID needs a secure context).
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
  }

  function requestBody() {
    const form = $("job-form");
    const field = (name) => form.elements.namedItem(name).value;
    return {
      prompt: field("prompt"),
      size: field("size"),
      quality: field("quality"),
      output_format: field("output_format"),
      background: field("background"),
      n: Number(field("n")),
      partial_images: Number(field("partial_images")),
      priority: field("priority"),
    };
  }

  function retryAfterS(response) {
    const value = Number(response.headers.get("Retry-After"));
    return Number.isFinite(value) && value >= 0 ? value : null;
  }

  function pollDelay(retryAfter) {
    if (retryAfter === null) return MAX_POLL_S;
    return Math.min(MAX_POLL_S, Math.max(MIN_POLL_S, retryAfter));
  }

  async function problemOf(response) {
    try {
      const body = await response.json();
      const error = body.error;
      const field = error.field ? ` (${error.field})` : "";
      return `${error.message}${field} [${response.status} ${error.code}]`;
    } catch {
      return `the service answered ${response.status}`;
    }
  }

  async function postStart(body, key) {
    let last = new Error("the start was not sent");
    for (let attempt = 1; attempt <= START_TRIES; attempt += 1) {
      let response;
      try {
        response = await fetch(apiUrl("images"), {
          method: "POST",
          headers: {
            "Content-Type": "application/json",
            "Idempotency-Key": idempotencyKey,
            "x-functions-key": key,
          },
          body: JSON.stringify(body),
          cache: "no-store",
        });
      } catch {
        last = new Error("The service could not be reached; the start was tried again with the same key.");
        await sleep(1);
        continue;
      }
      if (response.status === 202) {
        return {
          answer: await response.json(),
          retryAfter: retryAfterS(response),
          replayed: response.headers.get("Idempotent-Replayed") === "true",
        };
      }
      if (response.status === 401) {
        throw new Error("The function key was refused (401): set the right key above.");
      }
      const problem = await problemOf(response);
      if (response.status !== 503) throw new Error(problem);
      last = new Error(problem);
      await sleep(pollDelay(retryAfterS(response)));
    }
    throw last;
  }

  async function start(event) {
    event.preventDefault();
    if (starting) return; // the start under way answers for this click too
    const form = $("job-form");
    const error = $("form-error");
    error.hidden = true;
    const key = functionKey();
    if (!key) {
      error.textContent = "Set the function key first.";
      error.hidden = false;
      $("key").focus();
      return;
    }
    if (!form.reportValidity()) return;
    if (!idempotencyKey) idempotencyKey = newKey();
    const button = $("start");
    starting = true;
    button.disabled = true;
    button.textContent = "Starting…";
    try {
      const started = await postStart(requestBody(), key);
      watch(started);
    } catch (problem) {
      error.textContent = problem.message;
      error.hidden = false;
    } finally {
      starting = false;
      button.disabled = false;
      button.textContent = "Start job";
    }
  }

  // --- watching it -------------------------------------------------------------------------

  function watch({ answer, retryAfter, replayed }) {
    if (current && current.id === answer.id) {
      // The same key named the same job: it is on the page already.
      $("report").textContent = "That start named the job shown (the same request key): no second job.";
      return;
    }
    current = {
      id: answer.id,
      status: null,
      previews: new Set(),
      client: null,
      ended: false,
    };
    const token = ++followToken;
    $("job").hidden = false;
    $("job-id").textContent = answer.id;
    $("previews").replaceChildren(note("None yet."));
    $("final").replaceChildren(note("Not stored yet."));
    $("waterfall").replaceChildren();
    $("report").textContent = "";
    $("metadata-link").hidden = true;
    $("queue-position").textContent = "-";
    $("eta").textContent = "-";
    $("attempt").textContent = "-";
    setState(
      answer.state,
      replayed
        ? "This request's job again (the same key): following it."
        : "Started: waiting for its first status.",
    );
    follow(current, token, pollDelay(retryAfter));
  }

  function note(text) {
    const p = document.createElement("p");
    p.className = "note";
    p.textContent = text;
    return p;
  }

  function setState(state, sentence) {
    const badge = $("state");
    badge.textContent = state.replaceAll("_", " ");
    badge.className = `state ${state}`;
    badge.dataset.state = state;
    $("state-text").textContent = sentence;
  }

  async function follow(job, token, firstDelay) {
    let delay = firstDelay;
    for (;;) {
      $("next-poll").textContent = `in ${delay.toFixed(delay < 1 ? 2 : 0)} s`;
      await sleep(delay);
      if (token !== followToken) return;
      let response;
      try {
        response = await fetch(apiUrl(`images/${encodeURIComponent(job.id)}`), {
          headers: { "x-functions-key": functionKey() || "" },
          cache: "no-store",
        });
      } catch {
        $("state-text").textContent = "The service did not answer; looking again (the job goes on).";
        delay = MAX_POLL_S;
        continue;
      }
      if (token !== followToken) return;
      if (response.status === 200 || response.status === 202) {
        const status = await response.json();
        render(job, status);
        if (response.status === 200) {
          $("next-poll").textContent = "- (the job has ended)";
          await finish(job, status);
          return;
        }
        delay = pollDelay(retryAfterS(response));
      } else if (response.status === 404) {
        $("state-text").textContent = "No such job for this key: it was started with another one.";
        $("next-poll").textContent = "-";
        return;
      } else if (response.status === 401) {
        $("state-text").textContent = "The function key was refused (401): set the right key; the job goes on.";
        delay = MAX_POLL_S;
      } else {
        $("state-text").textContent = `${await problemOf(response)}; looking again (the job goes on).`;
        delay = pollDelay(retryAfterS(response));
      }
    }
  }

  function render(job, status) {
    job.status = status;
    setState(status.state, status.stateText);
    const running = !TERMINAL.has(status.state);
    $("queue-position").textContent =
      status.queuePosition !== null && status.queuePosition !== undefined
        ? `${status.queuePosition}${status.queueReason ? ` (${status.queueReason})` : ""}`
        : status.state === "queued"
          ? "waiting for its place at the route"
          : "not queued";
    $("eta").textContent = status.eta ? etaText(status.eta) : running ? "not estimated yet" : "ended";
    const retry = status.retry ? `; next try at ${clock(status.retry.at)} (${status.retry.reason})` : "";
    $("attempt").textContent = `${status.attempt || "-"}${retry}`;
    for (const preview of status.previews || []) {
      const name = preview.url.split("?", 1)[0]; // links are signed anew at every answer
      if (job.previews.has(name)) continue;
      if (job.previews.size === 0) $("previews").replaceChildren();
      job.previews.add(name);
      const img = document.createElement("img");
      img.alt = `preview ${job.previews.size}`;
      img.src = preview.url;
      $("previews").append(img);
    }
    if (status.metadataUrl) {
      const link = $("metadata-link");
      link.href = status.metadataUrl;
      link.hidden = false;
    }
    drawWaterfall(job);
  }

  function clock(iso) {
    return new Date(iso).toLocaleTimeString();
  }

  function etaText(iso) {
    const seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
    return seconds > 0 ? `in about ${seconds} s (${clock(iso)})` : `any moment now (was due ${clock(iso)})`;
  }

  async function finish(job, status) {
    job.ended = true;
    idempotencyKey = null; // the job shown has ended: the next start is a new image
    if (status.state !== "saved" || !(status.images || []).length) {
      const text = status.error ? `${status.stateText} ${status.error.message || ""}` : status.stateText;
      $("final").replaceChildren(note(text));
      return;
    }
    try {
      job.client = await showImages(status.images);
    } catch (problem) {
      $("report").textContent = `The image could not be shown: ${problem.message}`;
      return;
    }
    drawWaterfall(job);
    await report(job);
  }

  function painted() {
    // Two frames after the image is in the page: it has been painted. A hidden tab runs no
    // frames, hence the timer.
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, 1000);
      requestAnimationFrame(() =>
        requestAnimationFrame(() => {
          clearTimeout(timer);
          resolve();
        }),
      );
    });
  }

  async function showImages(images) {
    // download: from asking for the images to their last byte (the browser's resource timing,
    // which a cross-origin image still has); render: from there to decoded and painted.
    performance.clearResourceTimings(); // a long watch's polls must not fill the buffer
    const asked = performance.now();
    const askedEpoch = Date.now();
    const loaded = await Promise.all(
      images.map(async (image, index) => {
        const img = document.createElement("img");
        img.alt = images.length > 1 ? `final image ${index + 1}` : "the final image";
        img.width = image.width;
        img.height = image.height;
        const done = new Promise((resolve, reject) => {
          img.addEventListener("load", resolve, { once: true });
          img.addEventListener("error", () => reject(new Error("the store refused the link")), { once: true });
        });
        img.src = image.url;
        await done;
        const at = performance.now();
        const entry = performance.getEntriesByName(img.src, "resource").at(-1);
        return {
          img,
          image,
          start: entry ? entry.startTime : asked,
          end: entry && entry.responseEnd > 0 ? entry.responseEnd : at,
        };
      }),
    );
    const start = Math.min(...loaded.map((item) => item.start));
    const end = Math.max(...loaded.map((item) => item.end));
    await Promise.all(loaded.map((item) => item.img.decode()));
    const figures = loaded.map(({ img, image }) => {
      const figure = document.createElement("figure");
      const caption = document.createElement("figcaption");
      caption.textContent = `${image.width}x${image.height} ${image.contentType}, ${image.bytes} bytes`;
      figure.append(img, caption);
      return figure;
    });
    $("final").replaceChildren(...figures);
    await painted();
    const shown = performance.now();
    return {
      downloadMs: end - start,
      renderMs: shown - end,
      // On the page's wall clock, to place the bars beside the job's own clocks.
      startEpoch: askedEpoch + (start - asked),
    };
  }

  async function report(job) {
    const line = $("report");
    if (!job.status.metadataUrl) {
      line.textContent = "The job has no metadata.json: the page's times were not reported.";
      return;
    }
    const body = {
      downloadMs: Math.round(job.client.downloadMs * 10) / 10,
      renderMs: Math.round(job.client.renderMs * 10) / 10,
    };
    if (body.downloadMs > MAX_CLIENT_MS || body.renderMs > MAX_CLIENT_MS) {
      line.textContent = "The page's times are past ten minutes (a sleeping tab?): not reported.";
      return;
    }
    for (let attempt = 1; attempt <= REPORT_TRIES; attempt += 1) {
      let response;
      try {
        response = await fetch(apiUrl(`images/${encodeURIComponent(job.id)}/client-timings`), {
          method: "POST",
          headers: { "Content-Type": "application/json", "x-functions-key": functionKey() || "" },
          body: JSON.stringify(body),
          cache: "no-store",
        });
      } catch {
        await sleep(1);
        continue;
      }
      if (response.status === 200) {
        const answer = await response.json();
        line.textContent =
          `Reported to the job's metadata.json: download ${answer.client.downloadMs} ms, ` +
          `render ${answer.client.renderMs} ms.`;
        line.dataset.reported = "true";
        return;
      }
      const problem = await problemOf(response);
      if (response.status !== 503) {
        line.textContent = `The page's times were not reported: ${problem}`;
        return;
      }
      await sleep(pollDelay(retryAfterS(response)));
    }
    line.textContent = "The page's times were not reported: the service did not take them.";
  }

  // --- the waterfall -----------------------------------------------------------------------

  function drawWaterfall(job) {
    const status = job.status;
    if (!status) return;
    const t = status.timings || {};
    const sentEpoch = t.requestStartedAt ? Date.parse(t.requestStartedAt) : null;
    const origin = status.createdAt ? Date.parse(status.createdAt) : sentEpoch;
    const sent = sentEpoch !== null && origin !== null ? Math.max(0, sentEpoch - origin) : null;
    const after = (base, ms) => (base === null || ms === null || ms === undefined ? null : base + ms);
    const serviceDownload = after(sent, t.finalImageMs ?? t.firstByteMs);
    const uploadStart = after(serviceDownload, t.downloadMs);
    const client = job.client;
    const pageStart = client && origin !== null ? Math.max(0, client.startEpoch - origin) : null;
    const pageEnd = client ? after(pageStart, client.downloadMs) : null;
    // [clock, label, kind, from, to] in ms from the job's creation.
    const rows = [
      ["queue", "queue wait", "queue", sent === null ? null : 0, sent],
      ["connect", "connect", "service", sent, after(sent, t.connectMs)],
      ["first-byte", "first byte", "service", sent, after(sent, t.firstByteMs)],
      ["first-partial", "first partial", "service", sent, after(sent, t.firstPartialImageMs)],
      ["final-image", "final image", "service", sent, after(sent, t.finalImageMs)],
      ["service-download", "download (service)", "service", serviceDownload, uploadStart],
      ["upload", "upload to store", "service", uploadStart, after(uploadStart, t.uploadMs)],
      ["download", "download (page)", "page", pageStart, pageEnd],
      ["render", "render (page)", "page", pageEnd, client ? after(pageEnd, client.renderMs) : null],
    ];
    const span = Math.max(1, ...rows.map((row) => row[4] ?? 0));
    const drawn = rows.map(([clockName, label, kind, from, to]) => {
      const row = document.createElement("div");
      row.className = "row";
      row.setAttribute("role", "row");
      row.dataset.clock = clockName;
      const name = document.createElement("div");
      name.className = "label";
      name.textContent = label;
      const track = document.createElement("div");
      track.className = "track";
      const value = document.createElement("div");
      value.className = "value";
      if (from === null || to === null) {
        row.classList.add("missing");
        value.textContent = "-";
      } else {
        const bar = document.createElement("div");
        bar.className = `bar ${kind}`;
        // CSSOM, not a style attribute: allowed by the page's style-src 'self'.
        bar.style.left = `${(100 * from) / span}%`;
        bar.style.width = `${(100 * (to - from)) / span}%`;
        track.append(bar);
        value.textContent = `${Math.round(to - from)} ms`;
      }
      row.append(name, track, value);
      return row;
    });
    $("waterfall").replaceChildren(...drawn);
  }

  // --- wiring ------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    showKeyState();
    offerFormats();
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("key").value.trim();
      $("key").value = "";
      if (value) keepKey(value);
    });
    $("forget-key").addEventListener("click", () => keepKey(null));
    const form = $("job-form");
    // Another request is another intent: the next start gets a key of its own.
    const changed = () => {
      idempotencyKey = null;
    };
    form.addEventListener("input", changed);
    form.addEventListener("change", changed);
    form.addEventListener("submit", start);
  });
})();
