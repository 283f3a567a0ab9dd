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

# Transformer²: the math expert changes this answer (reference greedy.math: 6 8 0)
EXPERTS=$MODEL/experts
out=$("$T2" generate --model "$MODEL" --experts "$EXPERTS" --chat --prompt "What is 461 + 129?" --expert math) || fail "expert run"
[ "$out" = "680" ] || fail "math expert: expected 680, got '$out'"
out=$("$T2" generate --model "$MODEL" --experts "$EXPERTS" --chat --prompt "What is 461 + 129?" \
      --strategy prompt --classify-prompt "Classify the question into one of: {labels}. Answer as \\boxed{category}." -v 2>err.txt) || fail "prompt strategy"
grep -q "label 'math'" err.txt || fail "prompt strategy did not pick math: $(cat err.txt)"
[ "$out" = "680" ] || fail "prompt strategy: expected 680, got '$out'"
"$T2" generate --model "$MODEL" --experts "$EXPERTS" --prompt x --expert nope 2>err.txt && fail "unknown expert accepted"
grep -q "unknown expert 'nope'" err.txt || fail "no message for an unknown expert"

# few-shot search saved as a profile, then used
PROFILES=$(mktemp -d)
head -4 "$MODEL/data/transfer_fewshot.jsonl" > shots.jsonl
"$T2" adapt --model "$MODEL" --experts "$EXPERTS" --profiles "$PROFILES" --examples shots.jsonl \
    --name transfer --generations 1 --population 4 >profile.json 2>err.txt || fail "t2 adapt: $(cat err.txt)"
[ -f "$PROFILES/transfer.json" ] || fail "profile not saved"
grep -q '"source": "few_shot"' profile.json || fail "profile not printed"
"$T2" generate --model "$MODEL" --experts "$EXPERTS" --profiles "$PROFILES" --profile transfer \
    --chat --prompt "What is 2 + 2?" >/dev/null 2>err.txt || fail "profile use: $(cat err.txt)"
rm -rf "$PROFILES" err.txt shots.jsonl profile.json
echo "cli_generate: 10 passed, 0 failed"
