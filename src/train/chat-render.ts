// Renders a model's Jinja chat template (hostile input: it comes inside a model file) with a bound
// on time, memory and output size: @huggingface/jinja runs in a worker thread that is terminated
// when it overruns, while the caller waits synchronously (prompts are built synchronously).
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

/** How long rendering a chat template may take (it renders twice per model load). */
export const CHAT_RENDER_TIMEOUT_MS = 5000;
/** The most characters the rendered text may hold (the JSON of all renders together). */
export const CHAT_RENDER_MAX_BYTES = 4 * 1024 * 1024;
const CHAT_RENDER_HEAP_MB = 256;

const WORKER_SOURCE = `
const { workerData } = require("node:worker_threads");
const { sab, jinja, src, contexts } = workerData;
const head = new Int32Array(sab, 0, 2); // [done, byte length]
const body = new Uint8Array(sab, 8);
let out;
try {
  const { Template } = require(jinja);
  const t = new Template(src);
  out = { ok: true, rendered: contexts.map((c) => t.render(c)) };
} catch (e) {
  out = { ok: false, error: String((e && e.message) || e) };
}
let bytes = new TextEncoder().encode(JSON.stringify(out));
if (bytes.length > body.length) bytes = new TextEncoder().encode(JSON.stringify({ ok: false, error: "the rendered text is larger than " + body.length + " bytes" }));
body.set(bytes);
Atomics.store(head, 1, bytes.length);
Atomics.store(head, 0, 1);
Atomics.notify(head, 0);
`;

/**
 * Renders `src` once per context, in a worker bounded by CHAT_RENDER_TIMEOUT_MS, a heap of
 * CHAT_RENDER_HEAP_MB and CHAT_RENDER_MAX_BYTES of output. Throws Error(message) when the
 * template fails to parse or render, overruns or runs out of memory.
 */
export function renderJinjaBounded(src: string, contexts: Record<string, unknown>[], timeoutMs = CHAT_RENDER_TIMEOUT_MS): string[] {
  const jinja = createRequire(import.meta.url).resolve("@huggingface/jinja");
  const sab = new SharedArrayBuffer(8 + CHAT_RENDER_MAX_BYTES);
  const head = new Int32Array(sab, 0, 2);
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { sab, jinja, src, contexts },
    resourceLimits: { maxOldGenerationSizeMb: CHAT_RENDER_HEAP_MB, maxYoungGenerationSizeMb: 32 },
    stdout: true,
    stderr: true,
  });
  worker.unref();
  worker.on("error", () => {}); // out of memory: the worker ends without answering, reported below
  const deadline = Date.now() + timeoutMs;
  while (Atomics.load(head, 0) === 0 && Date.now() < deadline) {
    Atomics.wait(head, 0, 0, Math.min(50, Math.max(1, deadline - Date.now())));
  }
  const done = Atomics.load(head, 0) === 1;
  void worker.terminate();
  if (!done) {
    throw new Error(
      `rendering did not finish within ${timeoutMs / 1000} s and ${CHAT_RENDER_HEAP_MB} MB (the template loops too long or builds too much text)`,
    );
  }
  const text = new TextDecoder().decode(new Uint8Array(sab, 8, Atomics.load(head, 1)));
  const out = JSON.parse(text) as { ok: true; rendered: string[] } | { ok: false; error: string };
  if (!out.ok) throw new Error(out.error);
  return out.rendered;
}
