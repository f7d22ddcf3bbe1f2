// The call page: draw the stereo recording's waveform on a canvas from the WAV itself, mark the
// turns on it, and play a turn when it (or its place on the waveform) is chosen.
const audio = document.getElementById('recording');
const canvas = document.getElementById('waveform');
const marksNode = document.getElementById('turn-marks');
const marks = marksNode ? JSON.parse(marksNode.textContent) : [];
let duration = 0;
let stopAt = null;

/** Parse a PCM16 WAV: { rate, channels, samples: Int16Array (interleaved) }. */
export function parseWav(buffer) {
  const view = new DataView(buffer);
  let offset = 12, rate = 16000, channels = 2, data = null;
  while (offset + 8 <= view.byteLength) {
    const id = String.fromCharCode(...new Uint8Array(buffer, offset, 4));
    const size = view.getUint32(offset + 4, true);
    if (id === 'fmt ') { channels = view.getUint16(offset + 10, true); rate = view.getUint32(offset + 12, true); }
    if (id === 'data') { data = new Int16Array(buffer.slice(offset + 8, offset + 8 + Math.min(size, view.byteLength - offset - 8) & ~1)); break; }
    offset += 8 + size + (size & 1);
  }
  return { rate, channels, samples: data || new Int16Array(0) };
}

function draw(wav) {
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  const frames = wav.samples.length / wav.channels;
  duration = frames / wav.rate;
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, width, height);
  const lane = height / 2;
  const colours = ['#1f4f8a', '#1a7f37'];
  for (let ch = 0; ch < Math.min(2, wav.channels); ch++) {
    ctx.fillStyle = colours[ch];
    const mid = lane * ch + lane / 2;
    const per = Math.max(1, Math.floor(frames / width));
    for (let x = 0; x < width; x++) {
      let lo = 0, hi = 0;
      for (let i = x * per; i < Math.min(frames, (x + 1) * per); i++) {
        const v = wav.samples[i * wav.channels + ch];
        if (v < lo) lo = v; if (v > hi) hi = v;
      }
      const top = mid - (hi / 32768) * (lane / 2), bottom = mid - (lo / 32768) * (lane / 2);
      ctx.fillRect(x, top, 1, Math.max(1, bottom - top));
    }
  }
  ctx.fillStyle = 'rgba(188, 76, 0, 0.8)';
  for (const mark of marks) {
    const x = Math.round((mark.start / Math.max(duration, 0.001)) * width);
    ctx.fillRect(x, 0, 2, height);
  }
  canvas.dataset.drawn = String(frames);
}

function play(start, end) {
  audio.currentTime = start;
  stopAt = end;
  audio.play();
}

if (audio && canvas) {
  fetch(audio.getAttribute('src'), { credentials: 'same-origin' })
    .then((r) => r.arrayBuffer())
    .then((buffer) => draw(parseWav(buffer)))
    .catch((error) => { canvas.dataset.error = String(error); });
  audio.addEventListener('timeupdate', () => {
    if (stopAt !== null && audio.currentTime >= stopAt) { audio.pause(); stopAt = null; }
    for (const li of document.querySelectorAll('.turn')) {
      const button = li.querySelector('.play-turn');
      const playing = button && audio.currentTime >= +button.dataset.start && audio.currentTime < +button.dataset.end;
      li.classList.toggle('playing', !!playing && !audio.paused);
    }
  });
  for (const button of document.querySelectorAll('.play-turn')) {
    button.addEventListener('click', () => play(+button.dataset.start, +button.dataset.end));
  }
  canvas.addEventListener('click', (event) => {
    if (!duration) return;
    const at = (event.offsetX / canvas.clientWidth) * duration;
    const turn = marks.find((m) => at >= m.start && at < m.end);
    if (turn) play(turn.start, turn.end); else play(at, null);
  });
}
