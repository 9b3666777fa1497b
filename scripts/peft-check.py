#!/usr/bin/env python3
"""Real PEFT on our exported adapters (issue 24, item 2): for each family (llama, llama3, qwen2,
qwen3), transformers loads the Hugging Face checkpoint of the tiny test model in float32, PEFT's
PeftModel.from_pretrained loads the adapter text2sql exported, and the logits must equal ours, which
test/fixtures/peft-check.json recorded from our engine: ‖PEFT − ours‖ / ‖ours‖ <= 1e-5 (the
fixture's bound), with the adapter and with it disabled. Not vacuous: the adapter moves our logits
by over 10%, and the same adapter exported with the q/k rows in the wrong order for the family
must land over 5% away from ours through PEFT.

The inputs are made by `npm run device-files` (or `npm run make-peft-fixture`), which writes
build/device/peft-check/<family>/{hf,adapter,adapter-wrong-order}/ with
scripts/make-peft-check.ts: make-hf-checkpoint's float32 output with the vocabulary cut to the ids
the check reads (why: that file's header). Their sha256 must be the fixture's: a stale folder is
an error, not a mismatch.

  python3 scripts/peft-check.py [--files build/device/peft-check] [--fixture test/fixtures/peft-check.json]
                                [--device cpu,cuda] [--families llama,qwen3] [--json-out FILE]
  python3 scripts/peft-check.py --files-only     the files against the fixture (no torch needed)

Needs torch, transformers and peft (the GPU machine has them; this project's CI does not). On
CUDA, TF32 is turned off so that float32 is float32. Prints one line per family and device, then
"ok" or "FAILED: ..." (exit status 1).
"""
import argparse
import hashlib
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRONG_ORDER_MIN = 0.05  # relative distance from ours that the wrong q/k order must exceed
ADAPTER_MOVES_MIN = 0.1  # relative change of our logits by the adapter


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def safetensors_header(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n).decode("utf8"))


def check_files(fam, root):
    """The family's folder is the one the fixture recorded: sha256 of every file, the cut vocabulary."""
    problems = []
    base = os.path.join(root, fam["family"])
    for rel, want in fam["files"].items():
        p = os.path.join(base, rel)
        if not os.path.isfile(p):
            problems.append(f"{p} is missing (run `npm run device-files` and carry build/device)")
        elif sha256(p) != want:
            problems.append(f"{p}: sha256 is not the fixture's (remake with `npm run device-files`, or re-record)")
    if problems:
        return problems
    with open(os.path.join(base, "hf", "config.json")) as f:
        config = json.load(f)
    k = len(fam["vocabIds"])
    hdr = safetensors_header(os.path.join(base, "hf", "model.safetensors"))
    if config["vocab_size"] != k or hdr["model.embed_tokens.weight"]["shape"][0] != k:
        problems.append(f"{base}/hf: vocab_size {config['vocab_size']} and the embedding rows must be the fixture's {k} ids")
    if [fam["vocabIds"][i] for i in fam["inputIds"]] != fam["tokens"]:
        problems.append(f"{fam['family']}: inputIds do not renumber the tokens into vocabIds")
    if len(fam["lora"]) != len(fam["tokens"]) or any(len(r) != k for r in fam["lora"] + fam["base"]):
        problems.append(f"{fam['family']}: the fixture's logits are not [{len(fam['tokens'])}, {k}]")
    return problems


def rel(a, b):
    import torch

    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


def load_model(hf_dir, device):
    """transformers' model in float32, every tensor checked against the file it was read from."""
    import torch
    import transformers
    from safetensors.torch import load_file

    dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, attn_implementation="eager", **{dtype_kw: torch.float32})
    model.eval()
    sd = model.state_dict()
    file = load_file(os.path.join(hf_dir, "model.safetensors"))
    missing = [k for k in file if k not in sd]
    extra = [k for k in sd if k not in file and not (k == "lm_head.weight" and model.config.tie_word_embeddings)]
    if missing or extra:
        raise RuntimeError(f"{hf_dir}: tensors of the file not in the model {missing}, of the model not in the file {extra}")
    for k, v in file.items():
        if sd[k].dtype != torch.float32 or not torch.equal(sd[k], v):
            raise RuntimeError(f"{hf_dir}: {k} was not loaded as float32 as it is in the file")
    if model.config.tie_word_embeddings and not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight):
        raise RuntimeError(f"{hf_dir}: tie_word_embeddings but lm_head differs from the embedding")
    return model.to(device)


def check_rope(model, fam):
    """Llama 3: transformers' inverse frequencies are the plain ones divided by the GGUF's factors."""
    import torch

    if fam["ropeFactors"] is None:
        return None
    cfg = model.config
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    theta = cfg.rope_theta if hasattr(cfg, "rope_theta") else cfg.rope_parameters["rope_theta"]
    plain = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    want = plain / torch.tensor(fam["ropeFactors"], dtype=torch.float64)
    got = model.model.rotary_emb.inv_freq.detach().double().cpu()
    err = float(((got - want).abs() / want).max())
    if not err <= 1e-5:
        raise RuntimeError(f"llama3 RoPE: transformers' inv_freq is {err:.3g} (relative) from the GGUF's factors: {got.tolist()} vs {want.tolist()}")
    return err


def check_family(fam, root, device, bound):
    import torch
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import load_file

    base = os.path.join(root, fam["family"])
    model = load_model(os.path.join(base, "hf"), device)
    rope_err = check_rope(model, fam)
    adapter = os.path.join(base, "adapter")
    pm = PeftModel.from_pretrained(model, adapter)
    pm.eval()
    # every LoRA weight PEFT holds is the file's, bit for bit, and every target module got one
    held = get_peft_model_state_dict(pm)
    file = load_file(os.path.join(adapter, "adapter_model.safetensors"))
    if sorted(held) != sorted(file):
        raise RuntimeError(f"{adapter}: PEFT holds {len(held)} LoRA tensors, the file has {len(file)}: {sorted(set(held) ^ set(file))[:4]}")
    for k, v in file.items():
        if not torch.equal(held[k].cpu(), v):
            raise RuntimeError(f"{adapter}: {k} differs from the file after loading")
    n_lora = sum(1 for _, m in pm.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A)
    want_lora = model.config.num_hidden_layers * len(json.load(open(os.path.join(adapter, "adapter_config.json")))["target_modules"])
    if n_lora != want_lora:
        raise RuntimeError(f"{adapter}: PEFT wrapped {n_lora} modules, expected {want_lora}")

    ids = torch.tensor([fam["inputIds"]], device=device)
    ours = torch.tensor(fam["lora"], dtype=torch.float64)
    ours_base = torch.tensor(fam["base"], dtype=torch.float64)
    with torch.no_grad():
        got = pm(input_ids=ids, use_cache=False).logits[0].double().cpu()
        with pm.disable_adapter():
            got_base = pm(input_ids=ids, use_cache=False).logits[0].double().cpu()
        pm.load_adapter(os.path.join(base, "adapter-wrong-order"), adapter_name="wrong_order")
        pm.set_adapter("wrong_order")
        got_wrong = pm(input_ids=ids, use_cache=False).logits[0].double().cpu()
    r = {
        "family": fam["family"],
        "device": device,
        "rel_lora": rel(got, ours),
        "rel_base": rel(got_base, ours_base),
        "rel_wrong_order": rel(got_wrong, ours),
        "adapter_moves": rel(ours, ours_base),
        "lora_modules": n_lora,
        "rope_inv_freq_rel": rope_err,
        "bound": bound,
    }
    fails = []
    if not r["rel_lora"] <= bound:
        fails.append(f"with the adapter {r['rel_lora']:.3g} > {bound:g}")
    if not r["rel_base"] <= bound:
        fails.append(f"the base model {r['rel_base']:.3g} > {bound:g}")
    if not r["rel_wrong_order"] > WRONG_ORDER_MIN:
        fails.append(f"the wrong q/k order is only {r['rel_wrong_order']:.3g} from ours (must exceed {WRONG_ORDER_MIN})")
    if not r["adapter_moves"] > ADAPTER_MOVES_MIN:
        fails.append(f"the fixture's adapter moves our logits by only {r['adapter_moves']:.3g}")
    r["failures"] = fails
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", default=os.path.join(ROOT, "build", "device", "peft-check"))
    ap.add_argument("--fixture", default=os.path.join(ROOT, "test", "fixtures", "peft-check.json"))
    ap.add_argument("--device", default="cpu", help="comma-separated: cpu, cuda")
    ap.add_argument("--families", default="", help="comma-separated subset (default: all in the fixture)")
    ap.add_argument("--files-only", action="store_true", help="check the files against the fixture and stop (no torch)")
    ap.add_argument("--json-out", default="")
    a = ap.parse_args()
    with open(a.fixture) as f:
        fixture = json.load(f)
    fams = [f for f in fixture["families"] if not a.families or f["family"] in a.families.split(",")]
    if not fams:
        print(f"FAILED: --families {a.families}: none of {[f['family'] for f in fixture['families']]}")
        return 1
    problems = [p for fam in fams for p in check_files(fam, a.files)]
    for p in problems:
        print(f"FAILED: {p}")
    if problems:
        return 1
    print(f"files ok: {len(fams)} families, {sum(len(f['files']) for f in fams)} files match {os.path.relpath(a.fixture, ROOT)}")
    if a.files_only:
        print("ok (files only: PEFT was not run)")
        return 0

    # the adapters name base_model_name_or_path text2sql/tiny-test-*: no hub look-ups (the GPU machine reaches no network)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import peft
    import torch
    import transformers

    if hasattr(torch.backends, "cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")
    results, failures = [], []
    for device in a.device.split(","):
        if device == "cuda" and not torch.cuda.is_available():
            failures.append("--device cuda: torch.cuda.is_available() is false")
            continue
        for fam in fams:
            try:
                r = check_family(fam, a.files, device, fixture["bound"])
            except Exception as e:  # one family's error is reported and the others still run
                r = {"family": fam["family"], "device": device, "failures": [f"{type(e).__name__}: {e}"]}
            results.append(r)
            if "rel_lora" in r:
                rope = f" rope_inv_freq_rel={r['rope_inv_freq_rel']:.2e}" if r["rope_inv_freq_rel"] is not None else ""
                print(
                    f"peft family={r['family']} device={device} rel_lora={r['rel_lora']:.3e} rel_base={r['rel_base']:.3e} bound={r['bound']:g} "
                    f"rel_wrong_order={r['rel_wrong_order']:.3f} adapter_moves={r['adapter_moves']:.3f} lora_modules={r['lora_modules']}{rope}"
                )
            failures += [f"{r['family']} on {device}: {x}" for x in r["failures"]]
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__, "results": results}, f, indent=1)
    for x in failures:
        print(f"FAILED: {x}")
    if not failures:
        print("ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
