// The LoRA contract, owned here and nowhere else: which linear layers of a Llama block can carry an
// adapter, their names in each world (short, Hugging Face, GGUF), the index the native engine
// knows each one by, the adapter options (rank, alpha, dropout, rsLoRA, seed), their defaults
// and their checks. The training config, the engine, PEFT import/export, the converter, the CLI
// and eval all derive from this module; C++ receives validated indices, never names.

/** The seven adaptable layers, in the order of the native engine's `lora_target` enum (native/engine.h). */
export const LORA_MODULES = [
  { short: "q", hf: "q_proj", gguf: "attn_q", group: "self_attn" },
  { short: "k", hf: "k_proj", gguf: "attn_k", group: "self_attn" },
  { short: "v", hf: "v_proj", gguf: "attn_v", group: "self_attn" },
  { short: "o", hf: "o_proj", gguf: "attn_output", group: "self_attn" },
  { short: "gate", hf: "gate_proj", gguf: "ffn_gate", group: "mlp" },
  { short: "up", hf: "up_proj", gguf: "ffn_up", group: "mlp" },
  { short: "down", hf: "down_proj", gguf: "ffn_down", group: "mlp" },
] as const;

export type LoraModule = (typeof LORA_MODULES)[number];
/** A layer's short name: q, k, v, o, gate, up or down. */
export type LoraTarget = LoraModule["short"];
/** A layer's Hugging Face name: q_proj, ..., down_proj. */
export type HfModuleName = LoraModule["hf"];
export const LORA_TARGETS: readonly LoraTarget[] = LORA_MODULES.map((m) => m.short);

export interface LoraOptions {
  /** Rank (default 8). */
  r?: number;
  /** Scale numerator: the update is (alpha / r)·B·A, or alpha / sqrt(r) with rsLoRA (default 16). */
  alpha?: number;
  /** Dropout on the LoRA branch input, as PEFT (default 0). */
  dropout?: number;
  /** Rank-stabilised scaling alpha / sqrt(r) (default false). */
  rslora?: boolean;
  /** Any of q, k, v, o, gate, up, down or their HF names q_proj, ... (default q, v). */
  targetModules?: string[];
  /** Seed of the A initialisation and the dropout stream (default 42). */
  seed?: number;
}

/** Options after resolveLoraOptions: every field set, targets as short names, deduplicated, in layer order. */
export type ResolvedLoraOptions = Required<Omit<LoraOptions, "targetModules">> & { targetModules: LoraTarget[] };

/** PEFT's semantics and defaults (except alpha 16 = 2r, the usual choice). */
export const LORA_DEFAULTS: Readonly<ResolvedLoraOptions> = Object.freeze({
  r: 8,
  alpha: 16,
  dropout: 0,
  rslora: false,
  targetModules: ["q", "v"] as LoraTarget[],
  seed: 42,
});

/** Throws a TypeError naming the option, what was expected and what arrived. */
export function fail(option: string, expected: string, got: unknown): never {
  const shown = typeof got === "string" ? JSON.stringify(got) : Array.isArray(got) ? `[${got.join(", ")}]` : String(got);
  throw new TypeError(`${option}: expected ${expected}, got ${shown}`);
}

export function checkInt(option: string, v: unknown, min: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) fail(option, `an integer >= ${min}`, v);
  return v;
}

export function checkNum(option: string, v: unknown, ok: (x: number) => boolean, expected: string): number {
  if (typeof v !== "number" || !Number.isFinite(v) || !ok(v)) fail(option, expected, v);
  return v;
}

const BY_NAME = new Map<string, LoraModule>(
  LORA_MODULES.flatMap(
    (m) =>
      [
        [m.short, m],
        [m.hf, m],
        [m.gguf, m],
      ] as [string, LoraModule][],
  ),
);

/** The layer named q, q_proj or attn_q (any of the three names); throws naming `option` and the choices. */
export function loraModule(name: string, option = "lora.target_modules"): LoraModule {
  const m = typeof name === "string" ? BY_NAME.get(name) : undefined;
  if (!m) {
    throw new TypeError(
      `${option}: unknown module ${JSON.stringify(name)}; expected any of ${LORA_TARGETS.join(", ")} or ${LORA_MODULES.map((x) => x.hf).join(", ")}`,
    );
  }
  return m;
}

/** Maps q_proj/attn_q/q to the short name; throws naming the unknown module. */
export function normalizeTarget(name: string): LoraTarget {
  return loraModule(name).short;
}

/** The native engine's index of a layer (0 = q ... 6 = down). */
export function targetIndex(name: string): number {
  return LORA_MODULES.indexOf(loraModule(name));
}

/** Checks every option and fills in the defaults; errors name the option (`lora.r`, ...). */
export function resolveLoraOptions(l: LoraOptions = {}): ResolvedLoraOptions {
  if (typeof l !== "object" || l === null) fail("lora", "an object", l);
  const rslora = l.rslora ?? LORA_DEFAULTS.rslora;
  if (typeof rslora !== "boolean") fail("lora.rslora", "a boolean", rslora);
  const targets = l.targetModules ?? LORA_DEFAULTS.targetModules;
  if (!Array.isArray(targets) || targets.length === 0) fail("lora.target_modules", "a non-empty list of modules", targets);
  const wanted = new Set(targets.map(normalizeTarget));
  return {
    r: checkInt("lora.r", l.r ?? LORA_DEFAULTS.r, 1),
    alpha: checkNum("lora.alpha", l.alpha ?? LORA_DEFAULTS.alpha, (x) => x > 0, "a positive number"),
    dropout: checkNum("lora.dropout", l.dropout ?? LORA_DEFAULTS.dropout, (x) => x >= 0 && x < 1, "a number in [0, 1)"),
    rslora,
    targetModules: LORA_TARGETS.filter((t) => wanted.has(t)),
    seed: checkInt("lora.seed", l.seed ?? LORA_DEFAULTS.seed, 0),
  };
}

/** Model dimensions that fix the layers' shapes; headDim defaults to nEmbd / nHead (it differs in Qwen3-0.6B/4B). */
export interface LayerDims {
  nEmbd: number;
  nHead: number;
  nHeadKv: number;
  nFf: number;
  headDim?: number;
}

/** A layer's weight shape [n_in, n_out] in a model of these dimensions. */
export function loraShape(m: LoraModule, d: LayerDims): [number, number] {
  const hd = d.headDim ?? d.nEmbd / d.nHead;
  const kv = hd * d.nHeadKv;
  const q = hd * d.nHead;
  const shapes: Record<LoraTarget, [number, number]> = {
    q: [d.nEmbd, q],
    k: [d.nEmbd, kv],
    v: [d.nEmbd, kv],
    o: [q, d.nEmbd],
    gate: [d.nEmbd, d.nFf],
    up: [d.nEmbd, d.nFf],
    down: [d.nFf, d.nEmbd],
  };
  return shapes[m.short];
}

/** A warning when the rank exceeds min(n_in, n_out) of an adapted layer (more parameters, no more capacity), else undefined. */
export function rankWarning(o: ResolvedLoraOptions, d: LayerDims): string | undefined {
  const [m, dim] = o.targetModules
    .map((t) => loraModule(t))
    .map((x) => [x, Math.min(...loraShape(x, d))] as const)
    .reduce((a, b) => (b[1] < a[1] ? b : a));
  if (o.r <= dim) return undefined;
  return `lora.r ${o.r} is larger than ${m.hf}'s smaller dimension ${dim}: a rank above min(n_in, n_out) adds parameters and memory, not capacity`;
}

/** The factor on B·A: alpha / r, or alpha / sqrt(r) with rsLoRA. */
export function loraScale(o: { r: number; alpha: number; rslora: boolean }): number {
  return o.rslora ? o.alpha / Math.sqrt(o.r) : o.alpha / o.r;
}
