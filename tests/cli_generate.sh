#!/bin/sh
# End-to-end check of `t2 generate` on the seedling model: the chat
# prompt of the README gets the model's answer on stdout, and bad input
# gets a message and a non-zero status.
set -u
T2=$1
MODEL=${T2_SHARED:-../shared}/models/seedling
fail() { echo "FAIL: $*"; exit 1; }

out=$("$T2" generate --model "$MODEL" --chat --prompt "What is 12 + 30?") || fail "generate exited $?"
[ "$out" = "42" ] || fail "expected 42, got '$out'"

out=$("$T2" generate --model "$MODEL" --chat --prompt "What is 461 + 129?" --stop 9) || fail "stop run"
[ "$out" = "6" ] || fail "stop string: expected 6, got '$out'"

"$T2" generate --model /nonexistent --prompt x 2>err.txt && fail "missing model accepted"
grep -q "no such file" err.txt || fail "no message for a missing model: $(cat err.txt)"
"$T2" generate --model "$MODEL" --prompt x --temperature -1 2>err.txt && fail "negative temperature accepted"
grep -q "temperature" err.txt || fail "no message for a bad temperature"
"$T2" frobnicate 2>/dev/null && fail "unknown command accepted"
rm -f err.txt
echo "cli_generate: 5 passed, 0 failed"
