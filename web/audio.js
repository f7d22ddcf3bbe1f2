// The browser audio graph of one call: microphone -> capture worklet (16 kHz PCM16 chunks)
// and agent PCM16 frames -> playback worklet (gapless ring buffer) -> speakers.
// It knows nothing about the wire protocol; callgate.js drives it.

const CAPTURE_URL = new URL('./worklets/capture.js', import.meta.url);
const PLAYBACK_URL = new URL('./worklets/playback.js', import.meta.url);
const loadedContexts = new WeakMap();

export const DEFAULT_MICROPHONE = Object.freeze({
  echoCancellation: true,
  noiseSuppression: true,
  autoGainControl: true,
  channelCount: 1,
});

/** Ask for the microphone with callgate's defaults (echo cancellation etc.) merged with `constraints`. */
export function openMicrophone(constraints = {}) {
  return navigator.mediaDevices.getUserMedia({ audio: { ...DEFAULT_MICROPHONE, ...constraints }, video: false });
}

export class AudioIO {
  /**
   * @param {object} options
   * @param {boolean|object|MediaStream} options.microphone  constraints object, a stream, or true
   * @param {AudioContext|null} options.audioContext  an existing context (then not closed here)
   * @param {number} options.prebufferMs
   * @param {(pcm: ArrayBuffer) => void} options.onChunk  20 ms of 16 kHz PCM16 caller audio
   * @param {(stats: object) => void} options.onPlaybackStats
   */
  constructor({ microphone, audioContext, prebufferMs, onChunk, onPlaybackStats }) {
    this.microphone = microphone;
    this.context = audioContext || null;
    this.ownsContext = !audioContext;
    this.prebufferMs = prebufferMs;
    this.onChunk = onChunk;
    this.onPlaybackStats = onPlaybackStats;
    this.stream = null;
    this.ownsStream = false;
    this.source = null;
    this.captureNode = null;
    this.playbackNode = null;
    this.pending = null; // frames that arrive while the playback node is being built
    this.muted = false;
  }

  get capturing() {
    return this.captureNode !== null;
  }

  get playbackReady() {
    return this.playbackNode !== null || this.pending !== null;
  }

  async openStream() {
    if (this.stream) return;
    if (typeof MediaStream !== 'undefined' && this.microphone instanceof MediaStream) {
      this.stream = this.microphone;
      this.ownsStream = false;
      return;
    }
    this.stream = await openMicrophone(typeof this.microphone === 'object' ? this.microphone : {});
    this.ownsStream = true;
  }

  async ensureContext() {
    if (!this.context) {
      this.context = new AudioContext({ latencyHint: 'interactive' });
      this.ownsContext = true;
    }
    const ctx = this.context;
    if (!loadedContexts.has(ctx)) {
      const modules = [CAPTURE_URL, PLAYBACK_URL].map((url) => ctx.audioWorklet.addModule(url));
      loadedContexts.set(ctx, Promise.all(modules));
    }
    await loadedContexts.get(ctx);
    // Not awaited: resume() stays pending until the page has had a user gesture.
    if (ctx.state === 'suspended') ctx.resume().catch(() => {});
    return ctx;
  }

  /** Build the playback node for agent audio arriving at `inputRate`. */
  async startPlayback(inputRate) {
    if (this.playbackReady) return;
    this.pending = [];
    const ctx = await this.ensureContext();
    const node = new AudioWorkletNode(ctx, 'callgate-playback', {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { inputRate, prebufferMs: this.prebufferMs },
    });
    node.port.onmessage = (event) => this.onPlaybackStats(event.data);
    node.connect(ctx.destination);
    this.playbackNode = node;
    for (const buffer of this.pending || []) this.push(buffer);
    this.pending = null;
  }

  /** Queue one PCM16 frame for playback (the buffer is transferred). */
  push(buffer) {
    if (this.playbackNode) this.playbackNode.port.postMessage({ type: 'push', pcm: buffer }, [buffer]);
    else if (this.pending) this.pending.push(buffer);
  }

  /** Drop all queued agent audio now (barge-in). */
  flush() {
    if (this.pending) this.pending.length = 0;
    if (this.playbackNode) this.playbackNode.port.postMessage({ type: 'flush' });
  }

  async startCapture(targetRate) {
    if (this.captureNode) return;
    await this.openStream();
    const ctx = await this.ensureContext();
    const node = new AudioWorkletNode(ctx, 'callgate-capture', {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { targetRate, chunkMs: 20 },
    });
    node.port.onmessage = (event) => this.onChunk(event.data.pcm);
    node.port.postMessage({ type: 'mute', muted: this.muted });
    this.source = ctx.createMediaStreamSource(this.stream);
    this.source.connect(node);
    // The node writes silence; connecting it to the destination keeps it being rendered.
    node.connect(ctx.destination);
    this.captureNode = node;
  }

  stopCapture() {
    if (this.captureNode) {
      this.captureNode.port.postMessage({ type: 'stop' });
      this.captureNode.port.onmessage = null;
      this.captureNode.disconnect();
      this.captureNode = null;
    }
    if (this.source) {
      this.source.disconnect();
      this.source = null;
    }
    if (this.stream && this.ownsStream) for (const track of this.stream.getTracks()) track.stop();
    this.stream = null;
  }

  setMuted(muted) {
    this.muted = muted;
    if (this.captureNode) this.captureNode.port.postMessage({ type: 'mute', muted });
  }

  /** Stop the microphone now; stop playback after `drainMs` (lets a goodbye finish). */
  release(drainMs = 0) {
    this.stopCapture();
    const node = this.playbackNode;
    const ctx = this.context;
    const closeContext = this.ownsContext;
    this.playbackNode = null;
    this.pending = null;
    setTimeout(() => {
      if (node) {
        node.port.postMessage({ type: 'stop' });
        node.port.onmessage = null;
        node.disconnect();
      }
      if (ctx && closeContext && ctx.state !== 'closed') ctx.close().catch(() => {});
    }, drainMs);
  }
}
