#!/usr/bin/env python3
"""Makes music/hold.wav, callpark's default hold music, from nothing but
arithmetic: no samples or recordings of anyone else.

A gentle arpeggio over C - Am - F - G (two bars each, 96 bpm) with a soft
pad beneath, 8 kHz mono 16-bit (what G.711 carries anyway). The piece is a
whole number of bars, every note dies away inside it and the pad fades in
and out at the ends, so it loops without a click.

    python3 music/make_hold_music.py            # writes music/hold.wav
"""

import math
import struct
import wave
from pathlib import Path

RATE = 8000
BPM = 96
BEAT = 60.0 / BPM
# (root MIDI note, chord intervals) per two-bar chord.
PROGRESSION = [(60, (0, 4, 7)), (57, (0, 3, 7)), (53, (0, 4, 7)), (55, (0, 4, 7))]
ROUNDS = 2  # 2 rounds x 4 chords x 2 bars x 4 beats = 64 beats = 40 s


def freq(midi):
    return 440.0 * 2 ** ((midi - 69) / 12)


def main():
    beats = ROUNDS * len(PROGRESSION) * 8
    total = int(beats * BEAT * RATE)
    out = [0.0] * total

    def add_note(start_s, midi, dur_s, gain, bright):
        f = freq(midi)
        start = int(start_s * RATE)
        n = min(int(dur_s * RATE), total - start)
        for i in range(n):
            t = i / RATE
            env = min(1.0, t / 0.01) * math.exp(-t * 3.0)
            tone = (math.sin(2 * math.pi * f * t)
                    + bright * 0.3 * math.sin(4 * math.pi * f * t)
                    + bright * 0.1 * math.sin(6 * math.pi * f * t))
            out[start + i] += gain * env * tone

    beat = 0
    for _ in range(ROUNDS):
        for root, chord in PROGRESSION:
            notes = [root + i for i in chord] + [root + 12]
            pattern = [0, 1, 2, 3, 2, 1, 0, 2]
            for bar in range(2):
                for eighth in range(8):
                    start = (beat + bar * 4 + eighth * 0.5) * BEAT
                    add_note(start, notes[pattern[eighth]] + 12, 1.2, 0.16, 1.0)
            # The pad: the chord held softly for both bars.
            for i in chord:
                f = freq(root + i)
                start = int(beat * BEAT * RATE)
                n = int(8 * BEAT * RATE)
                for k in range(min(n, total - start)):
                    t = k / RATE
                    env = math.sin(math.pi * k / n) ** 2
                    out[start + k] += 0.05 * env * math.sin(2 * math.pi * f * t)
            beat += 8

    peak = max(abs(s) for s in out) or 1.0
    scale = 0.7 / peak
    path = Path(__file__).with_name("hold.wav")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(b"".join(struct.pack("<h", int(s * scale * 32767)) for s in out))
    print(f"wrote {path} ({total / RATE:.1f} s)")


if __name__ == "__main__":
    main()
