// The liveness demo: camera -> JPEG frames -> the liveness API (WebSocket workflow, or REST) -> what to do next.
"use strict";

const FRAME_INTERVAL_MS = 125; // about 8 frames a second
// A quick blink can fall between two frames at 8 a second (a held-out clip's did, at 5 and 8; 12 caught it).
const BLINK_FRAME_INTERVAL_MS = 80;
const FRAME_WIDTH = 480; // 480x360 JPEGs stay far inside API Gateway's WebSocket limits
const JPEG_QUALITY = 0.8;
const MAX_IN_FLIGHT = 2; // frames sent and not yet answered
const PASSIVE_FRAMES = 5;

const $ = (id) => document.getElementById(id);
const ui = {
  video: $("preview"), still: $("still"), canvas: $("capture"), status: $("status"), guidance: $("guidance"), cue: $("cue"),
  countdown: $("countdown"), countdownValue: $("countdown-value"), challenges: $("challenges"),
  verdict: $("verdict"), verdictLabel: $("verdict-label"), verdictDetail: $("verdict-detail"),
  start: $("start"), retry: $("retry"), frames: $("frames"), transportUsed: $("transport-used"),
  transport: $("transport"), apiBase: $("api-base"), wsUrl: $("ws-url"), numChallenges: $("num-challenges"),
  timeout: $("timeout"),
};

// Every word and cue shown for a challenge or a feedback code comes from the server's messages (`instruction`,
// `cue`, `timeout_seconds`, `guidance`), so a new challenge type needs no change here.

let run = null; // the check in progress

// A session the relying party's backend created for this user: `?session_id=...&token=<client token>`. With it the
// page never creates a session (an authenticated deployment would refuse it) and holds no API key.
const GIVEN = (() => {
  const query = new URLSearchParams(location.search);
  const id = query.get("session_id");
  const token = query.get("token");
  return id && token ? { id, token } : null;
})();

// --- settings: from the page's query (?api=...&ws=...&flow=rest), else what was saved, else this origin ---
function loadSettings() {
  const query = new URLSearchParams(location.search);
  const saved = JSON.parse(localStorage.getItem("liveness-settings") || "{}");
  ui.apiBase.value = query.get("api") ?? saved.api ?? "";
  ui.wsUrl.value = query.get("ws") ?? saved.ws ?? "";
  ui.transport.value = query.get("flow") ?? saved.flow ?? "ws";
  ui.numChallenges.value = query.get("challenges") ?? saved.challenges ?? 3;
  ui.timeout.value = query.get("timeout") ?? saved.timeout ?? 8;
}

function saveSettings() {
  localStorage.setItem("liveness-settings", JSON.stringify({
    api: ui.apiBase.value, ws: ui.wsUrl.value, flow: ui.transport.value,
    challenges: ui.numChallenges.value, timeout: ui.timeout.value,
  }));
}

function restBase() {
  return (ui.apiBase.value.trim() || location.origin).replace(/\/+$/, "");
}

function webSocketUrl() {
  const explicit = ui.wsUrl.value.trim();
  if (explicit) return explicit;
  return restBase().replace(/^http/, "ws") + "/api/v1/liveness/ws";
}

// --- what the user sees ---
function setState(state, status) {
  document.body.dataset.state = state;
  if (status !== undefined) ui.status.textContent = status;
}

function guide(text) {
  ui.guidance.textContent = text || "";
}

function showCue(cue) {
  ui.cue.textContent = cue || "";
}

function startCountdown(seconds) {
  stopCountdown();
  const ends = performance.now() + seconds * 1000;
  ui.countdown.hidden = false;
  const tick = () => {
    const left = Math.max(0, (ends - performance.now()) / 1000);
    ui.countdownValue.textContent = left.toFixed(0);
  };
  tick();
  run.countdownTimer = setInterval(tick, 200);
}

function stopCountdown() {
  if (run?.countdownTimer) clearInterval(run.countdownTimer);
  ui.countdown.hidden = true;
}

/** Shows a challenge as the server described it: `key` names it, `instruction`, `cue` and `timeout_seconds` show it. */
function beginChallenge(key, { instruction, cue, timeout_seconds }) {
  run.frameInterval = key === "BLINK" ? BLINK_FRAME_INTERVAL_MS : FRAME_INTERVAL_MS;
  setState("active", instruction);
  showCue(cue);
  for (const item of ui.challenges.querySelectorAll("li.current")) item.classList.remove("current");
  const item = document.createElement("li");
  item.textContent = instruction;
  item.dataset.key = key;
  item.dataset.instruction = instruction;
  item.className = "current";
  ui.challenges.append(item);
  startCountdown(Number(timeout_seconds ?? ui.timeout.value));
}

function markChallenge(key, passed) {
  const items = [...ui.challenges.querySelectorAll("li")].filter((li) => li.dataset.key === key);
  const item = items[items.length - 1];
  if (!item) return;
  item.classList.remove("current");
  item.classList.add(passed ? "passed" : "failed");
  item.textContent = `${passed ? "✓" : "✗"} ${item.dataset.instruction}`;
}

/** The instructions of the challenges passed so far, in order. */
function passedInstructions() {
  return [...ui.challenges.querySelectorAll("li.passed")].map((li) => li.dataset.instruction);
}

function showVerdict(real, detail) {
  stopCapture();
  stopCountdown();
  showCue(null);
  guide("");
  ui.verdict.hidden = false;
  ui.verdict.className = `verdict ${real ? "real" : "fake"}`;
  ui.verdictLabel.textContent = real ? "Live person verified" : "Not verified";
  const done = passedInstructions().join(", ");
  ui.verdictDetail.textContent = detail ?? (real
    ? `All challenges passed: ${done}.`
    : `Challenges passed: ${done || "none"}. Try again in good light, facing the camera.`);
  setState("done", real ? "Done: you are a live person." : "Done: the check did not pass.");
  finish();
}

function fail(state, status, hint) {
  stopCapture();
  stopCountdown();
  showCue(null);
  setState(state, status);
  guide(hint || "");
  finish();
}

function finish() {
  if (run?.socket && run.socket.readyState <= 1) run.socket.close(1000);
  if (run?.stream) {
    keepLastPicture();
    for (const track of run.stream.getTracks()) track.stop();
  }
  ui.start.hidden = true;
  ui.retry.hidden = false;
  ui.retry.focus();
  if (run) run.finished = true;
}

/** Shows the camera's last picture where the preview was: a stopped camera would leave a black box. */
function keepLastPicture() {
  const video = ui.video;
  if (!video.videoWidth) return;
  ui.still.width = video.videoWidth;
  ui.still.height = video.videoHeight;
  ui.still.getContext("2d").drawImage(video, 0, 0);
  ui.still.hidden = false;
}

// --- camera ---
async function openCamera() {
  if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
    fail("insecure", "The camera needs a secure page.",
      "Open this page over https, or as http://localhost / http://127.0.0.1.");
    return null;
  }
  try {
    return await navigator.mediaDevices.getUserMedia({
      video: { facingMode: "user", width: { ideal: 640 }, height: { ideal: 480 } },
      audio: false,
    });
  } catch (error) {
    if (error.name === "NotAllowedError" || error.name === "SecurityError") {
      fail("camera-refused", "Camera access was refused.",
        "Allow the camera for this page in your browser's site settings, then try again.");
    } else if (error.name === "NotFoundError" || error.name === "OverconstrainedError") {
      fail("no-camera", "No camera was found.", "Connect a camera, or open this page on a phone.");
    } else {
      fail("camera-error", "The camera could not start.", String(error.message || error));
    }
    return null;
  }
}

function grabFrame() {
  const video = ui.video;
  if (!video.videoWidth) return Promise.resolve(null);
  const width = Math.min(FRAME_WIDTH, video.videoWidth);
  const height = Math.round((width * video.videoHeight) / video.videoWidth);
  ui.canvas.width = width;
  ui.canvas.height = height;
  ui.canvas.getContext("2d").drawImage(video, 0, 0, width, height);
  return new Promise((resolve) => ui.canvas.toBlob(resolve, "image/jpeg", JPEG_QUALITY));
}

function startCapture(send) {
  const current = run; // a retry starts a new run; this loop stays with its own
  current.inFlight = 0;
  current.lastAnswer = performance.now();
  const capture = async () => {
    // An answer lost to a dropped frame must not stop the flow for good.
    if (current.inFlight >= MAX_IN_FLIGHT && performance.now() - current.lastAnswer < 1500) return;
    if (current.inFlight >= MAX_IN_FLIGHT) current.inFlight = 0;
    const frame = await grabFrame();
    if (!frame || current.finished) return;
    current.inFlight += 1;
    current.framesSent += 1;
    ui.frames.textContent = String(current.framesSent);
    send(frame);
  };
  // One frame per interval, the interval read each time: a BLINK challenge is sampled faster.
  const tick = () => {
    capture();
    if (!current.finished) current.captureTimer = setTimeout(tick, current.frameInterval ?? FRAME_INTERVAL_MS);
  };
  current.captureTimer = setTimeout(tick, current.frameInterval ?? FRAME_INTERVAL_MS);
}

function answered() {
  run.inFlight = Math.max(0, run.inFlight - 1);
  run.lastAnswer = performance.now();
}

function stopCapture() {
  if (run?.captureTimer) clearTimeout(run.captureTimer);
}

// --- the WebSocket workflow ---
function runWebSocket() {
  const params = new URLSearchParams(GIVEN
    ? { session_id: GIVEN.id, token: GIVEN.token, feedback: "true" }
    : {
      num_challenges: ui.numChallenges.value,
      timeout_seconds: ui.timeout.value,
      passive_frames: String(PASSIVE_FRAMES),
      feedback: "true",
    });
  const url = `${webSocketUrl()}?${params}`;
  setState("connecting", "Connecting…");
  const socket = new WebSocket(url);
  run.socket = socket;
  socket.onopen = () => startCapture((frame) => socket.readyState === 1 && socket.send(frame));
  socket.onmessage = (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch { return; }
    onMessage(message);
  };
  socket.onclose = () => {
    if (!run.finished) {
      fail("connection-lost", "The connection was lost.", "Check your network and try again.");
    }
  };
}

function onMessage(message) {
  switch (message.type) {
    case "phase":
      if (message.value === "passive") {
        setState("passive", "Hold still and look into the camera.");
      } else {
        setState("active", "Get ready…");
      }
      break;
    case "frame_result":
      answered();
      guide("");
      break;
    case "feedback":
      answered();
      guide(message.message);
      break;
    case "challenge_start":
      beginChallenge(message.action, message);
      break;
    case "challenge_result":
      stopCountdown();
      showCue(null);
      markChallenge(message.action, message.status === "passed");
      if (message.status === "passed") ui.status.textContent = "Well done.";
      break;
    case "final_result":
      showVerdict(message.label === "REAL", message.advice);
      break;
    case "error":
      answered();
      if (message.code === "session_expired" || message.code === "session_not_found") {
        fail("expired", "This session has expired.", "Start a new check.");
      } else {
        guide(message.message);
      }
      break;
  }
}

// --- the REST flow ---
async function runRest() {
  setState("connecting", "Starting a session…");
  const base = `${restBase()}/api/v1/liveness/sessions`;
  let session;
  const auth = GIVEN ? { Authorization: `Bearer ${GIVEN.token}` } : {};
  try {
    const params = new URLSearchParams({ num_challenges: ui.numChallenges.value, timeout_seconds: ui.timeout.value });
    const response = GIVEN
      ? await fetch(`${base}/${encodeURIComponent(GIVEN.id)}`, { headers: auth })
      : await fetch(`${base}?${params}`, { method: "POST" });
    if (!response.ok) throw new Error(`${response.status}`);
    session = await response.json();
  } catch (error) {
    fail("connection-lost", "The liveness service cannot be reached.", `(${error.message}) Check the API URL in Settings.`);
    return;
  }
  const challenges = session.challenges;
  let current = -1;
  const showCurrent = (index) => {
    if (index === current || index >= challenges.length) return;
    if (current >= 0) markChallenge(challenges[current].type, true);
    current = index;
    beginChallenge(challenges[index].type, challenges[index]);
  };
  showCurrent(0);
  startCapture(async (frame) => {
    try {
      const response = await fetch(`${base}/${session.session_id}/frame`, {
        method: "POST", headers: { "Content-Type": "image/jpeg", ...auth }, body: frame,
      });
      answered();
      if (run.finished) return;
      const body = await response.json();
      if (response.status === 410) return fail("expired", "This session has expired.", "Start a new check.");
      if (response.status === 409) return;
      if (!response.ok) return guide(body.detail || `Error ${response.status}`);
      guide(body.guidance ?? "");
      const done = challenges.length - body.challenges_remaining;
      if (body.session_complete) {
        if (!body.is_live && current >= 0 && current < challenges.length && body.state === "failed") {
          markChallenge(challenges[current].type, false);
        } else if (current >= 0) {
          markChallenge(challenges[current].type, true);
        }
        showVerdict(body.is_live === true, body.advice ?? undefined);
      } else {
        showCurrent(done);
      }
    } catch (error) {
      answered();
      if (!run.finished) fail("connection-lost", "The connection was lost.", "Check your network and try again.");
    }
  });
}

// --- start and retry ---
async function start() {
  saveSettings();
  if (run && !run.finished) return;
  run = { framesSent: 0, finished: false };
  ui.start.disabled = true;
  ui.verdict.hidden = true;
  ui.still.hidden = true;
  ui.challenges.replaceChildren();
  ui.frames.textContent = "0";
  guide("");
  setState("camera", "Starting the camera…");
  const stream = await openCamera();
  ui.start.disabled = false;
  if (!stream) return;
  run.stream = stream;
  ui.video.srcObject = stream;
  await ui.video.play().catch(() => {});
  ui.start.hidden = true;
  const flow = ui.transport.value;
  ui.transportUsed.textContent = flow === "rest" ? "REST" : "WebSocket";
  if (flow === "rest") runRest(); else runWebSocket();
}

ui.start.addEventListener("click", start);
ui.retry.addEventListener("click", () => {
  ui.retry.hidden = true;
  ui.start.hidden = false;
  run = null;
  start();
});
loadSettings();
