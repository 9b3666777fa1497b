// The one cli-progress bar of text2sql (hub pulls, training, eval, merge): drawn on a terminal,
// started on its first update, so a caller only says what to show.
import cliProgress from "cli-progress";

export interface LazyBar {
  /** draws `value` of `total` (the bar starts at `from`, default `value`, on the first call) */
  update(value: number, total: number, payload?: object, from?: number): void;
  /** stops the bar (when started); a later update starts a new one */
  stop(): void;
}

/** A bar with cli-progress's shades_classic look on `stream` (default stderr), 24 characters wide. */
export function lazyBar(format: string, o: { stream?: NodeJS.WritableStream; hideCursor?: boolean } = {}): LazyBar {
  let bar: cliProgress.SingleBar | null = null;
  return {
    update(value, total, payload, from = value) {
      if (!bar) {
        bar = new cliProgress.SingleBar(
          { format, barsize: 24, ...(o.hideCursor ? { hideCursor: true } : {}), stream: o.stream ?? process.stderr },
          cliProgress.Presets.shades_classic,
        );
        bar.start(total, from, payload);
      }
      bar.update(value, payload);
    },
    stop() {
      bar?.stop();
      bar = null;
    },
  };
}
