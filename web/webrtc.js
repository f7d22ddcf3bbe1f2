// The WebRTC transport of the callgate SDK: an RTCPeerConnection whose audio track carries the
// caller's microphone and the agent's voice (Opus), and whose `rtvi` data channel carries the same
// RTVI messages as the WebSocket transport. callgate.js drives it through a WebSocket-like surface
// (readyState, send, close, onopen/onmessage/onclose), so the call logic is the same for both.
//
// Signalling: the offer (with all ICE candidates gathered, no trickle) is POSTed to the call's
// `webrtc_offer_url` with `Authorization: Bearer <call token>`; the answer comes back in the response.

const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/** HTTP statuses of the offer endpoint, as the WebSocket close codes the SDK reports. */
export const HTTP_CLOSE_CODES = Object.freeze({
  400: 4400,
  401: 4401,
  403: 4403,
  404: 4404,
  409: 4409,
  410: 4410,
  422: 4400,
  429: 4429,
});

const GATHER_TIMEOUT_MS = 3000; // send the offer with what was gathered by then (e.g. a slow STUN server)
const SILENCE_THRESHOLD = 300;

export class WebRTCLink {
  /**
   * @param {object} options
   * @param {string} options.url  the call's `webrtc_offer_url`
   * @param {string} options.token  the call token
   * @param {RTCIceServer[]} [options.iceServers]  `ice_servers` from the create-web-call answer
   * @param {MediaStream|null} options.stream  the microphone (null: receive only)
   * @param {number} [options.timeoutMs]
   */
  constructor({ url, token, iceServers = [], stream = null, timeoutMs = 10000 }) {
    this.url = url;
    this.readyState = 0;
    this.onopen = null;
    this.onmessage = null;
    this.onclose = null;
    this.remoteStream = null;
    this.closeInfo = null; // from the server's last `connection-closed` message
    this.pc = new RTCPeerConnection({ iceServers });
    this.channel = this.pc.createDataChannel('rtvi', { ordered: true });
    const track = stream?.getAudioTracks()[0];
    if (track) this.sender = this.pc.addTrack(track, stream);
    else this.sender = this.pc.addTransceiver('audio', { direction: 'recvonly' }).sender;
    this._remote = new Promise((resolve) => {
      this.pc.ontrack = (event) => {
        this.remoteStream = event.streams[0] || new MediaStream([event.track]);
        resolve(this.remoteStream);
      };
    });
    this.channel.onopen = () => {
      this.readyState = OPEN;
      this.onopen?.();
    };
    this.channel.onmessage = (event) => this._onMessage(event.data);
    this.channel.onclose = () => this._finish(1006, 'connection_lost', false);
    this.pc.onconnectionstatechange = () => {
      const state = this.pc.connectionState;
      if (state === 'failed') this._finish(1006, 'connection_lost', false);
      else if (state === 'closed') this._finish(1000, 'call_ended', true);
    };
    this._negotiate(token, timeoutMs).catch((error) => this._finish(error.closeCode ?? 1006, error.message, false));
  }

  get bufferedAmount() {
    return this.channel.bufferedAmount;
  }

  /** The agent's audio as a MediaStream, once negotiated. */
  remoteAudio() {
    return this._remote;
  }

  async _negotiate(token, timeoutMs) {
    await this.pc.setLocalDescription(await this.pc.createOffer());
    await gathered(this.pc, Math.min(GATHER_TIMEOUT_MS, timeoutMs));
    const response = await fetch(this.url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
      body: JSON.stringify({ sdp: this.pc.localDescription.sdp, type: 'offer' }),
    });
    if (!response.ok) {
      let detail = `HTTP ${response.status}`;
      try {
        const problem = await response.json();
        detail = problem.code || problem.detail || detail;
      } catch {
        // not JSON: keep the status
      }
      const error = new Error(detail);
      error.closeCode = HTTP_CLOSE_CODES[response.status] ?? 1006;
      throw error;
    }
    const answer = await response.json();
    if (this.readyState === CLOSED) return;
    await this.pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
  }

  _onMessage(data) {
    if (typeof data !== 'string') return;
    try {
      const msg = JSON.parse(data);
      if (msg?.type === 'server-message' && msg.data?.type === 'connection-closed') {
        this.closeInfo = { code: msg.data.code, reason: msg.data.reason };
      }
    } catch {
      // callgate.js ignores what it cannot parse
    }
    this.onmessage?.({ data });
  }

  send(text) {
    if (this.readyState !== OPEN || typeof text !== 'string') return; // audio travels on the track
    this.channel.send(text);
  }

  /** Key presses as RFC 4733 telephone-events, queued after any still being sent. */
  sendDtmf(tones, durationMs, gapMs) {
    const dtmf = this.sender?.dtmf;
    if (!dtmf?.canInsertDTMF) {
      throw new Error('DTMF cannot be sent: no microphone track, or the server did not accept telephone-event');
    }
    dtmf.insertDTMF(dtmf.toneBuffer + tones, durationMs, gapMs);
  }

  /** Mute: the track sends silence (the server keeps its frame clock). */
  setMuted(muted) {
    if (this.sender?.track) this.sender.track.enabled = !muted;
  }

  close(code = 1000, reason = '') {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSING;
    this._finish(code, reason, true);
  }

  _finish(code, reason, wasClean) {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    const info = this.closeInfo;
    try {
      this.channel.close();
      this.pc.close();
    } catch {
      // already closed
    }
    // The server says how it ended (WebRTC itself has no close codes).
    this.onclose?.({ code: info?.code ?? code, reason: info?.reason ?? reason, wasClean: info ? true : wasClean });
  }
}

function gathered(pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, timeoutMs);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === 'complete') done();
    }
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/**
 * Plays the agent's stream through an <audio> element (so the browser's echo canceller hears it)
 * and taps what is played with the capture worklet: `onChunk` gets 20 ms of 16 kHz PCM16.
 *
 * `hold()` silences playback at once (barge-in: the server has stopped sending, but up to the
 * jitter buffer's worth of the interrupted words is still in flight); `resume()` undoes it when the
 * agent starts speaking again.
 */
export class RemoteAudio {
  constructor({ context, stream, onChunk }) {
    this.element = new Audio();
    this.element.autoplay = true;
    this.element.srcObject = stream;
    this.source = context.createMediaStreamSource(stream);
    this.gain = context.createGain();
    this.node = new AudioWorkletNode(context, 'callgate-capture', {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { targetRate: 16000, chunkMs: 20 },
    });
    this.node.port.onmessage = (event) => onChunk(event.data.pcm);
    this.source.connect(this.gain);
    this.gain.connect(this.node);
    this.node.connect(context.destination); // renders silence; keeps the tap running
    this.fallback = false;
    this.element.play().catch(() => {
      // Autoplay refused (no user gesture yet): play through the AudioContext instead.
      this.fallback = true;
      this.gain.connect(context.destination);
    });
  }

  hold() {
    this.element.muted = true;
    this.gain.gain.value = 0;
  }

  resume() {
    this.element.muted = false;
    this.gain.gain.value = 1;
  }

  release() {
    this.node.port.postMessage({ type: 'stop' });
    this.node.port.onmessage = null;
    this.node.disconnect();
    this.gain.disconnect();
    this.source.disconnect();
    this.element.srcObject = null;
  }
}

/** Count non-silent samples of a PCM16 chunk and its RMS level (0..1). */
export function measure(buffer) {
  const pcm = new Int16Array(buffer);
  let loud = 0;
  let energy = 0;
  for (let i = 0; i < pcm.length; i++) {
    const s = pcm[i];
    if (s > SILENCE_THRESHOLD || s < -SILENCE_THRESHOLD) loud++;
    energy += s * s;
  }
  return { samples: pcm.length, loud, level: Math.sqrt(energy / Math.max(1, pcm.length)) / 32768 };
}
