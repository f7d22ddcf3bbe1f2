import asyncio, json, logging
from pathlib import Path
import pytest
from tests.e2e.test_browser_webrtc import join, loud_seconds
from tests.e2e.browser import concat_wavs, launch_chromium, make_speech_wav, new_page
from tests.realtime.conftest import LiveServer
from tests.realtime.webrtc_client import loopback_ice
from callgate.realtime import webrtc_call

async def case_debug(live: LiveServer, tmp_path: Path, monkeypatch) -> None:
    loopback_ice(monkeypatch)
    speech = make_speech_wav("I would like to book an appointment for tomorrow at three pm.", tmp_path / "s.wav", engine="piper")
    mic = concat_wavs([11.0, speech, 15.0], tmp_path / "mic.wav")
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, transport="webrtc")
    log = []
    async with launch_chromium(fake_audio=mic) as browser:
        page = await new_page(browser, log=log)
        await join(page, live, call)
        app_calls = None
        import gc
        from callgate.realtime.webrtc_call import LiveCalls
        app_calls = [o for o in gc.get_objects() if isinstance(o, LiveCalls)][0]
        for i in range(40):
            await asyncio.sleep(1)
            wc = list(app_calls._calls.values())[0]
            lvl = await page.evaluate("""async () => { const r = await window.call.getStats(); return [...r.values()].filter(s => s.type == 'inbound-rtp').map(s => [s.packetsReceived, s.audioLevel, s.jitterBufferDelay, s.jitterBufferEmittedCount, s.concealedSamples, s.totalSamplesReceived]); }""")
            ev = await page.evaluate("() => window.events.filter(e => e.name != 'message' && e.name != 'playback').map(e => e.name + ':' + JSON.stringify(e.detail).slice(0,60))")
            print(i, wc.media.outbound_stats, wc.media.inbound_stats, lvl, ev[-3:])
        for i in range(0):
            ev = await page.evaluate("() => window.events.map(e => e.name + ':' + JSON.stringify(e.detail).slice(0,80))")
            stats = await page.evaluate("() => window.call.stats")
            print(i, "events", ev[-6:])
            print("   stats", {k: stats[k] for k in ('nonSilentSamplesReceived','samplesReceived','nonSilentSamplesSent','samplesSent','framesSent')})
            print("   loud", await loud_seconds(page))
            rtp = await page.evaluate("""async () => { const r = await window.call.getStats(); return [...r.values()].filter(s => s.type.includes('rtp')).map(s => [s.type, s.packetsSent, s.packetsReceived, s.audioLevel]); }""")
            print("   rtp", rtp)
        print(log[-20:])
