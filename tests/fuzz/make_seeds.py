#!/usr/bin/env python3
"""Builds the fuzz targets' seed corpora from the real files in the shared
data directory (never copied into the repository) plus the hand-written
seeds under tests/fuzz/seeds/<target>/.

    make_seeds.py OUT_DIR [SHARED_DIR]

writes OUT_DIR/<target>/<name> for every target. Seeds are kept small
(libFuzzer's -max_len follows the largest seed): the big real files are cut
down to small files of the same structure (a few tensors of the seedling
checkpoint, the first few hundred tokens of a vocabulary, a one-layer
model with a real vocabulary), plus the real expert files as they are.
Python 3 standard library only."""

import json
import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------- safetensors

ST_DTYPE_SIZE = {"F32": 4, "F16": 2, "BF16": 2}


def st_read(path):
    """(header dict, data bytes) of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack_from("<Q", raw, 0)[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def st_write(tensors, meta):
    """tensors: [(name, dtype, shape, bytes)] -> safetensors bytes."""
    header, data = {}, b""
    if meta is not None:
        header["__metadata__"] = meta
    for name, dtype, shape, blob in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def st_tensors(header, data, keep):
    out = []
    for name, d in header.items():
        if name != "__metadata__" and keep(name, d):
            b, e = d["data_offsets"]
            out.append((name, d["dtype"], d["shape"], data[b:e]))
    return out


# ----------------------------------------------------------------------- GGUF

G_UINT32, G_FLOAT32, G_BOOL, G_STRING, G_ARRAY = 4, 6, 7, 8, 9
G_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "B",
            10: "Q", 11: "q", 12: "d"}
GGML_F32, GGML_F16, GGML_Q8_0 = 0, 1, 8


class Reader:
    def __init__(self, raw):
        self.raw, self.pos = raw, 0

    def take(self, fmt):
        v = struct.unpack_from("<" + fmt, self.raw, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return v[0]

    def string(self):
        n = self.take("Q")
        s = self.raw[self.pos:self.pos + n]
        self.pos += n
        return s


def gguf_read_kv(path):
    """Metadata of a tensor-less GGUF: [(key, type, value)], arrays as
    (elem_type, [values])."""
    with open(path, "rb") as f:
        r = Reader(f.read())
    assert r.raw[:4] == b"GGUF"
    r.pos = 4
    r.take("I")
    assert r.take("Q") == 0, "vocab files have no tensors"
    kvs = []
    for _ in range(r.take("Q")):
        key, t = r.string().decode(), r.take("I")
        if t == G_ARRAY:
            et, n = r.take("I"), r.take("Q")
            vals = [r.string() if et == G_STRING else r.take(G_SCALAR[et]) for _ in range(n)]
            kvs.append((key, t, (et, vals)))
        else:
            kvs.append((key, t, r.string() if t == G_STRING else r.take(G_SCALAR[t])))
    return kvs


def gguf_value(t, v):
    if t == G_STRING:
        v = v.encode() if isinstance(v, str) else v
        return struct.pack("<Q", len(v)) + v
    if t == G_ARRAY:
        et, vals = v
        return struct.pack("<IQ", et, len(vals)) + b"".join(gguf_value(et, x) for x in vals)
    return struct.pack("<" + G_SCALAR[t], v)


def gguf_write(kvs, tensors, align=32):
    """kvs: [(key, type, value)]; tensors: [(name, dims, ggml_type, bytes)]."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, t, v in kvs:
        out += gguf_value(G_STRING, key) + struct.pack("<I", t) + gguf_value(t, v)
    data = b""
    for name, dims, gt, blob in tensors:
        data += b"\0" * (-len(data) % align)
        out += gguf_value(G_STRING, name) + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", gt, len(data))
        data += blob
    out += b"\0" * (-len(out) % align)
    return out + data


def mini_vocab(kvs, n_keep):
    """The first n_keep tokens of a vocabulary (+ its bos/eos/unk tokens,
    renumbered after them) and the merges whose result is still in it."""
    kv = {k: (t, v) for k, t, v in kvs}
    tokens = kv["tokenizer.ggml.tokens"][1][1]
    special_keys = [k for k in kv if k.startswith("tokenizer.ggml.") and k.endswith("_token_id")]
    keep = list(range(min(n_keep, len(tokens))))
    for k in special_keys:
        if kv[k][1] not in keep:
            keep.append(kv[k][1])
    new_id = {old: i for i, old in enumerate(keep)}
    kept = {tokens[i] for i in keep}
    out = []
    for k, t, v in kvs:
        if t == G_ARRAY and k.startswith("tokenizer.ggml.") and len(v[1]) == len(tokens):
            v = (v[0], [v[1][i] for i in keep])
        elif k == "tokenizer.ggml.merges":
            v = (v[0], [m for m in v[1] if m.replace(b" ", b"", 1) in kept])
        elif k in special_keys:
            v = new_id[v]
        out.append((k, t, v))
    return out


def f16(vals):
    return struct.pack("<%de" % len(vals), *vals)


def f32(vals):
    return struct.pack("<%df" % len(vals), *vals)


def q8_0(vals):
    """ggml Q8_0 blocks: f16 scale + 32 int8."""
    out = b""
    for b in range(0, len(vals), 32):
        blk = vals[b:b + 32]
        amax = max(abs(x) for x in blk)
        d = amax / 127 if amax else 0.0
        q = [int(round(x / d)) if d else 0 for x in blk]
        out += struct.pack("<e32b", d, *q)
    return out


def weights(n, seed):
    """Small deterministic values in [-0.5, 0.5)."""
    return [((i * 2654435761 + seed * 40503) % 1000) / 1000.0 - 0.5 for i in range(n)]


def mini_model(vocab_kvs, arch, qtype, tied, extra=()):
    """A one-layer model (hidden 32, 4 heads, 2 KV heads, MLP 64) with a
    real vocabulary: what t2_model_load accepts, at a few tens of KB."""
    H, heads, kv_heads, inter = 32, 4, 2, 64
    hd = H // heads
    V = len(dict((k, v) for k, _, v in vocab_kvs)["tokenizer.ggml.tokens"][1])
    kvs = [("general.architecture", G_STRING, arch), ("general.name", G_STRING, "fuzz-mini")]
    for key, val in (("context_length", 256), ("embedding_length", H), ("block_count", 1),
                     ("feed_forward_length", inter), ("attention.head_count", heads),
                     ("attention.head_count_kv", kv_heads)):
        kvs.append(("%s.%s" % (arch, key), G_UINT32, val))
    kvs.append(("%s.attention.layer_norm_rms_epsilon" % arch, G_FLOAT32, 1e-5))
    kvs.append(("%s.rope.freq_base" % arch, G_FLOAT32, 10000.0))
    kvs += list(extra)
    kvs += [x for x in vocab_kvs if x[0].startswith("tokenizer.")]

    def mat(name, rows, cols, seed):
        vals = weights(rows * cols, seed)
        blob = {GGML_F32: f32, GGML_F16: f16, GGML_Q8_0: q8_0}[qtype](vals)
        return (name, [cols, rows], qtype, blob)

    def vec(name, n, seed):
        return (name, [n], GGML_F32, f32(weights(n, seed)))

    ts = [mat("token_embd.weight", V, H, 1), vec("output_norm.weight", H, 2),
          vec("blk.0.attn_norm.weight", H, 3), mat("blk.0.attn_q.weight", heads * hd, H, 4),
          mat("blk.0.attn_k.weight", kv_heads * hd, H, 5),
          mat("blk.0.attn_v.weight", kv_heads * hd, H, 6),
          mat("blk.0.attn_output.weight", H, heads * hd, 7), vec("blk.0.ffn_norm.weight", H, 8),
          mat("blk.0.ffn_gate.weight", inter, H, 9), mat("blk.0.ffn_up.weight", inter, H, 10),
          mat("blk.0.ffn_down.weight", H, inter, 11)]
    if arch == "qwen2":
        ts += [vec("blk.0.attn_q.bias", heads * hd, 12), vec("blk.0.attn_k.bias", kv_heads * hd, 13),
               vec("blk.0.attn_v.bias", kv_heads * hd, 14)]
    if not tied:
        ts.append(mat("output.weight", V, H, 15))
    return gguf_write(kvs, ts)


# ------------------------------------------------------------- tokenizer.json

def spm_tokenizer_json(spm_kvs, metaspace):
    """A Llama-2-style tokenizer.json (byte fallback, '▁' for spaces) over a
    small real SentencePiece vocabulary: normalizer or Metaspace form."""
    kv = {k: v for k, _, v in spm_kvs}
    tokens = [t.decode("utf-8", "replace") for t in kv["tokenizer.ggml.tokens"][1]]
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = []
    for t in tokens:  # every split of a piece whose halves are in the vocabulary
        for i in range(1, len(t)):
            if t[:i] in vocab and t[i:] in vocab and not t.startswith("<"):
                merges.append([t[:i], t[i:]])
                break
    j = {
        "version": "1.0",
        "added_tokens": [{"id": i, "content": tokens[i], "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}
                         for i in range(3)],
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "byte_fallback": True,
                  "fuse_unk": True, "ignore_merges": False, "vocab": vocab, "merges": merges},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
    }
    if metaspace:
        j["normalizer"] = None
        j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581",
                              "prepend_scheme": "first", "split": False}
    else:
        j["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
        j["pre_tokenizer"] = None
    j["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1,
                                                     "stop": 0}]}
    return json.dumps(j, ensure_ascii=False).encode()


def split_tokenizer_json(seedling):
    """seedling's tokenizer with a Llama-3-style Split regex pre-tokenizer
    and an NFC normalizer instead of its own pipeline."""
    j = json.loads(seedling)
    j["normalizer"] = {"type": "NFC"}
    j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex":
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?"
            "[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
         "use_regex": False}]}
    return json.dumps(j, ensure_ascii=False).encode()


# ---------------------------------------------------------------------- main

def write(out, target, name, blob):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(blob)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def vocab_test_inputs(path):
    """The test strings of a vocab's .inp file (bytes; some are only
    whitespace)."""
    return [s.strip(b"\n") for s in read(path).split(b"\n__ggml_vocab_test__\n") if s]


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: make_seeds.py OUT_DIR [SHARED_DIR]")
    out = sys.argv[1]
    shared = sys.argv[2] if len(sys.argv) == 3 else os.path.join(HERE, "..", "..", "..", "shared")
    seedling = os.path.join(shared, "models", "seedling")
    vocab = os.path.join(shared, "vocab")
    if os.path.isdir(out):
        shutil.rmtree(out)

    # hand-written seeds (requests, profiles, multipart, tokenizers)
    hand = os.path.join(HERE, "seeds")
    for target in sorted(os.listdir(hand)):
        for name in sorted(os.listdir(os.path.join(hand, target))):
            write(out, target, "hand-" + name, read(os.path.join(hand, target, name)))

    # safetensors: the checkpoint's header with its 1-D tensors (bf16) and
    # one matrix, the header alone (payload cut off), every expert
    header, data = st_read(os.path.join(seedling, "model.safetensors"))
    small = st_tensors(header, data, lambda n, d: len(d["shape"]) == 1 and ".layers.0." in n)
    write(out, "fuzz_safetensors", "seedling-norms", st_write(small, header.get("__metadata__")))
    raw = read(os.path.join(seedling, "model.safetensors"))
    hlen = struct.unpack_from("<Q", raw, 0)[0]
    write(out, "fuzz_safetensors", "seedling-header-only", raw[:8 + hlen])
    experts = sorted(f for f in os.listdir(os.path.join(seedling, "experts"))
                     if f.endswith(".safetensors"))
    for f in experts:
        blob = read(os.path.join(seedling, "experts", f))
        write(out, "fuzz_safetensors", "expert-" + f, blob)
        write(out, "fuzz_expert", f, blob)

    # experts: the real ones, one cut to three vectors as "sigmoid", and
    # one with F16 values
    h, d = st_read(os.path.join(seedling, "experts", experts[0]))
    meta = dict(h.get("__metadata__", {}))
    three = st_tensors(h, d, lambda n, _: ".layers.0." in n)
    meta_sig = dict(meta, parametrization="sigmoid", max_mult="2.0", name="sig")
    write(out, "fuzz_expert", "three-sigmoid", st_write(three, meta_sig))
    halves = [(n, "F16", s, f16(list(struct.unpack("<%df" % (len(b) // 4), b)))) for n, _, s, b in three]
    write(out, "fuzz_expert", "three-f16", st_write(halves, dict(meta, name="half")))

    # GGUF: small vocabularies of both tokenizer kinds, and small models
    gpt2 = mini_vocab(gguf_read_kv(os.path.join(vocab, "ggml-vocab-gpt-2.gguf")), 400)
    spm = mini_vocab(gguf_read_kv(os.path.join(vocab, "ggml-vocab-llama-spm.gguf")), 400)
    star = mini_vocab(gguf_read_kv(os.path.join(vocab, "ggml-vocab-starcoder.gguf")), 400)
    for name, kvs in (("gpt2-400", gpt2), ("llama-spm-400", spm), ("starcoder-400", star)):
        write(out, "fuzz_gguf", "vocab-" + name, gguf_write(kvs, []))
    models = {
        "llama-f16-tied": mini_model(gpt2, "llama", GGML_F16, True),
        "qwen2-q8_0": mini_model(gpt2, "qwen2", GGML_Q8_0, False),
        "llama-spm-f32-llama3": mini_model(spm, "llama", GGML_F32, True, extra=(
            ("t2.rope.freq_dtype", G_STRING, "bf16"),
            ("t2.rope.llama3.factor", G_FLOAT32, 8.0),
            ("t2.rope.llama3.low_freq_factor", G_FLOAT32, 1.0),
            ("t2.rope.llama3.high_freq_factor", G_FLOAT32, 4.0),
            ("t2.rope.llama3.original_context_length", G_UINT32, 8192),
            ("t2.eos_token_ids", G_ARRAY, (G_UINT32, [2, 1])))),
    }
    for name, blob in models.items():
        write(out, "fuzz_gguf_model", name, blob)
        write(out, "fuzz_gguf", "model-" + name, blob)

    # tokenizer.json: seedling's, and two SentencePiece-style ones and a
    # Split-regex one built from real vocabularies
    seedling_tok = read(os.path.join(seedling, "tokenizer.json"))
    write(out, "fuzz_tok_json", "seedling.json", seedling_tok)
    write(out, "fuzz_tok_json", "spm-normalizer.json", spm_tokenizer_json(spm, False))
    write(out, "fuzz_tok_json", "spm-metaspace.json", spm_tokenizer_json(spm, True))
    write(out, "fuzz_tok_json", "split-nfc.json", split_tokenizer_json(seedling_tok))

    # encode: each conformance string for each of the target's tokenizers
    # (byte 0: bits 2-3 pick the tokenizer, bit 0 parse_special, bit 1 BOS)
    inputs = vocab_test_inputs(os.path.join(vocab, "ggml-vocab-gpt-2.gguf.inp"))
    inputs.append(b"<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n")
    for i, text in enumerate(inputs):
        for which in range(3):
            flags = which << 2 | (i % 4)
            write(out, "fuzz_tok_encode", "inp-%02d-%d" % (i, which), bytes([flags]) + text[:512])

    # multipart: an upload of a real expert file
    ct = b"multipart/form-data; boundary=----t2fuzz\n"
    body = (b"------t2fuzz\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nmath2\r\n"
            b"------t2fuzz\r\nContent-Disposition: form-data; name=\"file\"; "
            b"filename=\"math.safetensors\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            + st_write(three, meta) + b"\r\n------t2fuzz--\r\n")
    write(out, "fuzz_multipart", "expert-upload", ct + body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
