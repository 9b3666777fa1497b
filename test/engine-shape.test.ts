// TinyLlama's attention shape: the trainable-parameter count the issue fixes, on BF16 weights.
// (n_ff is cut to 64 to keep the file small; it does not enter the q/v count.)
import { expect, test } from "vitest";
import { LoraEngine, makeBatch } from "../src/engine/engine.js";
import { testModel } from "./helpers/models.js";

test("TinyLlama shape with r=8 on q and v trains exactly 1,126,400 parameters (BF16 weights)", async () => {
  const model = await testModel({ type: "bf16", nEmbd: 2048, nLayer: 22, nHead: 32, nHeadKv: 4, nFf: 64, nCtx: 2048, tiedEmbeddings: true });
  const e = await LoraEngine.create({ model, device: "cpu", lora: { r: 8, targetModules: ["q_proj", "v_proj"] } });
  expect(e.info).toMatchObject({ nEmbd: 2048, nLayer: 22, nHead: 32, nHeadKv: 4, weightType: "bf16", targets: ["q_proj", "v_proj"] });
  // 22 × (8·(2048 + 2048) + 8·(2048 + 256))
  expect(e.trainableParams).toBe(1_126_400);
  // and a step runs on it
  const batch = makeBatch([{ tokens: [1, 518, 25580, 29962, 3251, 403, 3758] }]);
  const st = await e.accumulate(batch, 6);
  expect(st.nTokens).toBe(6);
  expect(Number.isFinite(st.lossSum)).toBe(true);
  expect(await e.step({ lr: 1e-4 })).toBeGreaterThan(0);
  await e.dispose();
}, 120_000);
