// AudioWorklet that turns microphone input into the callgate wire format:
// mono, 16 kHz, PCM16 little-endian, 20 ms (320-sample) chunks posted to the main thread.
//
// The AudioContext may run at any rate (48 kHz, 44.1 kHz, or 16 kHz already); this
// processor downmixes and resamples itself, so it does not depend on the browser
// resampling a MediaStream into a non-native context (which Firefox refuses to do).
import { Resampler } from './resampler.js';

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.targetRate = opts.targetRate || 16000;
    this.chunkSamples = Math.round((this.targetRate * (opts.chunkMs || 20)) / 1000);
    this.resampler = new Resampler(sampleRate, this.targetRate);
    this.mono = new Float32Array(128);
    this.resampled = new Float32Array(this.resampler.maxOutput(128));
    this.chunk = new Int16Array(this.chunkSamples);
    this.filled = 0;
    this.muted = false;
    this.running = true;
    this.port.onmessage = (event) => {
      const msg = event.data;
      if (msg.type === 'mute') this.muted = !!msg.muted;
      else if (msg.type === 'stop') this.running = false;
    };
  }

  process(inputs, outputs) {
    if (!this.running) return false;
    // The node is connected to the destination only to keep it rendering: output silence.
    for (const channel of outputs[0] || []) channel.fill(0);
    const channels = inputs[0];
    // No input connected yet (or the track ended): keep the processor alive, emit nothing.
    if (!channels || channels.length === 0) return true;
    const frames = channels[0].length;
    if (this.mono.length < frames) {
      this.mono = new Float32Array(frames);
      this.resampled = new Float32Array(this.resampler.maxOutput(frames));
    }
    const mono = this.mono.subarray(0, frames);
    if (this.muted) {
      mono.fill(0);
    } else if (channels.length === 1) {
      mono.set(channels[0]);
    } else {
      mono.fill(0);
      for (const channel of channels) {
        for (let i = 0; i < frames; i++) mono[i] += channel[i];
      }
      const scale = 1 / channels.length;
      for (let i = 0; i < frames; i++) mono[i] *= scale;
    }
    const count = this.resampler.process(mono, this.resampled);
    for (let i = 0; i < count; i++) {
      const s = Math.max(-1, Math.min(1, this.resampled[i]));
      this.chunk[this.filled++] = s < 0 ? Math.round(s * 32768) : Math.round(s * 32767);
      if (this.filled === this.chunkSamples) {
        const buffer = this.chunk.buffer;
        this.port.postMessage({ type: 'chunk', pcm: buffer }, [buffer]);
        this.chunk = new Int16Array(this.chunkSamples);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor('callgate-capture', CaptureProcessor);
