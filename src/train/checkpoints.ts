// Training checkpoints: checkpoints/checkpoint-<step>/{adapter.gguf (+ PEFT files), optimizer.bin,
// trainer_state.json}. A checkpoint holds all a resumed run needs to continue exactly: the adapter,
// the AdamW moments and step count, the dropout stream position, and the place in the data.
import fs from "node:fs";
import path from "node:path";
import type { AdapterRecord } from "../adapters/folder.js";
import { saveAdapterBoth } from "../adapters/save-load.js";
import type { LoraEngine } from "../engine/engine.js";

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
  return fs.readdirSync(root)
    .map((n) => ({ n, m: /^checkpoint-(\d+)$/.exec(n) }))
    .filter((x) => x.m && fs.existsSync(path.join(root, x.n, "trainer_state.json")))
    .map((x) => ({ step: Number(x.m![1]), dir: path.join(root, x.n) }))
    .sort((a, b) => a.step - b.step);
}

/**
 * Writes checkpoint-<pos.step> (into a temporary folder, then renamed) and keeps the newest `keep`.
 * The optimizer state is read from the engine here, and only here. `dropoutCalls`: the dropout
 * stream's position to record instead of the engine's, for an unfinished step wound back to its start.
 */
export async function saveCheckpoint(engine: LoraEngine, out: string, pos: Position, tensors: TensorList, keep: number,
  rec: Omit<AdapterRecord, "steps">, dropoutCalls?: number): Promise<string> {
  const opt = await engine.getOptimizerState();
  const state: TrainerState = {
    step: pos.step,
    epoch: pos.epoch,
    offset: pos.offset,
    optimizer: { t: opt.t, dropoutCalls: dropoutCalls ?? opt.dropoutCalls ?? 0 },
    tensors,
  };
  const dir = path.join(out, "checkpoints", `checkpoint-${state.step}`);
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  await saveAdapterBoth(engine, tmp, { ...rec, steps: state.step });
  // AdamW moments as raw little-endian float32: m of every tensor, then v of every tensor
  const parts: Buffer[] = [];
  for (const t of [...opt.m, ...opt.v]) parts.push(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  fs.writeFileSync(path.join(tmp, "optimizer.bin"), Buffer.concat(parts));
  fs.writeFileSync(path.join(tmp, "trainer_state.json"), JSON.stringify(state, null, 2) + "\n");
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(tmp, dir);
  const all = checkpointDirs(out);
  for (const c of all.slice(0, Math.max(0, all.length - keep))) fs.rmSync(c.dir, { recursive: true, force: true });
  return dir;
}

/** Loads a checkpoint's adapter and optimizer state into the engine; resolves to its position. */
export async function loadCheckpoint(engine: LoraEngine, dir: string): Promise<Position> {
  const state: TrainerState = JSON.parse(fs.readFileSync(path.join(dir, "trainer_state.json"), "utf8"));
  await engine.loadAdapter(path.join(dir, "adapter.gguf"));
  const adapter = await engine.getAdapter();
  const names = adapter.map((t) => t.name);
  if (JSON.stringify(names) !== JSON.stringify(state.tensors.map((t) => t.name))) {
    throw new Error(`${dir}: the checkpoint's adapter tensors do not match this configuration's LoRA targets`);
  }
  if (state.optimizer.t > 0) {
    const buf = fs.readFileSync(path.join(dir, "optimizer.bin"));
    const total = adapter.reduce((n, t) => n + t.data.length, 0);
    if (buf.length !== total * 8) throw new Error(`${dir}/optimizer.bin: expected ${total * 8} bytes, found ${buf.length}`);
    const f = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
    let o = 0;
    const take = () => adapter.map((t) => ({ ...t, data: f.slice(o, (o += t.data.length)) }));
    const m = take();
    const v = take();
    await engine.setOptimizerState({ t: state.optimizer.t, dropoutCalls: state.optimizer.dropoutCalls, m, v });
  } else {
    await engine.setOptimizerState({ t: 0, dropoutCalls: state.optimizer.dropoutCalls, m: [], v: [] });
  }
  return { step: state.step, epoch: state.epoch, offset: state.offset };
}
