// What every command shares on the terminal: the one Ctrl-C handler (first press: stop cleanly;
// second: quit), model resolution with download/conversion progress on stderr (and the --model /
// --yes flags of the commands that take a base model beside an adapter), and stderr lines.
import { Option } from "commander";
import { formatBytes } from "../util/format.js";
import { resolveModelPath, type ResolveModelOptions } from "../models/model-path.js";

export const stderrLine = (msg: string) => process.stderr.write(`${msg}\n`);

/**
 * Ctrl-C (SIGINT) and SIGTERM while switched on: the first one calls `first`; another one quits at
 * once (exit 130), or is ignored with `again: "ignore"`. Returns the switch (on/off, idempotent);
 * the count of presses is kept across switching.
 */
export function onInterrupt(first: (sig: NodeJS.Signals) => void, again: "exit" | "ignore" = "exit"): (on: boolean) => void {
  let presses = 0;
  const handler = (sig: NodeJS.Signals) => {
    if (++presses === 1) first(sig);
    else if (again === "exit") process.exit(130);
  };
  let listening = false;
  return (on) => {
    if (on === listening) return;
    listening = on;
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      if (on) process.on(sig, handler);
      else process.off(sig, handler);
    }
  };
}

/**
 * Runs `fn` with Ctrl-C wired to its AbortSignal while a download is in progress: the download
 * stops, the partial files are kept (the next run resumes them) and the process exits 130. During a
 * conversion (which blocks until it is done) Ctrl-C quits at once, leaving no partial GGUF.
 */
export async function downloadable<T>(fn: (o: { signal: AbortSignal; onPhase: (phase: "download" | "convert") => void }) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const listen = onInterrupt(() => {
    ac.abort();
    process.stderr.write("\ntext2sql: stopping the download (Ctrl-C again to quit at once)\n");
  });
  try {
    return await fn({ signal: ac.signal, onPhase: (phase) => listen(phase === "download") });
  } catch (err) {
    if (ac.signal.aborted) {
      process.stderr.write(`text2sql: ${(err as Error).message}\n`);
      process.stderr.write("text2sql: download interrupted; the partial download is kept and resumes when you run the command again\n");
      process.exit(130);
    }
    throw err;
  } finally {
    listen(false);
  }
}

/** A conversion progress line on a terminal (the conversion blocks, so it is drawn synchronously). */
export function convertBar(): ((done: number, total: number) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  let last = 0;
  return (done, total) => {
    const now = performance.now();
    if (done < total && now - last < 250) return;
    last = now;
    const pct = total ? Math.floor((100 * done) / total) : 100;
    process.stderr.write(`\r\x1b[Kconvert ${String(pct).padStart(3)}% | ${formatBytes(done)}/${formatBytes(total)}${done >= total ? "\n" : ""}`);
  };
}

/** resolveModelPath for a command: progress on stderr, a question (or --yes) before a download, Ctrl-C handled. */
export function cliResolveModel(p: string, o: Omit<ResolveModelOptions, "signal" | "onPhase"> = {}): Promise<string> {
  return downloadable(({ signal, onPhase }) => resolveModelPath(p, { log: stderrLine, onConvertProgress: convertBar(), ...o, signal, onPhase }));
}

/** `--model` of generate, eval, serve and export: the base model beside an adapter, any model.path form. */
export function baseModelOption(fallback = "the base recorded in the adapter folder"): Option {
  return new Option(
    "--model <path>",
    `base model (default: ${fallback}): a GGUF, a checkpoint folder, a hub repository owner/name[@revision] or hf:owner/repo/file.gguf`,
  );
}

/** `-y, --yes` beside baseModelOption: download --model without asking. */
export const yesOption = () => new Option("-y, --yes", "download --model from the hub without asking when it is not in the cache");
