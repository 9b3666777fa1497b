// The real install path of a user: `npm pack`, install the tarball into a fresh project with its
// install scripts blocked (npm 11 blocks a dependency's scripts until they are approved), then
// import text2sql and run a training step. The first use builds the native engine.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { expect, test } from "vitest";
import { tempDir, testModel } from "./helpers/models.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

test("npm pack → npm install in a fresh folder → import text2sql → one step", async () => {
  const dir = tempDir("t2s-consumer-");
  const tgz = execFileSync("npm", ["pack", "--silent", "--pack-destination", dir], { cwd: root, encoding: "utf8" }).trim().split("\n").pop()!;
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "consumer", version: "1.0.0", type: "module", private: true }));
  execFileSync("npm", ["install", "--ignore-scripts", "--prefer-offline", "--no-audit", "--no-fund", path.join(dir, tgz)], { cwd: dir, stdio: "ignore" });
  expect(fs.existsSync(path.join(dir, "node_modules", "text2sql", "build"))).toBe(false);
  fs.copyFileSync(await testModel({ type: "f16" }), path.join(dir, "model.gguf"));
  fs.writeFileSync(
    path.join(dir, "run.mjs"),
    `
    import { LoraEngine, makeBatch } from "text2sql";
    const e = await LoraEngine.create({ model: "model.gguf", lora: { r: 4, targetModules: ["q_proj", "v_proj"] } });
    const st = await e.accumulate(makeBatch([{ tokens: [1, 518, 25580, 29962, 3251] }]), 4);
    const norm = await e.step({ lr: 1e-3 });
    console.log(JSON.stringify({ trainable: e.trainableParams, nTokens: st.nTokens, norm }));
    await e.dispose();
  `,
  );
  const out = execFileSync(process.execPath, ["run.mjs"], { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  const r = JSON.parse(out.trim().split("\n").pop()!);
  expect(r).toMatchObject({ trainable: 2 * (4 * (64 + 64) + 4 * (64 + 32)), nTokens: 4 });
  expect(r.norm).toBeGreaterThan(0);
  expect(fs.existsSync(path.join(dir, "node_modules", "text2sql", "build", "Release", "text2sql.node"))).toBe(true);
  fs.rmSync(dir, { recursive: true, force: true });
}, 600_000);
