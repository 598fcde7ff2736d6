// The microphone, as 16 kHz mono int16: resampled here (a box filter: the mean of the input samples each
// output sample covers) when the context does not run at 16 kHz itself, sent to the page 40 ms at a time.
class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / 16000;
    this.phase = 0; this.sum = 0; this.count = 0;
    this.out = new Int16Array(640); this.n = 0;
    this.port.onmessage = (e) => { if (e.data === "flush") { this.send(); this.port.postMessage("flushed"); } };
  }
  send() {
    if (this.n) { this.port.postMessage(this.out.slice(0, this.n).buffer); this.n = 0; }
  }
  push(value) {
    this.out[this.n++] = Math.max(-32768, Math.min(32767, Math.round(value * 32767)));
    if (this.n === this.out.length) this.send();
  }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (const sample of channel) {
      if (this.step === 1) { this.push(sample); continue; }
      this.sum += sample; this.count += 1; this.phase += 1;
      if (this.phase >= this.step) { this.push(this.sum / this.count); this.phase -= this.step; this.sum = 0; this.count = 0; }
    }
    return true;
  }
}
registerProcessor("capture", Capture);
