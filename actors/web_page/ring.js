// A timer of this tab's session rang (actors/web_tab.py gives the page its turn, a turn nobody pressed for):
// the page shows it and plays it as it plays a reply; a press cuts it off as it cuts a reply (barge-in).
// Loaded before app.js; it uses app.js's state (rocky, out, releasedAt) only once events arrive.
"use strict";

function onRing(ev) {
  const what = ev.label ? `${ev.label} timer` : "timer";
  rocky.ring = { turn: ev.turn, label: ev.label, missed: ev.missed };
  const note = $("ring");
  note.hidden = false;
  if (ev.missed) {  // the button is held: the user's turn goes on, and the tab stopped the ring unheard
    note.textContent = `Your ${what} rang while you were talking.`;
    return;
  }
  note.textContent = `Your ${what} rang.`;
  stopPlayback();  // the tab ended what this page played or waited for: the newest turn is heard, as on a Pi
  if (!out) out = new AudioContext();  // after a press (or any earlier gesture) it may play; else it stays silent
  out.resume();
  rocky.turn = ev.turn; rocky.heard = rocky.reply = ""; rocky.record = null;
  releasedAt = 0; rocky.stats.releaseToFirstSoundMs = null;  // nobody released anything for this turn
  $("heard").textContent = $("reply").textContent = ""; $("timings").tBodies[0].replaceChildren();
  setState("ringing");
}

function playingState(turn) {  // what the button shows while `turn` plays
  return rocky.ring && rocky.ring.turn === turn && !rocky.ring.missed ? "ringing" : "speaking";
}

function endRing() {  // a press: the ring, heard or cut off, is no longer news
  $("ring").hidden = true;
}
