// t2's OpenAI-compatible endpoints against the official, unmodified `openai`
// npm package (issue 4: "the official SDKs work unmodified").
//
// Starts `t2 serve --port 0` on the seedling model with a temporary copy of
// its experts (like tests/integration/t2test.py), points the SDK at
// http://127.0.0.1:PORT/v1 and checks chat completions (plain and streamed),
// legacy completions, models.list(), expert selection by model id, t2's
// `adaptation` extension passed as an extra body field, the SDK's error
// mapping, and a clean SIGTERM shutdown (exit 0).
//
// usage: T2_BIN=build/server/t2 T2_SHARED=../shared node --test tests/openai/
//        (or tests/openai/run.sh PATH/TO/t2, which meson runs; the t2 path may
//        also be the first argument when this file is run directly with node)
// The server runs with --default-strategy none, so the base model id means
// the base weights (with the default `prompt` strategy pass 1 would route the
// math questions below to the math expert).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const T2 = path.resolve(process.env.T2_BIN || process.argv[2] || path.join(HERE, "..", "..", "build", "server", "t2"));
const SHARED = process.env.T2_SHARED || path.join(HERE, "..", "..", "..", "shared");
const MODEL = path.join(SHARED, "models", "seedling");
const slow = process.env.T2_TEST_WRAPPER ? 20 : 1;

let server; // {proc, url, log(), exited: Promise<{code, signal}>, tmp}
let client;
let baseId;
let failed = false; // the server's log is printed when a check failed

// node:test's test(), noting failures so that after() can show the log
function check(name, fn) {
  return test(name, async (t) => {
    try {
      await fn(t);
    } catch (e) {
      failed = true;
      throw e;
    }
  });
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

async function startServer() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "t2oai-"));
  const experts = path.join(tmp, "experts");
  fs.cpSync(path.join(MODEL, "experts"), experts, { recursive: true });
  fs.chmodSync(experts, 0o755);
  for (const f of fs.readdirSync(experts)) fs.chmodSync(path.join(experts, f), 0o644);
  const args = ["serve", "--model", MODEL, "--port", "0", "--threads", "2",
    "--experts", experts, "--profiles", path.join(tmp, "profiles"),
    "--default-strategy", "none"];
  const extra = (process.env.T2_TEST_ARGS || "").split(/\s+/).filter(Boolean);
  const wrapper = (process.env.T2_TEST_WRAPPER || "").split(/\s+/).filter(Boolean);
  // the server dies with this process (Linux parent-death signal via
  // util-linux setpriv, as t2test.py does with prctl), so an interrupted
  // test leaves no server behind
  const pdeath = fs.existsSync("/usr/bin/setpriv") ? ["/usr/bin/setpriv", "--pdeathsig", "KILL"] : [];
  const cmd = [...pdeath, ...wrapper, T2, ...args, ...extra];
  const proc = spawn(cmd[0], cmd.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
  process.on("exit", () => { if (!done) proc.kill("SIGKILL"); });
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.once(sig, () => { if (!done) proc.kill("SIGKILL"); process.exit(128 + os.constants.signals[sig]); });
  }
  let log = "";
  proc.stderr.setEncoding("utf8");
  proc.stderr.on("data", (d) => { log += d; });
  const exited = new Promise((resolve) => proc.on("exit", (code, signal) => resolve({ code, signal })));
  let done = false;
  exited.then(() => { done = true; });
  proc.on("error", (e) => { log += `spawn error: ${e.message}\n`; });

  const s = { proc, tmp, exited, log: () => log, done: () => done };
  const deadline = Date.now() + 30000 * slow;
  let m;
  while (!(m = /listening on (http:\/\/\S+)/.exec(log))) {
    if (done) throw new Error(`t2 serve exited early:\n${log}`);
    if (Date.now() > deadline) throw new Error(`no 'listening on' line:\n${log}`);
    await sleep(20);
  }
  s.url = m[1];
  const readyBy = Date.now() + 60000 * slow;
  for (;;) {
    try {
      const r = await fetch(`${s.url}/ready`);
      if (r.status === 200) {
        s.ready = await r.json();
        break;
      }
    } catch { /* not accepting yet */ }
    if (done) throw new Error(`t2 serve exited while loading:\n${log}`);
    if (Date.now() > readyBy) throw new Error(`not ready in time:\n${log}`);
    await sleep(50);
  }
  return s;
}

// the plain HTTP call the SDK's answer is compared with
async function plainChat(body) {
  const r = await fetch(`${server.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(r.status, 200, `plain /v1/chat/completions: ${r.status}`);
  return r.json();
}

function chat(model, question, extra = {}) {
  return client.chat.completions.create({
    model, messages: [{ role: "user", content: question }], temperature: 0, max_tokens: 16, ...extra,
  });
}

before(async () => {
  assert.ok(fs.existsSync(T2), `t2 binary not found: ${T2} (set T2_BIN)`);
  assert.ok(fs.existsSync(path.join(MODEL, "config.json")), `seedling model not found in ${MODEL} (set T2_SHARED)`);
  server = await startServer();
  baseId = server.ready.model;
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 120000 * slow });
});

after(async () => {
  if (server && !server.done()) {
    server.proc.kill("SIGKILL");
    await server.exited;
  }
  if (server) fs.rmSync(server.tmp, { recursive: true, force: true });
  if (server && failed) console.error(`--- t2 serve log ---\n${server.log()}`);
});

check("models.list() lists the base model and its experts", async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.equal(baseId, "seedling");
  assert.ok(ids.includes(baseId), `base id missing from ${ids}`);
  assert.ok(ids.includes("seedling:math"), `seedling:math missing from ${ids}`);
  const m = await client.models.retrieve("seedling:math");
  assert.equal(m.id, "seedling:math");
  assert.equal(m.object, "model");
});

check("chat completion equals the plain HTTP answer", async () => {
  const q = "What is 12 + 30?";
  const res = await chat(baseId, q);
  const text = res.choices[0].message.content;
  assert.equal(typeof text, "string");
  assert.ok(text.length > 0, "empty content");
  assert.equal(res.object, "chat.completion");
  assert.equal(res.choices[0].message.role, "assistant");
  assert.equal(res.choices[0].finish_reason, "stop");
  assert.ok(res.usage.completion_tokens > 0 && res.usage.prompt_tokens > 0, JSON.stringify(res.usage));
  const plain = await plainChat({
    model: baseId, messages: [{ role: "user", content: q }], temperature: 0, max_tokens: 16,
  });
  assert.equal(text, plain.choices[0].message.content);
  assert.equal(text, "42");
});

check("streamed chat completion: deltas concatenate to the non-streamed text", async () => {
  const q = "What is 12 + 30?";
  const whole = await chat(baseId, q);
  const stream = await chat(baseId, q, { stream: true, stream_options: { include_usage: true } });
  let text = "";
  let finish = null;
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    assert.equal(chunk.object, "chat.completion.chunk");
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta?.content) text += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.ok(chunks >= 3, `only ${chunks} chunks`);
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, "stop");
  assert.ok(usage, "no usage chunk with include_usage");
  assert.equal(usage.completion_tokens, whole.usage.completion_tokens);
});

check("model seedling:math selects the math expert", async () => {
  const q = "What is 461 + 129?";
  const base = await chat(baseId, q);
  const math = await chat("seedling:math", q);
  assert.equal(base.choices[0].message.content, "690");
  assert.equal(math.choices[0].message.content, "680");
  assert.equal(math.model, "seedling:math");
  // the same through a streamed request
  let text = "";
  for await (const chunk of await chat("seedling:math", q, { stream: true })) {
    text += chunk.choices[0]?.delta?.content ?? "";
  }
  assert.equal(text, "680");
});

check("t2's adaptation object passes through the SDK as an extra body field", async () => {
  const res = await chat(baseId, "What is 461 + 129?", { adaptation: { strategy: "expert", expert: "math" } });
  assert.equal(res.choices[0].message.content, "680");
});

check("legacy completions with an expert model id", async () => {
  const res = await client.completions.create({
    model: "seedling:math",
    prompt: "<|im_start|>user\nWhat is 461 + 129?<|im_end|>\n<|im_start|>assistant\n",
    max_tokens: 16, temperature: 0,
  });
  assert.equal(res.object, "text_completion");
  assert.equal(res.choices[0].text, "680");
});

check("errors map to the SDK's error classes", async () => {
  await assert.rejects(chat("llama", "hi"), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError, `${e?.constructor?.name}: ${e}`);
    assert.equal(e.status, 404);
    assert.equal(e.code, "model_not_found");
    assert.equal(e.param, "model");
    return true;
  });
  // an unknown expert behind the base id (the code is the expert's
  // `not_found`; only the status is checked here)
  await assert.rejects(chat("seedling:nope", "hi"), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError, `${e?.constructor?.name}: ${e}`);
    assert.equal(e.status, 404);
    return true;
  });
  await assert.rejects(chat(baseId, "hi", { max_tokens: 0 }), (e) => {
    assert.ok(e instanceof OpenAI.APIError, `${e?.constructor?.name}: ${e}`);
    assert.equal(e.status, 422);
    return true;
  });
});

check("SIGTERM stops the server with exit status 0", async () => {
  server.proc.kill("SIGTERM");
  const timer = setTimeout(() => server.proc.kill("SIGKILL"), 30000 * slow);
  const { code, signal } = await server.exited;
  clearTimeout(timer);
  assert.equal(signal, null, `killed by ${signal}`);
  assert.equal(code, 0, `exit status ${code}\n${server.log()}`);
});
