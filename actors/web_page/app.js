// Rocky Relay in a browser tab: hold to talk, hear the reply, see the words and the timings.
// Protocol (actors/web_tab.py): JSON text frames both ways, raw 16 kHz int16 audio up, and each reply
// chunk as a JSON "chunk" frame followed by its PCM as one binary frame.
"use strict";

const TOKEN_KEY = "rocky-relay-token";
const LINK_TIMEOUT_MS = 3500;
const SERVER_GONE = "the server's actors stopped answering";
const $ = (id) => document.getElementById(id);
const rocky = window.rocky = {  // what a person sees, and what the tests read
  state: "connecting", session: "", turn: 0, heard: "", reply: "", record: null, problem: "", ring: null,
  stats: { sentMs: 0, foreign: 0, chunks: 0, bytes: 0, scheduledMs: 0, playedMs: 0, started: 0, finished: 0, stopped: 0,
           releaseToFirstSoundMs: null },
};
let ws = null, lastBeat = 0, retryMs = 500, refused = false;
let holding = false, pressedAt = 0, releasedAt = 0;
let mic = null;        // {ctx, node, stream} while the button is held
let captureCtx = null; // kept between turns; the microphone itself opens at each press
let out = null;        // playback AudioContext
let play = null;       // the current turn's playback
let pendingChunk = null;

function setState(state, problem = "") {
  rocky.state = state; rocky.problem = problem;
  $("talk").className = "state-" + state;
  $("state").textContent = state === "lost" ? "link lost" : state;
  $("problem").textContent = problem;
}

function send(obj) { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj)); }

// --- the link ------------------------------------------------------------------------------
function token() {
  const m = location.hash.match(/token=([A-Za-z0-9_-]+)/);
  if (m) {  // keep it, and take it off the address bar (a fragment never reaches a server anyway)
    localStorage.setItem(TOKEN_KEY, m[1]);
    history.replaceState(null, "", location.pathname);
  }
  return localStorage.getItem(TOKEN_KEY) || "";
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(`${scheme}//${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { ws.send(JSON.stringify({ type: "hello", token: token() })); };
  ws.onmessage = (e) => { typeof e.data === "string" ? onEvent(JSON.parse(e.data)) : onAudio(e.data); };
  ws.onclose = (e) => {
    ws = null;
    if (e.code === 4401) {
      refused = true;
      $("pairing").hidden = false;
      setState("error", "refused: " + (e.reason || "pairing token missing or wrong"));
      return;
    }
    if (holding) release();
    stopPlayback();
    setState("lost", e.reason ? "closed: " + e.reason : "reconnecting...");
    setTimeout(connect, retryMs);
    retryMs = Math.min(5000, retryMs * 2);
  };
}

setInterval(() => {  // beats stopped: the server or the network is gone, even if the socket looks open
  if (ws && lastBeat && performance.now() - lastBeat > LINK_TIMEOUT_MS && rocky.state !== "lost") {
    setState("lost", "no heartbeat from the gateway");
    ws.close();
  }
}, 500);

function onEvent(ev) {
  const news = !["turn", "record", "ring"].includes(ev.type);  // these may name a turn the page is not on yet
  if ("turn" in ev && news && ev.turn !== rocky.turn) rocky.stats.foreign += 1;
  switch (ev.type) {
    case "hello":
      rocky.session = ev.session; $("session").textContent = ev.session; retryMs = 500;
      lastBeat = performance.now(); setState("ready"); break;
    case "beat": lastBeat = performance.now(); send({ type: "beat", seq: ev.seq }); break;
    case "server":
      if (!ev.up) setState("error", SERVER_GONE);
      else if (rocky.problem === SERVER_GONE) setState("ready");
      break;
    case "turn": rocky.turn = ev.turn; break;
    case "ring": onRing(ev); break;  // ring.js
    case "released": if (holding) { holding = false; closeMic(); setState("thinking", ev.why); } break;
    case "transcript":
      if (ev.turn !== rocky.turn) break;
      rocky.heard = ev.text; $("heard").textContent = ev.text; $("heard").className = ev.final ? "" : "partial"; break;
    case "say":
      if (ev.turn !== rocky.turn || !ev.text) break;
      rocky.reply = (rocky.reply + " " + ev.text).trim(); $("reply").textContent = rocky.reply; break;
    case "chunk": pendingChunk = ev; if (!ev.bytes) onChunk(ev, null); break;
    case "error":
      if (ev.turn !== rocky.turn) break;
      stopPlayback(); earcon(); setState("error", `[${ev.stage}] ${ev.reason}`); break;
    case "record": if (ev.turn === rocky.turn) showRecord(ev); break;
  }
}

function onAudio(buffer) {
  const meta = pendingChunk; pendingChunk = null;
  if (meta) onChunk(meta, new Int16Array(buffer));
}

// --- hold to talk --------------------------------------------------------------------------
async function openMic() {
  if (!captureCtx) {
    try { captureCtx = new AudioContext({ sampleRate: 16000 }); } catch (e) { captureCtx = new AudioContext(); }
    await captureCtx.audioWorklet.addModule("/capture.js");
  }
  await captureCtx.resume();
  const stream = await navigator.mediaDevices.getUserMedia(
    { audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true } });
  let source;
  try { source = captureCtx.createMediaStreamSource(stream); } catch (e) {  // a browser that cannot resample
    captureCtx = new AudioContext(); await captureCtx.audioWorklet.addModule("/capture.js");
    source = captureCtx.createMediaStreamSource(stream);
  }
  const node = new AudioWorkletNode(captureCtx, "capture");
  node.port.onmessage = (e) => { if (e.data instanceof ArrayBuffer) sendAudio(e.data); };
  const mute = captureCtx.createGain();  // some browsers run only nodes that lead to the speakers: silently
  mute.gain.value = 0;
  source.connect(node).connect(mute).connect(captureCtx.destination);
  return { node, stream, source };
}

function sendAudio(buffer) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  ws.send(buffer); rocky.stats.sentMs += buffer.byteLength / 32;  // 16 kHz int16: 32 bytes a millisecond
}

function closeMic() {
  const m = mic; mic = null;
  if (!m) return Promise.resolve();
  return new Promise((done) => {  // what the worklet still holds goes out before the release
    const timer = setTimeout(done, 200);
    m.node.port.onmessage = (e) => {
      if (e.data instanceof ArrayBuffer) sendAudio(e.data); else { clearTimeout(timer); done(); }
    };
    m.node.port.postMessage("flush");
  }).then(() => { m.source.disconnect(); m.stream.getTracks().forEach((t) => t.stop()); });
}

async function press() {
  if (holding || !ws || rocky.state === "lost") return;
  holding = true; pressedAt = performance.now();
  if (!out) out = new AudioContext();
  out.resume();
  const played = stopPlayback();  // barge-in: silent at once; the gateway tells the others
  send({ type: "press", ago_ms: 0, played_ms: played });
  rocky.heard = rocky.reply = ""; rocky.record = null; rocky.stats.releaseToFirstSoundMs = null; rocky.stats.sentMs = 0;
  $("heard").textContent = $("reply").textContent = ""; endRing();
  setState("listening");
  try {
    const opened = await openMic();
    if (holding) mic = opened; else { opened.source.disconnect(); opened.stream.getTracks().forEach((t) => t.stop()); }
  } catch (e) {
    setState("error", "microphone: " + e.message);
  }
}

async function release() {
  if (!holding) return;
  holding = false; releasedAt = performance.now();
  if (rocky.state === "listening") setState("thinking");
  await closeMic();
  send({ type: "release", ago_ms: performance.now() - releasedAt });
}

const talk = $("talk");
talk.addEventListener("pointerdown", (e) => { talk.setPointerCapture(e.pointerId); press(); });
talk.addEventListener("pointerup", release);
talk.addEventListener("pointercancel", release);
document.addEventListener("keydown", (e) => {
  if (e.code === "Space" && e.target.tagName !== "INPUT") { e.preventDefault(); if (!e.repeat) press(); }
});
document.addEventListener("keyup", (e) => { if (e.code === "Space" && e.target.tagName !== "INPUT") { e.preventDefault(); release(); } });
function pairAgain() {  // after a refusal: with the token just given
  if (ws || !refused) return;
  $("pairing").hidden = true; refused = false; setState("connecting"); connect();
}
$("pair").addEventListener("submit", (e) => {
  e.preventDefault(); localStorage.setItem(TOKEN_KEY, $("token").value.trim()); pairAgain();
});
window.addEventListener("hashchange", () => { if (/token=/.test(location.hash)) pairAgain(); });  // the URL pasted here

// --- playback: each chunk scheduled right after the previous one ----------------------------
function perfTimeOf(contextTime) {  // when `contextTime` is (or was) at the speaker, on performance.now()'s clock
  const ts = out.getOutputTimestamp();
  return ts.performanceTime + (contextTime - ts.contextTime) * 1000;
}

function onChunk(meta, pcm) {
  if (meta.turn !== rocky.turn || !out) return;
  if (!play || play.turn !== meta.turn) play = { turn: meta.turn, next: 0, sources: [], first: null, last: false, live: 0 };
  rocky.stats.chunks += 1;
  if (pcm && pcm.length) {
    rocky.stats.bytes += pcm.length * 2;
    const buffer = out.createBuffer(1, pcm.length, meta.rate);
    const data = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) data[i] = pcm[i] / 32768;
    const node = out.createBufferSource();
    node.buffer = buffer; node.connect(out.destination);
    const at = Math.max(out.currentTime + 0.02, play.next);
    node.start(at); play.next = at + buffer.duration; play.live += 1;
    play.sources.push({ node, at, duration: buffer.duration });
    rocky.stats.scheduledMs += buffer.duration * 1000;
    node.onended = () => { play && play.turn === meta.turn && (play.live -= 1); maybeFinished(meta.turn); };
    if (play.first === null) { play.first = at; reportStart(meta.turn, at); }
  }
  if (meta.last) {
    play.last = true;
    if (play.first === null) { play.first = out.currentTime; reportStart(meta.turn, out.currentTime); }
    maybeFinished(meta.turn);
  }
}

function reportStart(turn, at) {
  const check = () => {
    if (!play || play.turn !== turn) return;
    const startedAt = perfTimeOf(at), ago = performance.now() - startedAt;
    if (ago < 0) { setTimeout(check, -ago); return; }
    send({ type: "started", turn, ago_ms: ago });
    rocky.stats.started += 1;
    if (releasedAt) rocky.stats.releaseToFirstSoundMs = Math.round(startedAt - releasedAt);
    setState(playingState(turn));
  };
  setTimeout(check, Math.max(0, (at - out.currentTime) * 1000));
}

function playedMs() {
  if (!play || !out) return 0;
  const now = out.getOutputTimestamp().contextTime;
  return 1000 * play.sources.reduce((sum, s) => sum + Math.min(s.duration, Math.max(0, now - s.at)), 0);
}

function maybeFinished(turn) {
  if (!play || play.turn !== turn || !play.last || play.live > 0 || play.done) return;
  play.done = true;
  const total = play.sources.reduce((sum, s) => sum + s.duration, 0) * 1000;
  const wait = () => {  // reported once the last sample was at the speaker, not when it was scheduled
    if (rocky.stats.started === 0 && play.first !== null) { setTimeout(wait, 20); return; }
    send({ type: "finished", turn, played_ms: total, ago_ms: Math.max(0, performance.now() - perfTimeOf(play.next || out.currentTime)) });
    rocky.stats.playedMs += total; rocky.stats.finished += 1;
    if (["speaking", "thinking", "ringing"].includes(rocky.state)) setState("ready");
  };
  wait();
}

function stopPlayback() {
  if (!play) return 0;
  const played = play.done ? 0 : playedMs();
  if (!play.done) { rocky.stats.playedMs += played; rocky.stats.stopped += 1; }
  play.sources.forEach((s) => { try { s.node.stop(); } catch (e) { /* not started yet */ } });
  play = null;
  return played;
}

function earcon() {
  if (!out) return;
  [0, 0.18].forEach((offset, i) => {
    const osc = out.createOscillator(), gain = out.createGain();
    osc.frequency.value = i ? 330 : 440; gain.gain.value = 0.15;
    osc.connect(gain).connect(out.destination);
    osc.start(out.currentTime + offset); osc.stop(out.currentTime + offset + 0.12);
  });
}

// --- the turn's timings ----------------------------------------------------------------------
const SHOWN = [["release_to_first_audio_ms", "release → first audio"], ["press_to_first_audio_ms", "press → first audio"],
  ["stt_ms", "speech to text"], ["llm_first_token_ms", "first token"], ["tts_first_chunk_ms", "first speech chunk"],
  ["interrupt_to_silence_ms", "barge-in → silence"]];

function showRecord(rec) {
  rocky.record = rec;
  const rows = SHOWN.filter(([k]) => typeof rec[k] === "number").map(([k, label]) => [label, `${Math.round(rec[k])} ms`]);
  if (rocky.stats.releaseToFirstSoundMs !== null) {
    rows.push(["release → first sound (this page's clock)", `${rocky.stats.releaseToFirstSoundMs} ms`]);
  }
  rows.push(["status", String(rec.status)]);
  const body = $("timings").tBodies[0];
  body.replaceChildren(...rows.map(([label, value]) => {
    const tr = document.createElement("tr");
    for (const text of [label, value]) { const td = document.createElement("td"); td.textContent = text; tr.append(td); }
    return tr;
  }));
  if (rec.status === "error" && rec.error) setState("error", `[${rec.error.stage}] ${rec.error.reason}`);
  else if (rocky.state === "thinking" && !play) setState("ready");
}

setState("connecting");
connect();
