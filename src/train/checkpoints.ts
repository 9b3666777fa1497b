// Training checkpoints: checkpoints/checkpoint-<step>/{adapter.gguf (+ PEFT files), optimizer.bin,
// trainer_state.json}. A checkpoint holds all a resumed run needs to continue exactly: the adapter,
// the AdamW moments and step count, the dropout stream position, and the place in the data. It is
// written as a whole (../util/atomic.ts); one damaged later (bad JSON, a cut or non-finite file)
// is reported by path, moved aside, and the run resumes from the newest valid one.
import fs from "node:fs";
import path from "node:path";
import { GGUF_ADAPTER, type AdapterRecord } from "../adapters/folder.js";
import { saveAdapterBoth } from "../adapters/save-load.js";
import type { LoraEngine } from "../engine/engine.js";
import { readGguf, readTensorF32 } from "../formats/gguf.js";
import { readJsonFile } from "../formats/json.js";
import { removeAtomic, writeDirAtomic } from "../util/atomic.js";

/** Where a run is in its schedule. */
export interface Position {
  step: number; // optimizer steps done
  epoch: number; // whole epochs done
  offset: number; // examples of the current epoch already used
}

/** The adapter's tensor names and sizes, which a checkpoint must match to be loaded. */
export type TensorList = { name: string; size: number }[];

/** trainer_state.json */
interface TrainerState extends Position {
  optimizer: { t: number; dropoutCalls: number };
  tensors: TensorList;
}

/** The checkpoints in output directory `out`, oldest first. */
export function checkpointDirs(out: string): { step: number; dir: string }[] {
  const root = path.join(out, "checkpoints");
  if (!fs.existsSync(root)) return [];
  return fs
    .readdirSync(root)
    .map((n) => ({ n, m: /^checkpoint-(\d+)$/.exec(n) }))
    .filter((x) => x.m)
    .map((x) => ({ step: Number(x.m![1]), dir: path.join(root, x.n) }))
    .sort((a, b) => a.step - b.step);
}

/**
 * Writes checkpoint-<pos.step> as a whole (a temporary folder swapped in) and keeps the newest `keep`.
 * The optimizer state is read from the engine here, and only here. `dropoutCalls`: the dropout
 * stream's position to record instead of the engine's, for an unfinished step wound back to its start.
 * `extraFiles` (name: text): a caller's own state, written into the folder before it is swapped in.
 */
export async function saveCheckpoint(
  engine: LoraEngine,
  out: string,
  pos: Position,
  tensors: TensorList,
  keep: number,
  rec: Omit<AdapterRecord, "steps">,
  dropoutCalls?: number,
  extraFiles: Record<string, string> = {},
): Promise<string> {
  const opt = await engine.getOptimizerState();
  const state: TrainerState = {
    step: pos.step,
    epoch: pos.epoch,
    offset: pos.offset,
    optimizer: { t: opt.t, dropoutCalls: dropoutCalls ?? opt.dropoutCalls ?? 0 },
    tensors,
  };
  const dir = path.join(out, "checkpoints", `checkpoint-${state.step}`);
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  await writeDirAtomic(dir, async (tmp) => {
    await saveAdapterBoth(engine, tmp, { ...rec, steps: state.step });
    // AdamW moments as raw little-endian float32: m of every tensor, then v of every tensor
    const parts: Buffer[] = [];
    for (const t of [...opt.m, ...opt.v]) parts.push(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    fs.writeFileSync(path.join(tmp, "optimizer.bin"), Buffer.concat(parts));
    fs.writeFileSync(path.join(tmp, "trainer_state.json"), JSON.stringify(state, null, 2) + "\n");
    for (const [name, text] of Object.entries(extraFiles)) fs.writeFileSync(path.join(tmp, name), text);
  });
  const all = checkpointDirs(out);
  for (const c of all.slice(0, Math.max(0, all.length - keep))) removeAtomic(c.dir);
  return dir;
}

/** A checkpoint whose files are missing, cut, not parseable or hold non-finite values. */
export class DamagedCheckpoint extends Error {}

/** The index of the first non-finite value of `xs`, or -1. */
function firstNonFinite(xs: Float32Array): number {
  for (let i = 0; i < xs.length; i++) if (!Number.isFinite(xs[i])) return i;
  return -1;
}

/** trainer_state.json, parsed and checked field by field; DamagedCheckpoint names the file. */
function readTrainerState(dir: string): TrainerState {
  const file = path.join(dir, "trainer_state.json");
  const damaged = (what: string) => new DamagedCheckpoint(`${file}: ${what}`);
  if (!fs.existsSync(file)) throw damaged("missing");
  let s: TrainerState;
  try {
    s = readJsonFile(file) as TrainerState;
  } catch (e) {
    throw new DamagedCheckpoint((e as Error).message, { cause: e });
  }
  const count = (v: unknown) => Number.isInteger(v) && (v as number) >= 0;
  if (typeof s !== "object" || s === null) throw damaged("expected a JSON object");
  for (const k of ["step", "epoch", "offset"] as const) if (!count(s[k])) throw damaged(`${k}: expected an integer >= 0, got ${JSON.stringify(s[k])}`);
  if (!count(s.optimizer?.t) || !count(s.optimizer?.dropoutCalls))
    throw damaged(`optimizer: expected integers t and dropoutCalls, got ${JSON.stringify(s.optimizer)}`);
  if (!Array.isArray(s.tensors) || !s.tensors.every((t) => typeof t?.name === "string" && count(t?.size)))
    throw damaged("tensors: expected a list of {name, size}");
  return s;
}

/** Checks that adapter.gguf holds exactly `tensors`, every value finite. */
function checkAdapterFile(dir: string, tensors: TensorList): void {
  const file = path.join(dir, GGUF_ADAPTER);
  let g;
  try {
    g = readGguf(file);
  } catch (e) {
    throw new DamagedCheckpoint((e as Error).message.includes(file) ? (e as Error).message : `${file}: ${(e as Error).message}`);
  }
  const have = g.tensors.map((t) => `${t.name}:${t.ne.reduce((a, b) => a * b, 1)}`).sort();
  const want = tensors.map((t) => `${t.name}:${t.size}`).sort();
  if (JSON.stringify(have) !== JSON.stringify(want)) throw new DamagedCheckpoint(`${file}: its tensors do not match trainer_state.json's`);
  for (const t of g.tensors) {
    const i = firstNonFinite(readTensorF32(g, t));
    if (i >= 0) throw new DamagedCheckpoint(`${file}: tensor "${t.name}" holds a non-finite value at index ${i}`);
  }
}

/** optimizer.bin as the m and v moments of `tensors` (checked for size and finite values). */
function readMoments(dir: string, tensors: TensorList): { m: Float32Array; v: Float32Array } {
  const file = path.join(dir, "optimizer.bin");
  if (!fs.existsSync(file)) throw new DamagedCheckpoint(`${file}: missing`);
  const buf = fs.readFileSync(file);
  const total = tensors.reduce((n, t) => n + t.size, 0);
  if (buf.length !== total * 8) throw new DamagedCheckpoint(`${file}: expected ${total * 8} bytes, found ${buf.length}`);
  const f = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
  const i = firstNonFinite(f);
  if (i >= 0) throw new DamagedCheckpoint(`${file}: holds a non-finite value (${f[i]}) at float ${i}`);
  return { m: f.subarray(0, total), v: f.subarray(total) };
}

/**
 * Loads a checkpoint's adapter and optimizer state into the engine, after checking every file;
 * resolves to its position. `tensors`: the engine's adapter (names and sizes). Throws
 * DamagedCheckpoint (naming the file) for a damaged checkpoint, a plain Error for one made with
 * other LoRA settings.
 */
export async function loadCheckpoint(engine: LoraEngine, dir: string, tensors: TensorList): Promise<Position> {
  const state = readTrainerState(dir);
  if (JSON.stringify(tensors.map((t) => t.name)) !== JSON.stringify(state.tensors.map((t) => t.name))) {
    throw new Error(`${dir}: the checkpoint's adapter tensors do not match this configuration's LoRA targets`);
  }
  checkAdapterFile(dir, state.tensors);
  const moments = state.optimizer.t > 0 ? readMoments(dir, state.tensors) : null;
  await engine.loadAdapter(path.join(dir, GGUF_ADAPTER));
  if (moments) {
    const adapter = await engine.getAdapter(); // in trainer_state.json's order (the names were compared)
    const take = (f: Float32Array) => {
      let o = 0;
      return adapter.map((t) => ({ ...t, data: f.slice(o, (o += t.data.length)) }));
    };
    await engine.setOptimizerState({ t: state.optimizer.t, dropoutCalls: state.optimizer.dropoutCalls, m: take(moments.m), v: take(moments.v) });
  } else {
    await engine.setOptimizerState({ t: 0, dropoutCalls: state.optimizer.dropoutCalls, m: [], v: [] });
  }
  return { step: state.step, epoch: state.epoch, offset: state.offset };
}

/**
 * Loads the newest valid checkpoint of `out`: a damaged newer one is reported by path and moved
 * aside (checkpoint-<step>.damaged-<pid>), so it is not taken for the newest again. Resolves to
 * the checkpoint and its position; throws when none is valid.
 */
export async function resumeNewest(engine: LoraEngine, out: string, tensors: TensorList, log: (m: string) => void): Promise<{ dir: string; pos: Position }> {
  const problems: string[] = [];
  for (const c of checkpointDirs(out).reverse()) {
    try {
      const pos = await loadCheckpoint(engine, c.dir, tensors);
      if (problems.length) log(`checkpoint: resuming from ${c.dir}, the newest valid checkpoint`);
      return { dir: c.dir, pos };
    } catch (e) {
      if (!(e instanceof DamagedCheckpoint)) throw e;
      const aside = `${c.dir}.damaged-${process.pid}`;
      fs.renameSync(c.dir, aside);
      problems.push(e.message);
      log(`checkpoint: warning: ${c.dir} is damaged (${e.message}); moved aside to ${aside}`);
    }
  }
  throw new Error(`--resume: no valid checkpoint in ${path.join(out, "checkpoints")}` + (problems.length ? `: ${problems.join("; ")}` : ""));
}
