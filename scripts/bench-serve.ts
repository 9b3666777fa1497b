/**
 * npm run bench:serve: latency (p50, p99) and requests/s of `text2sql serve` under 1, 8 and 32
 * concurrent clients, against the quickstart's tiny model and adapter (trained first if missing,
 * about half a minute). The server and the clients run in this one process, over real HTTP on
 * 127.0.0.1.
 *
 *   npm run bench:serve -- [--seconds 10] [--parallel 4] [--threads 1]
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { readExamples } from "../src/train/data.js";
import { DEFAULTS } from "../src/train/config.js";
import { startServer } from "../src/serve/server.js";
import { trainSft } from "../src/train/trainer.js";

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : def;
}

async function main(): Promise<void> {
  const seconds = Number(arg("seconds", "10"));
  const parallel = Number(arg("parallel", "4"));
  const threads = Number(arg("threads", "1"));
  const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "..");
  const csv = path.join(root, "data", "quickstart.csv");
  const out = path.join(process.env.TEXT2SQL_BENCH_DIR || path.join(os.tmpdir(), "text2sql-bench"), "serve-quickstart");
  if (!fs.existsSync(path.join(out, "final_model", "adapter.gguf"))) {
    process.stderr.write(`training the quickstart adapter into ${out}\n`);
    await trainSft(
      { config: path.join(root, "configs", "quickstart.yaml"), data: { path: csv }, output: { dir: out }, train: { save_every: 0 } },
      { overwrite: true },
    );
  }
  const questions = (await readExamples(csv, structuredClone(DEFAULTS.data))).map((e) => e.question);
  const server = await startServer({ adapter: out, port: 0, device: "cpu", threads, parallel, maxQueue: 1024, log: () => {} });
  const rows: string[] = [];
  try {
    for (const clients of [1, 8, 32]) {
      const lat: number[] = [];
      let errors = 0;
      let next = 0;
      const end = performance.now() + seconds * 1000;
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: clients }, async () => {
          while (performance.now() < end) {
            const q = questions[next++ % questions.length];
            const s = performance.now();
            const res = await fetch(`${server.url}/generate_sql`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ question: q }),
            });
            await res.json();
            if (res.status !== 200) errors++;
            lat.push(performance.now() - s);
          }
        }),
      );
      const wall = (performance.now() - t0) / 1000;
      lat.sort((a, b) => a - b);
      const q = (p: number) => lat[Math.min(lat.length - 1, Math.ceil(p * lat.length) - 1)];
      rows.push(
        `${String(clients).padStart(7)}   ${String(lat.length).padStart(8)}   ${q(0.5).toFixed(0).padStart(6)}   ${q(0.99).toFixed(0).padStart(6)}   ${(lat.length / wall).toFixed(1).padStart(7)}   ${errors}`,
      );
    }
  } finally {
    await server.close();
  }
  console.log(
    `\ntext2sql serve, quickstart tiny model + adapter, ${parallel} parallel decoders, ${threads} decode thread(s), ${seconds} s per level (${os.cpus()[0]?.model ?? ""})`,
  );
  console.log("clients   requests   p50 ms   p99 ms   req/s   errors");
  for (const r of rows) console.log(r);
}

main().catch((err: unknown) => {
  console.error(`bench:serve: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
