// callgate browser SDK: one web call over the callgate real-time WebSocket (RTVI messages
// plus raw PCM16 audio) or over WebRTC (Opus on a peer connection, RTVI on a data channel).
// No build step, no dependencies: import it as an ES module.
//
//   import { connect } from '/static/callgate.js';
//   const call = await connect({ url: webCall.websocket_url });
//   // or: connect({ transport: 'webrtc', url: webCall.webrtc_offer_url, token: webCall.token,
//   //               iceServers: webCall.ice_servers })
//   call.on('transcript', ({ role, text, final }) => ...);
//   call.registerTool('fill_form', async ({ email }) => { form.email.value = email; return { filled: true }; });
//   call.hangup();
//
// The wire protocol is specified in docs/realtime-protocol.md.

import { AudioIO, DEFAULT_MICROPHONE, openMicrophone } from './audio.js';
import { RemoteAudio, WebRTCLink, measure } from './webrtc.js';

export { DEFAULT_MICROPHONE, openMicrophone };

export const LIBRARY = 'callgate-js';
export const VERSION = '0.1.0';
export const PROTOCOL_VERSION = '1.0.0';
export const MODES = Object.freeze(['audio', 'text', 'audio_text']);
export const INPUT_SAMPLE_RATE = 16000;
export const TRANSPORTS = Object.freeze(['websocket', 'webrtc']);

/** Close codes the server uses, with the `reason` reported in `ended` when it sends none. */
export const CLOSE_REASONS = Object.freeze({
  1000: 'call_ended',
  1006: 'connection_lost',
  1009: 'frame_too_large',
  1011: 'server_error',
  1013: 'try_again_later',
  4400: 'protocol_error',
  4401: 'invalid_token',
  4403: 'token_not_for_this_call',
  4404: 'call_not_found',
  4409: 'token_already_used',
  4410: 'token_expired',
  4429: 'concurrency_limit',
});

const SILENCE_THRESHOLD = 300; // |sample| above this counts as non-silent (about -41 dBFS)
const MAX_SEND_BACKLOG_BYTES = 64000; // 2 s of caller audio; beyond this, drop frames
const MAX_TOOL_RESULT_CHARS = 15000; // the server refuses RTVI messages over 16 KB

/** Error thrown by `connect()` and the call's methods; `code` is the WebSocket close code if any. */
export class CallError extends Error {
  constructor(message, { code = null, reason = null, cause } = {}) {
    super(message, cause ? { cause } : undefined);
    this.name = 'CallError';
    this.code = code;
    this.reason = reason;
  }
}

/**
 * Join a web call. Resolves once the server has answered `bot-ready`.
 * @param {object} options
 * @param {string} options.url  `websocket_url` from the create-web-call response (ws:, wss:, http(s): or relative);
 *   with transport 'webrtc', its `webrtc_offer_url`
 * @param {string} [options.token]  call token, added as `?token=` if the URL does not carry it (required for webrtc)
 * @param {'websocket'|'webrtc'} [options.transport='websocket']  as the call was created with
 * @param {RTCIceServer[]} [options.iceServers]  webrtc: `ice_servers` from the create-web-call response
 * @param {'audio'|'text'|'audio_text'} [options.mode='audio']
 * @param {number} [options.outputSampleRate=16000]  rate the server should send agent audio at
 * @param {boolean|object|MediaStream} [options.microphone=true]  false: never capture; an object:
 *   getUserMedia audio constraints merged over the defaults; a MediaStream: use it (not stopped by the SDK)
 * @param {AudioContext} [options.audioContext]  use this context (e.g. one created in a click handler);
 *   the SDK does not close it
 * @param {number} [options.prebufferMs=60]  agent audio queued before playback starts
 * @param {number} [options.connectTimeoutMs=10000]
 * @param {(name: string, detail: any) => void} [options.onEvent]  called for every event
 * @returns {Promise<Call>}
 */
export async function connect(options) {
  const call = new Call(options);
  await call._connect();
  return call;
}

export class Call extends EventTarget {
  constructor({
    url,
    token,
    transport = 'websocket',
    iceServers = [],
    mode = 'audio',
    outputSampleRate = 16000,
    microphone = true,
    audioContext = null,
    prebufferMs = 60,
    connectTimeoutMs = 10000,
    onEvent = null,
  } = {}) {
    super();
    if (!url) throw new CallError('connect() needs the websocket_url of a web call');
    if (!MODES.includes(mode)) throw new CallError(`unknown mode ${JSON.stringify(mode)}`);
    if (!TRANSPORTS.includes(transport)) throw new CallError(`unknown transport ${JSON.stringify(transport)}`);
    if (transport === 'webrtc' && !token) throw new CallError('a webrtc call needs its token');
    this.transport = transport;
    this._token = token;
    this._iceServers = iceServers || [];
    this._remoteAudio = null;
    this._lastLoudAt = 0;
    this.url = transport === 'webrtc' ? new URL(url, globalThis.location?.href).toString() : resolveUrl(url, token);
    this.id = null;
    this.mode = mode;
    this.state = 'connecting';
    this.muted = false;
    this.agentSpeaking = false;
    this.userSpeaking = false;
    this.inputSampleRate = INPUT_SAMPLE_RATE;
    this.outputSampleRate = outputSampleRate;
    this.endInfo = null;
    this.stats = {
      bytesReceived: 0,
      framesReceived: 0,
      samplesReceived: 0,
      nonSilentSamplesReceived: 0,
      bytesSent: 0,
      framesSent: 0,
      samplesSent: 0,
      nonSilentSamplesSent: 0,
      framesDropped: 0,
      samplesPlayed: 0,
      samplesQueued: 0,
      flushes: 0,
      flushedSamples: 0,
      underruns: 0,
      playbackLevel: 0,
      inputLevel: 0,
      messagesSent: 0,
      messagesReceived: 0,
    };
    this._microphone = microphone;
    this._connectTimeoutMs = connectTimeoutMs;
    this._onEvent = onEvent;
    this._ws = null;
    this._audio = new AudioIO({
      microphone,
      audioContext,
      prebufferMs,
      onChunk: (pcm) => this._onCaptureChunk(pcm),
      onPlaybackStats: (stats) => this._onPlaybackStats(stats),
    });
    this._playing = false;
    this._pending = new Map(); // request id -> {t, resolve, reject, timer}
    this._tools = new Map(); // client tool name -> handler
    this._userTurn = 0;
    this._agentTurn = 0;
    this._agent = { llm: '', tts: '', open: false };
    this._endReason = null;
    this._hangupRequested = false;
    this._closed = null; // resolves with endInfo
  }

  /** The AudioContext used for capture and playback (null in text mode until audio is needed). */
  get audioContext() {
    return this._audio.context;
  }

  /** WebRTC: the agent's audio as a MediaStream (null before it arrives, and over WebSocket). */
  get remoteStream() {
    return this.transport === 'webrtc' ? (this._ws?.remoteStream ?? null) : null;
  }

  /** WebRTC: the peer connection's statistics (`RTCStatsReport`); null over WebSocket. */
  async getStats() {
    return this.transport === 'webrtc' && this._ws ? this._ws.pc.getStats() : null;
  }

  /** Subscribe to an event; `fn` receives the event's detail. Returns an unsubscribe function. */
  on(name, fn) {
    const handler = (event) => fn(event.detail);
    this.addEventListener(name, handler);
    return () => this.removeEventListener(name, handler);
  }

  /**
   * Let the agent run the client tool `name` (defined on the agent with `"type": "client"`) in this page.
   * `handler(args, { name, toolCallId, call })` may be async; what it returns (JSON) is the tool's result
   * the agent gets, and what it throws is the tool's error. Returns a function that unregisters it.
   */
  registerTool(name, handler) {
    if (typeof name !== 'string' || !name) throw new CallError('registerTool() needs a tool name');
    if (typeof handler !== 'function') throw new CallError('registerTool() needs a handler function');
    this._tools.set(name, handler);
    return () => {
      if (this._tools.get(name) === handler) this._tools.delete(name);
    };
  }

  /** Mute or unmute the microphone: silence is sent in place of the caller's audio. */
  mute(muted = true) {
    this.muted = !!muted;
    this._audio.setMuted(this.muted);
    if (this.transport === 'webrtc') this._ws?.setMuted(this.muted);
    if (this.state === 'connected') this._send('client-message', { t: 'mute', d: { muted: this.muted } });
    this._emit('mute', { muted: this.muted });
  }

  /** Send a typed caller message. The agent answers with audio unless the mode is `text`. */
  sendText(text, { audioResponse } = {}) {
    this._requireConnected();
    const content = String(text ?? '').trim();
    if (!content) throw new CallError('sendText() needs some text');
    this._finishAgentTurn(false); // the caller's new turn closes the agent's
    const id = this._send('send-text', {
      content,
      options: { run_immediately: true, audio_response: audioResponse ?? this.mode !== 'text' },
    });
    this._emit('transcript', { role: 'user', text: content, final: true, turnId: this._userTurn++, typed: true });
    return id;
  }

  /**
   * Press keys (0-9, *, #, A-D). Over WebRTC they are RFC 4733 telephone-events on the audio track, as a
   * phone sends them; over WebSocket a `dtmf` client-message. Either way the agent receives them as one
   * typed caller turn, "DTMF 12#", once '#' is pressed or 1.5 s after the last key. Returns a promise
   * (resolved at once over WebRTC; when the server has the keys over WebSocket).
   */
  async sendDtmf(keys, { durationMs = 100, gapMs = 70 } = {}) {
    this._requireConnected();
    const tones = String(keys ?? '').toUpperCase();
    if (!/^[0-9*#A-D]{1,32}$/.test(tones)) throw new CallError('sendDtmf() takes 1-32 of the keys 0-9, *, #, A-D');
    if (this.transport === 'webrtc') {
      try {
        this._ws.sendDtmf(tones, durationMs, gapMs);
      } catch (error) {
        throw new CallError(error.message, { cause: error });
      }
    } else {
      await this._request('dtmf', { digits: tones });
    }
    this._emit('dtmf', { keys: tones });
  }

  /** Switch between 'audio', 'text' and 'audio_text'; resolves when the server confirms. */
  async setMode(mode) {
    this._requireConnected();
    if (!MODES.includes(mode)) throw new CallError(`unknown mode ${JSON.stringify(mode)}`);
    const confirmed = await this._request('set-mode', { mode });
    await this._applyMode(confirmed?.mode ?? mode);
    return this.mode;
  }

  /** Hang up: tell the server, wait (briefly) for it to close, and release the microphone. */
  async hangup() {
    if (this.state === 'ended') return this.endInfo;
    this._hangupRequested = true;
    if (this._ws && this._ws.readyState === WebSocket.OPEN) {
      this._send('disconnect-bot', {});
      const timer = setTimeout(() => this._ws.close(1000, 'caller hung up'), 2000);
      const info = await this._closed;
      clearTimeout(timer);
      return info;
    }
    if (this._ws) this._ws.close(1000, 'caller hung up');
    return this._closed;
  }

  // ---- connection -------------------------------------------------------------------

  async _connect() {
    if (this._wantsMicrophone()) {
      try {
        await this._audio.openStream();
      } catch (error) {
        throw new CallError(`microphone unavailable: ${error.message}`, { reason: 'microphone', cause: error });
      }
    }
    if (this.mode !== 'text') await this._audio.ensureContext();
    const ws =
      this.transport === 'webrtc'
        ? new WebRTCLink({
            url: this.url,
            token: this._token,
            iceServers: this._iceServers,
            stream: this._wantsMicrophone() ? this._audio.stream : null,
            timeoutMs: this._connectTimeoutMs,
          })
        : new WebSocket(this.url);
    ws.binaryType = 'arraybuffer';
    this._ws = ws;
    let settle;
    const ready = new Promise((resolve, reject) => (settle = { resolve, reject }));
    this._readyWaiter = settle;
    this._closed = new Promise((resolve) => (this._resolveClosed = resolve));
    const timer = setTimeout(() => {
      settle.reject(new CallError('timed out waiting for bot-ready', { reason: 'timeout' }));
      ws.close(4000, 'client timeout');
    }, this._connectTimeoutMs);
    ws.onopen = () => {
      const data = {
        version: PROTOCOL_VERSION,
        about: { library: LIBRARY, library_version: VERSION, platform: 'browser' },
        audio: { output_sample_rate: this.outputSampleRate },
        mode: this.mode,
      };
      this._send('client-ready', data);
    };
    ws.onmessage = (event) => this._onWsMessage(event.data);
    ws.onclose = (event) => this._onWsClose(event);
    try {
      await ready;
    } catch (error) {
      this._releaseAudio();
      throw error;
    } finally {
      clearTimeout(timer);
      this._readyWaiter = null;
    }
  }

  _onWsMessage(data) {
    if (typeof data !== 'string') {
      this._onAudio(data);
      return;
    }
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return; // not ours to judge; the server never sends invalid JSON
    }
    if (!msg || msg.label !== 'rtvi-ai') return;
    this.stats.messagesReceived += 1;
    this._emit('message', msg);
    this._handle(msg.type, msg.data || {}, msg.id);
  }

  _handle(type, data, id) {
    switch (type) {
      case 'bot-ready':
        this._onBotReady(data);
        break;
      case 'user-started-speaking':
      case 'user-stopped-speaking':
        this.userSpeaking = type === 'user-started-speaking';
        this._emit('user-speaking', this.userSpeaking);
        break;
      case 'bot-started-speaking':
      case 'bot-stopped-speaking':
        this.agentSpeaking = type === 'bot-started-speaking';
        if (this.agentSpeaking) this._remoteAudio?.resume();
        // In the audio modes each stretch of agent speech is one transcript turn. LLM text
        // that arrived before the speech started belongs to the turn that starts now.
        if (this.mode !== 'text' && (!this.agentSpeaking || this._agent.tts)) this._finishAgentTurn(false);
        this._emit('agent-speaking', this.agentSpeaking);
        break;
      case 'user-transcription':
        this._onUserTranscription(data);
        break;
      case 'bot-llm-text':
        this._agent.llm += data.text || '';
        this._agent.open = true;
        if (this.mode === 'text') this._emitAgentText(false);
        break;
      case 'bot-tts-text':
        this._agent.tts = joinWords(this._agent.tts, data.text || '');
        this._agent.open = true;
        if (this.mode !== 'text') this._emitAgentText(false);
        break;
      case 'bot-llm-started':
      case 'bot-llm-stopped':
        // Each LLM response is one transcript turn in text mode.
        if (this.mode === 'text') this._finishAgentTurn(false);
        break;
      case 'bot-interrupted':
        this.stats.flushes += 1;
        this._audio.flush();
        this._remoteAudio?.hold(); // webrtc: drop what is still in the jitter buffer
        this._finishAgentTurn(true);
        this._emit('interrupted', {});
        break;
      case 'metrics':
        // callgate sends the turn's latency once the agent turn is over: close it (text mode
        // has no bot-stopped-speaking to do so).
        if (data.turn) this._finishAgentTurn(false);
        this._emit('metrics', data);
        break;
      case 'server-message':
        this._onServerMessage(data);
        break;
      case 'llm-function-call':
        this._onFunctionCall(data);
        break;
      case 'server-response':
        this._resolvePending(id, data.t, data.d);
        break;
      case 'error-response':
        this._rejectPending(id, new CallError(data.error || data.message || 'request failed'));
        break;
      case 'error':
        this._emit('error', { message: data.message ?? data.error ?? 'server error', fatal: !!data.fatal });
        break;
      default:
        break; // other RTVI messages (bot-tts-started, ...) only reach 'message'
    }
  }

  async _onBotReady(data) {
    this.id = data.call_id ?? null;
    if (MODES.includes(data.mode)) this.mode = data.mode;
    if (data.audio?.input_sample_rate) this.inputSampleRate = data.audio.input_sample_rate;
    if (data.audio?.output_sample_rate) this.outputSampleRate = data.audio.output_sample_rate;
    this.state = 'connected';
    try {
      if (this.mode !== 'text') await this._startAudio();
    } catch (error) {
      this._readyWaiter?.reject(new CallError(`audio setup failed: ${error.message}`, { cause: error }));
      this._ws.close(1000, 'client audio setup failed');
      return;
    }
    this._readyWaiter?.resolve();
    this._emit('connected', { callId: this.id, mode: this.mode, audio: data.audio || {}, server: data.about || {} });
  }

  async _onFunctionCall(data) {
    const name = data.function_name;
    const toolCallId = data.tool_call_id;
    const args = data.args ?? data.arguments ?? {};
    const reply = { function_name: name, tool_call_id: toolCallId, arguments: args };
    this._emit('tool-call', { name, toolCallId, args });
    const handler = this._tools.get(name);
    try {
      if (!handler) throw new Error(`this page has no handler for the tool ${name}`);
      const result = await handler(args, { name, toolCallId, call: this });
      reply.result = result === undefined ? null : result;
      // The server takes messages up to 16 KB: a larger result is the tool's error, not a lost call.
      if (JSON.stringify(reply).length > MAX_TOOL_RESULT_CHARS) throw new Error('the result is too large');
    } catch (error) {
      delete reply.result;
      reply.error = String(error?.message ?? error).slice(0, 500);
    }
    if (this.state === 'connected') this._send('llm-function-call-result', reply);
    this._emit('tool-result', { name, toolCallId, result: reply.result, error: reply.error });
  }

  _onServerMessage(data) {
    if (data.type === 'call-ended') this._endReason = data.reason || 'call_ended';
    else if (data.type === 'transfer') this._emit('transfer', { target: data.target });
    this._emit('server-message', data);
  }

  _onWsClose(event) {
    const code = event.code;
    const fallback = event.reason || CLOSE_REASONS[code] || `closed_${code}`;
    const reason = this._endReason || (this._hangupRequested && code === 1000 ? 'caller_hangup' : fallback);
    this.endInfo = { code, reason, wasClean: event.wasClean };
    const wasConnected = this.state === 'connected';
    this.state = 'ended';
    this._readyWaiter?.reject(new CallError(`call closed before it was ready (${code} ${reason})`, { code, reason }));
    for (const pending of this._pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(new CallError('call ended', { code, reason }));
    }
    this._pending.clear();
    this._finishAgentTurn(false);
    this._releaseAudio();
    if (wasConnected) this._emit('ended', this.endInfo);
    this._resolveClosed(this.endInfo);
  }

  // ---- messages -----------------------------------------------------------------------

  _send(type, data) {
    const id = randomId();
    this._ws.send(JSON.stringify({ label: 'rtvi-ai', type, id, data }));
    this.stats.messagesSent += 1;
    return id;
  }

  _request(t, d, timeoutMs = 5000) {
    return new Promise((resolve, reject) => {
      const id = this._send('client-message', { t, d });
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new CallError(`no answer to ${t}`));
      }, timeoutMs);
      this._pending.set(id, { t, resolve, reject, timer });
    });
  }

  _resolvePending(id, t, d) {
    let key = this._pending.has(id) ? id : null;
    if (key === null) {
      for (const [k, p] of this._pending) if (p.t === t) key = k;
    }
    if (key !== null) {
      const pending = this._pending.get(key);
      this._pending.delete(key);
      clearTimeout(pending.timer);
      pending.resolve(d);
    } else if (t === 'set-mode' && d?.mode) {
      this._applyMode(d.mode); // the server changed the mode on its own
    }
  }

  _rejectPending(id, error) {
    const pending = this._pending.get(id);
    if (pending) {
      this._pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this._emitError(error);
  }

  _requireConnected() {
    if (this.state !== 'connected') throw new CallError(`the call is ${this.state}`);
  }

  // ---- transcript ---------------------------------------------------------------------

  _onUserTranscription(data) {
    if (!data.text) return;
    const final = !!data.final;
    if (final) this._finishAgentTurn(false); // the caller's new turn closes the agent's
    const turnId = this._userTurn;
    this._emit('transcript', { role: 'user', text: data.text, final, turnId, timestamp: data.timestamp });
    if (final) this._userTurn += 1;
  }

  _agentText() {
    // In audio modes show what has been spoken (bot-tts-text); fall back to the LLM's
    // text for a turn that produced no speech.
    return this.mode === 'text' ? this._agent.llm : this._agent.tts || '';
  }

  _emitAgentText(final, interrupted = false) {
    const text = final ? this._agentText() || this._agent.llm : this._agentText();
    if (!text) return;
    const detail = { role: 'agent', text, final, turnId: this._agentTurn };
    if (interrupted) detail.interrupted = true;
    this._emit('transcript', detail);
  }

  _finishAgentTurn(interrupted) {
    if (!this._agent.open) return;
    this._emitAgentText(true, interrupted);
    this._agent = { llm: '', tts: '', open: false };
    this._agentTurn += 1;
  }

  // ---- audio --------------------------------------------------------------------------

  _wantsMicrophone() {
    return this._microphone !== false && this.mode !== 'text';
  }

  async _startAudio() {
    if (this.transport === 'webrtc') await this._startRemoteAudio();
    else await this._audio.startPlayback(this.outputSampleRate);
    // Over WebRTC the microphone goes out on the track; capture only feeds `stats`.
    if (this._wantsMicrophone()) await this._audio.startCapture(this.inputSampleRate);
  }

  async _startRemoteAudio() {
    if (this._remoteAudio) return;
    const [context, stream] = await Promise.all([this._audio.ensureContext(), this._ws.remoteAudio()]);
    if (this._remoteAudio || this.state !== 'connected') return;
    this._remoteAudio = new RemoteAudio({ context, stream, onChunk: (pcm) => this._onRemoteChunk(pcm) });
  }

  /** WebRTC: 20 ms of what the agent's track is playing (16 kHz PCM16), for `stats` and `playback`. */
  _onRemoteChunk(buffer) {
    const { samples, loud, level } = measure(buffer);
    this.stats.bytesReceived += buffer.byteLength;
    this.stats.framesReceived += 1;
    this.stats.samplesReceived += samples;
    this.stats.nonSilentSamplesReceived += loud;
    this.stats.samplesPlayed += samples;
    this.stats.playbackLevel = level;
    const now = performance.now();
    if (loud) this._lastLoudAt = now;
    const playing = now - this._lastLoudAt < 200;
    if (playing !== this._playing) this._emit('playback', { playing });
    this._playing = playing;
  }

  _onPlaybackStats(s) {
    const scale = this.outputSampleRate / s.contextRate;
    this.stats.samplesPlayed = Math.round(s.playedFrames * scale);
    this.stats.samplesQueued = Math.round(s.queuedFrames * scale);
    this.stats.flushedSamples = Math.round(s.droppedFrames * scale);
    this.stats.playbackLevel = s.level;
    if (s.reason === 'drained' && this.agentSpeaking) this.stats.underruns += 1;
    if (s.playing !== this._playing) this._emit('playback', { playing: s.playing });
    this._playing = s.playing;
  }

  _onAudio(buffer) {
    const bytes = buffer.byteLength - (buffer.byteLength % 2);
    const pcm = new Int16Array(buffer, 0, bytes / 2);
    let loud = 0;
    for (let i = 0; i < pcm.length; i++) if (pcm[i] > SILENCE_THRESHOLD || pcm[i] < -SILENCE_THRESHOLD) loud++;
    this.stats.bytesReceived += buffer.byteLength;
    this.stats.framesReceived += 1;
    this.stats.samplesReceived += pcm.length;
    this.stats.nonSilentSamplesReceived += loud;
    if (this.state !== 'connected') return;
    if (!this._audio.playbackReady) {
      // Audio while in text mode (the server switched on its own): build playback lazily.
      this._audio.startPlayback(this.outputSampleRate).catch((error) => this._emitError(error));
    }
    this._audio.push(bytes === buffer.byteLength ? buffer : buffer.slice(0, bytes));
  }

  _onCaptureChunk(buffer) {
    const ws = this._ws;
    if (this.state !== 'connected' || !ws || ws.readyState !== WebSocket.OPEN) return;
    if (this.transport === 'webrtc') {
      const { samples, loud, level } = measure(buffer);
      this.stats.framesSent += 1;
      this.stats.samplesSent += samples;
      this.stats.nonSilentSamplesSent += loud;
      this.stats.inputLevel = level;
      return;
    }
    if (ws.bufferedAmount > MAX_SEND_BACKLOG_BYTES) {
      this.stats.framesDropped += 1;
      return;
    }
    const pcm = new Int16Array(buffer);
    let loud = 0;
    let energy = 0;
    for (let i = 0; i < pcm.length; i++) {
      const s = pcm[i];
      if (s > SILENCE_THRESHOLD || s < -SILENCE_THRESHOLD) loud++;
      energy += s * s;
    }
    ws.send(buffer);
    this.stats.bytesSent += buffer.byteLength;
    this.stats.framesSent += 1;
    this.stats.samplesSent += pcm.length;
    this.stats.nonSilentSamplesSent += loud;
    this.stats.inputLevel = Math.sqrt(energy / Math.max(1, pcm.length)) / 32768;
  }

  async _applyMode(mode) {
    if (!MODES.includes(mode) || this.state !== 'connected') return;
    const previous = this.mode;
    this.mode = mode;
    if (mode === 'text') this._audio.stopCapture();
    else await this._startAudio();
    if (mode !== previous) this._emit('mode', { mode });
  }

  _releaseAudio() {
    this._remoteAudio?.release();
    this._remoteAudio = null;
    // Let the last words (a goodbye just before call-ended) finish playing.
    const queuedMs = (this.stats.samplesQueued / this.outputSampleRate) * 1000;
    this._audio.release(this._playing ? Math.min(3000, queuedMs + 200) : 0);
  }

  _emitError(error) {
    this._emit('error', { message: error.message, fatal: false });
  }

  _emit(name, detail) {
    if (this._onEvent) {
      try {
        this._onEvent(name, detail);
      } catch (error) {
        console.error('callgate onEvent handler failed', error);
      }
    }
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }
}

function resolveUrl(url, token) {
  const base = typeof location !== 'undefined' ? location.href : undefined;
  const u = new URL(url, base);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  if (token && !u.searchParams.has('token')) u.searchParams.set('token', token);
  return u.toString();
}

function joinWords(previous, next) {
  if (!previous) return next.trimStart();
  if (!next) return previous;
  if (/\s$/.test(previous) || /^[\s.,!?;:]/.test(next)) return previous + next;
  return `${previous} ${next}`;
}

function randomId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  return Math.random().toString(36).slice(2) + Date.now().toString(36);
}
