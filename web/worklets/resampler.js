// Streaming windowed-sinc resampler shared by the capture and playback worklets.
//
// Arbitrary ratios (48000 -> 16000, 44100 -> 16000, 16000 -> 48000, ...). The low-pass
// cutoff follows the lower of the two rates so that downsampling does not alias. The
// kernel is tabulated once (KERNEL_PHASES points per input sample) and read with linear
// interpolation, so the audio thread does no trigonometry. Each output is normalised by
// the sum of its weights, which keeps DC gain at exactly 1 for every fractional phase.

const KERNEL_PHASES = 256;

export class Resampler {
  /**
   * @param {number} inRate  input sample rate (Hz)
   * @param {number} outRate output sample rate (Hz)
   * @param {{zeroCrossings?: number, rolloff?: number}} [options]
   */
  constructor(inRate, outRate, { zeroCrossings = 8, rolloff = 0.9 } = {}) {
    this.inRate = inRate;
    this.outRate = outRate;
    this.passthrough = inRate === outRate;
    this.step = inRate / outRate; // input samples advanced per output sample
    // Cutoff in cycles per input sample (Nyquist = 0.5).
    const cutoff = 0.5 * Math.min(1, outRate / inRate) * rolloff;
    this.halfWidth = zeroCrossings / (2 * cutoff); // in input samples
    const points = Math.ceil(this.halfWidth * KERNEL_PHASES) + 2;
    this.kernel = new Float32Array(points);
    for (let i = 0; i < points; i++) {
      const t = i / KERNEL_PHASES;
      if (t > this.halfWidth) break;
      const x = 2 * cutoff * t;
      const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
      const w = t / this.halfWidth; // Blackman window over [-halfWidth, halfWidth]
      const window = 0.42 + 0.5 * Math.cos(Math.PI * w) + 0.08 * Math.cos(2 * Math.PI * w);
      this.kernel[i] = sinc * window;
    }
    this.reach = Math.ceil(this.halfWidth);
    this.buffer = new Float32Array(4096);
    this.reset();
  }

  /** Forget all history (used when playback is flushed). */
  reset() {
    // Start with `reach` samples of silence so the first output has full left context.
    this.buffer.fill(0);
    this.length = this.reach;
    this.position = this.reach; // fractional index of the next output in `buffer`
  }

  /** Upper bound of outputs that `process` can produce for `inputLength` new inputs. */
  maxOutput(inputLength) {
    return Math.ceil((inputLength + this.reach + 2) / this.step) + 2;
  }

  /**
   * Feed input samples; write resampled samples into `out` and return how many were written.
   * @param {Float32Array} input
   * @param {Float32Array} out at least `maxOutput(input.length)` long
   */
  process(input, out) {
    if (this.passthrough) {
      out.set(input);
      return input.length;
    }
    this._append(input);
    const buf = this.buffer;
    const kernel = this.kernel;
    const halfWidth = this.halfWidth;
    let written = 0;
    let pos = this.position;
    while (Math.floor(pos) + this.reach < this.length) {
      const first = Math.max(0, Math.ceil(pos - halfWidth));
      const last = Math.floor(pos + halfWidth);
      let acc = 0;
      let norm = 0;
      for (let k = first; k <= last; k++) {
        const d = Math.abs(pos - k) * KERNEL_PHASES;
        const i = d | 0;
        const weight = kernel[i] + (kernel[i + 1] - kernel[i]) * (d - i);
        acc += buf[k] * weight;
        norm += weight;
      }
      out[written++] = norm !== 0 ? acc / norm : 0;
      pos += this.step;
    }
    // Drop input that no future output can reach.
    const keepFrom = Math.max(0, Math.floor(pos) - this.reach - 1);
    if (keepFrom > 0) {
      buf.copyWithin(0, keepFrom, this.length);
      this.length -= keepFrom;
      pos -= keepFrom;
    }
    this.position = pos;
    return written;
  }

  _append(input) {
    const needed = this.length + input.length;
    if (needed > this.buffer.length) {
      let size = this.buffer.length;
      while (size < needed) size *= 2;
      const grown = new Float32Array(size);
      grown.set(this.buffer.subarray(0, this.length));
      this.buffer = grown;
    }
    this.buffer.set(input, this.length);
    this.length = needed;
  }
}
