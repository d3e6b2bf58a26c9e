#!/usr/bin/python3
"""Reads a GPT-2 file that strata exported, as a stranger to strata would, and checks it.

    /usr/bin/python3 tests/graph/gpt2_export_check.py DIR/model.safetensors reference.safetensors

DIR/model.safetensors, DIR/config.json: written by SaveGpt2Weights and SaveGpt2Config
(graph/models/gpt2_checkpoint.h), as strata-gpt --export writes them.
reference.safetensors: from the C++ test (tests/graph/gpt2_checkpoint_test.cc):
    ids      I32 [B, T]          token ids
    logits   F32 [B, T, vocab]   strata's logits for ids, from the exported parameters

The file is parsed with plain json + struct + numpy (no safetensors package, no strata code):
the header, Hugging Face GPT2LMHeadModel's names, shapes (Conv1D weights [in, out]) and dtypes,
the metadata {"format": "pt"}, data offsets that tile the data section, and a config.json whose
GPT2Config fields agree with the shapes (n_head, which no shape records, comes from it). Then GPT-2's forward
is recomputed in float64 with torch the way transformers' GPT2LMHeadModel computes it (Conv1D
y = x @ W + b, c_attn's output split [q | k | v], causal softmax scaled by 1/sqrt(head dim),
GELU with tanh ("gelu_new"), LayerNorm eps 1e-5, lm_head tied to wte) and compared with strata's
logits. Exits 0 when everything holds, 1 with one line per problem otherwise, 77 without
numpy or torch.
"""
import json
import math
import pathlib
import struct
import sys

try:
    import numpy as np
    import torch
except ModuleNotFoundError as e:  # the caller skips on 77 (launch/setup installs both)
    print(f"gpt2_export_check: needs the Python module '{e.name}' (python3-numpy, python3-torch)")
    sys.exit(77)

TOLERANCE = 1e-5
DTYPES = {"F32": np.float32, "I32": np.int32}


def read_safetensors(path):
    """-> (metadata, {name: (dtype, shape, numpy array)}, problems)."""
    problems = []
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    if (8 + n) % 8 != 0:
        problems.append(f"{path}: the data section starts at byte {8 + n}, not 8-byte aligned")
    metadata = header.pop("__metadata__", {})
    body = data[8 + n:]
    tensors, spans = {}, []
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        spans.append((begin, end, name))
        dtype = DTYPES.get(entry["dtype"])
        if dtype is None:
            problems.append(f"{name}: dtype {entry['dtype']}")
            continue
        count = int(np.prod(entry["shape"], dtype=np.int64))
        if end - begin != count * np.dtype(dtype).itemsize:
            problems.append(f"{name}: {end - begin} bytes for shape {entry['shape']}")
            continue
        array = np.frombuffer(body[begin:end], dtype=np.dtype(dtype).newbyteorder("<"))
        tensors[name] = (entry["dtype"], list(entry["shape"]), array.reshape(entry["shape"]))
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            problems.append(f"{name}: starts at {begin}, after a gap or overlap at {position}")
        position = end
    if position != len(body):
        problems.append(f"{path}: tensors end at {position} of a {len(body)}-byte data section")
    return metadata, tensors, problems


def expected_layout(vocab, positions, layers, width):
    """Hugging Face GPT2LMHeadModel's model.safetensors: name -> shape."""
    c = width
    shapes = {"transformer.wte.weight": [vocab, c], "transformer.wpe.weight": [positions, c],
              "transformer.ln_f.weight": [c], "transformer.ln_f.bias": [c]}
    for i in range(layers):
        h = f"transformer.h.{i}."
        shapes.update({
            h + "ln_1.weight": [c], h + "ln_1.bias": [c],
            h + "attn.c_attn.weight": [c, 3 * c], h + "attn.c_attn.bias": [3 * c],
            h + "attn.c_proj.weight": [c, c], h + "attn.c_proj.bias": [c],
            h + "ln_2.weight": [c], h + "ln_2.bias": [c],
            h + "mlp.c_fc.weight": [c, 4 * c], h + "mlp.c_fc.bias": [4 * c],
            h + "mlp.c_proj.weight": [4 * c, c], h + "mlp.c_proj.bias": [c],
        })
    return shapes


def gpt2_logits(p, ids, layers, heads):
    """transformers' GPT2LMHeadModel forward (eval, no dropout) in float64."""
    def conv1d(x, name):
        return x @ p[name + ".weight"] + p[name + ".bias"]

    def layer_norm(x, name):
        return torch.nn.functional.layer_norm(x, x.shape[-1:], p[name + ".weight"],
                                              p[name + ".bias"], eps=1e-5)

    def gelu_new(x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

    b, t = ids.shape
    x = p["transformer.wte.weight"][ids] + p["transformer.wpe.weight"][torch.arange(t)]
    c = x.shape[-1]
    d = c // heads
    causal = torch.tril(torch.ones(t, t, dtype=torch.bool))
    for i in range(layers):
        h = f"transformer.h.{i}."
        q, k, v = conv1d(layer_norm(x, h + "ln_1"), h + "attn.c_attn").split(c, dim=-1)
        q, k, v = (z.view(b, t, heads, d).transpose(1, 2) for z in (q, k, v))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
        scores = scores.masked_fill(~causal, float("-inf"))
        y = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, t, c)
        x = x + conv1d(y, h + "attn.c_proj")
        m = gelu_new(conv1d(layer_norm(x, h + "ln_2"), h + "mlp.c_fc"))
        x = x + conv1d(m, h + "mlp.c_proj")
    x = layer_norm(x, "transformer.ln_f")
    return x @ p["transformer.wte.weight"].T  # lm_head tied to wte


def main(model_path, reference_path):
    torch.set_num_threads(1)
    metadata, tensors, problems = read_safetensors(model_path)
    _, reference, ref_problems = read_safetensors(reference_path)
    problems += ref_problems
    config = json.loads((pathlib.Path(model_path).parent / "config.json").read_text())
    heads = config["n_head"]
    if metadata != {"format": "pt"}:
        problems.append(f"metadata {metadata}, expected {{'format': 'pt'}}")

    wte = tensors.get("transformer.wte.weight")
    wpe = tensors.get("transformer.wpe.weight")
    if wte is None or wpe is None:
        problems.append("no transformer.wte.weight or transformer.wpe.weight")
        return problems
    layers = 0
    while f"transformer.h.{layers}.ln_1.weight" in tensors:
        layers += 1
    vocab, width = wte[1]
    expected = expected_layout(vocab, wpe[1][0], layers, width)
    for field, value in (("model_type", "gpt2"), ("vocab_size", vocab),
                         ("n_positions", wpe[1][0]), ("n_embd", width), ("n_layer", layers),
                         ("activation_function", "gelu_new"), ("layer_norm_epsilon", 1e-5),
                         ("tie_word_embeddings", True)):
        if config.get(field) != value:
            problems.append(f"config.json: {field} {config.get(field)!r}, expected {value!r}")
    if not isinstance(heads, int) or heads < 1 or width % heads != 0:
        problems.append(f"config.json: n_head {heads!r} does not divide n_embd {width}")
    for name in sorted(set(tensors) | set(expected)):
        if name not in tensors:
            problems.append(f"missing {name}")
        elif name not in expected:
            problems.append(f"unexpected {name}")
        elif tensors[name][0] != "F32" or tensors[name][1] != expected[name]:
            problems.append(f"{name}: {tensors[name][0]}{tensors[name][1]}, "
                            f"expected F32{expected[name]}")
    if problems:
        return problems

    params = {name: torch.from_numpy(a.astype(np.float64)) for name, (_, _, a) in tensors.items()}
    ids = torch.from_numpy(reference["ids"][2].astype(np.int64))
    ours = torch.from_numpy(reference["logits"][2].astype(np.float64))
    theirs = gpt2_logits(params, ids, layers, heads)
    if theirs.shape != ours.shape:
        return [f"logits {list(theirs.shape)} from the file, {list(ours.shape)} from strata"]
    diff = (theirs - ours).abs().max().item()
    print(f"{len(tensors)} tensors, {layers} layers, width {width}, {heads} heads, vocab {vocab}: "
          f"max |logits difference| {diff:.3g} (logits up to {theirs.abs().max().item():.3g})")
    if not diff <= TOLERANCE:
        problems.append(f"max |logits difference| {diff:.3g} exceeds {TOLERANCE}")
    return problems


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    found = main(sys.argv[1], sys.argv[2])
    for problem in found:
        print(f"gpt2_export_check: {problem}")
    sys.exit(1 if found else 0)
