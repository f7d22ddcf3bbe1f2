// AudioWorklet that plays the agent's PCM16 frames gaplessly from a ring buffer.
//
// Frames arrive on the port at the server's output rate, are resampled to the
// AudioContext rate and queued. Playback starts once `prebufferMs` is queued (or the
// first queued sample has waited that long), so network jitter does not cause
// clicks; after an underrun it re-buffers the same way. A `flush` message (barge-in)
// drops everything queued at once: the next render quantum is silence.
import { Resampler } from './resampler.js';

const STATS_INTERVAL_S = 0.1;

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.inputRate = opts.inputRate || 16000;
    this.resampler = new Resampler(this.inputRate, sampleRate);
    this.ring = new Float32Array(Math.ceil(sampleRate * (opts.capacitySeconds || 20)));
    this.readIndex = 0;
    this.queued = 0;
    this.prebuffer = Math.round((sampleRate * (opts.prebufferMs ?? 60)) / 1000);
    this.playing = false;
    this.waited = 0; // samples of wall time the queue has waited while not playing
    this.scratchIn = new Float32Array(0);
    this.scratchOut = new Float32Array(0);
    this.stats = { playedFrames: 0, drains: 0, flushes: 0, droppedFrames: 0, overflowFrames: 0 };
    this.levelAcc = 0;
    this.levelCount = 0;
    this.sinceStats = 0;
    this.running = true;
    this.port.onmessage = (event) => this.onMessage(event.data);
  }

  onMessage(msg) {
    if (msg.type === 'push') this.push(new Int16Array(msg.pcm));
    else if (msg.type === 'flush') this.flush();
    else if (msg.type === 'stop') this.running = false;
  }

  push(pcm) {
    if (this.scratchIn.length < pcm.length) {
      this.scratchIn = new Float32Array(pcm.length);
      this.scratchOut = new Float32Array(this.resampler.maxOutput(pcm.length));
    }
    const input = this.scratchIn.subarray(0, pcm.length);
    for (let i = 0; i < pcm.length; i++) input[i] = pcm[i] / 32768;
    const count = this.resampler.process(input, this.scratchOut);
    const capacity = this.ring.length;
    const room = capacity - this.queued;
    const accepted = Math.min(count, room);
    this.stats.overflowFrames += count - accepted;
    let write = (this.readIndex + this.queued) % capacity;
    for (let i = 0; i < accepted; i++) {
      this.ring[write] = this.scratchOut[i];
      write = write + 1 === capacity ? 0 : write + 1;
    }
    this.queued += accepted;
  }

  flush() {
    this.stats.droppedFrames += this.queued;
    this.stats.flushes += 1;
    this.queued = 0;
    this.readIndex = 0;
    this.playing = false;
    this.waited = 0;
    this.resampler.reset();
    this.postStats('flushed');
  }

  process(_inputs, outputs) {
    if (!this.running) return false;
    const out = outputs[0][0];
    const frames = out.length;
    if (!this.playing && this.queued > 0) {
      this.waited += frames;
      if (this.queued >= this.prebuffer || this.waited >= this.prebuffer) {
        this.playing = true;
        this.postStats('started');
      }
    }
    let n = 0;
    if (this.playing) {
      n = Math.min(frames, this.queued);
      const capacity = this.ring.length;
      let read = this.readIndex;
      for (let i = 0; i < n; i++) {
        const s = this.ring[read];
        out[i] = s;
        this.levelAcc += s * s;
        read = read + 1 === capacity ? 0 : read + 1;
      }
      this.readIndex = read;
      this.queued -= n;
      this.stats.playedFrames += n;
      if (this.queued === 0) {
        // Ran dry: either the agent finished a stretch of speech or the network is late.
        this.playing = false;
        this.waited = 0;
        this.stats.drains += 1;
        this.postStats('drained');
      }
    }
    for (let i = n; i < frames; i++) out[i] = 0;
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    this.levelCount += frames;
    this.sinceStats += frames;
    if (this.sinceStats >= sampleRate * STATS_INTERVAL_S) this.postStats('tick');
    return true;
  }

  postStats(reason) {
    const level = this.levelCount ? Math.sqrt(this.levelAcc / this.levelCount) : 0;
    this.levelAcc = 0;
    this.levelCount = 0;
    this.sinceStats = 0;
    this.port.postMessage({
      type: 'stats',
      reason,
      playing: this.playing,
      queuedFrames: this.queued,
      contextRate: sampleRate,
      level,
      ...this.stats,
    });
  }
}

registerProcessor('callgate-playback', PlaybackProcessor);
