#!/usr/bin/env bash
# Makes the announcement prompts in music/prompts/ with the speech
# synthesizer espeak-ng (Debian package espeak-ng). They stay at espeak's
# 22.05 kHz mono 16-bit; the server resamples every prompt to 8 kHz at load.
#     apt-get install -y espeak-ng && bash music/make_prompts.sh
set -euo pipefail
cd "$(dirname "$0")/prompts"
say() { espeak-ng -v en-us -s 150 -a 120 -w "$1.wav" "$2"; }
for d in 0 1 2 3 4 5 6 7 8 9; do
    words=(zero one two three four five six seven eight nine)
    say "$d" "${words[$d]}"
done
say star "star"
say hash "pound"
say parked-on "parked on"
say nothing-parked "nothing is parked on"
ls -l
