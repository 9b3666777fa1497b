// What a training run tells its caller and takes from it: StepEvent and EvalEvent (one per
// optimizer step / evaluation), TrainHooks (the callbacks, the SQL decoder for eval_execution, the
// abort signal, resume/overwrite), TrainOptions (a config file and/or settings) and RunSummary (what
// every trainer's summary opens with). Types only,
// shared by the SFT trainer (trainer.ts), its loop (loop.ts) and GRPO (grpo.ts), which import
// them from here rather than from one another.
import type { DeepPartial, TrainConfig } from "./config.js";
import type { EvalDecoder } from "./exec-eval.js";

export interface StepEvent {
  step: number; // optimizer steps done, 1-based
  totalSteps: number;
  epoch: number; // fractional epochs done
  loss: number; // token-weighted loss of this step
  lr: number;
  gradNorm: number;
  tokens: number; // tokens processed in this step
  tokensPerS: number; // over the whole run so far (this session)
  elapsedS: number;
  etaS: number;
}

export interface EvalEvent {
  step: number;
  loss: number;
  accuracy: number;
  tokens: number;
  /** with train.eval_execution: the execution accuracy of the greedy answers on the eval rows */
  eval_ex?: number;
  /** with train.eval_execution: the step whose adapter best_model/ holds after this evaluation */
  best_step?: number;
}

export interface TrainHooks {
  onStep?: (e: StepEvent) => void;
  onEval?: (e: EvalEvent) => void;
  /** examples evaluated so far, during an evaluation ("execution": eval_execution's decoding starts, done 0) */
  onEvalProgress?: (done: number, total: number, step: number, phase?: "loss" | "execution") => void;
  /**
   * train.eval_execution's decoder: greedy SQL for each row from an adapter folder. The trainer
   * cannot generate (generation is a layer above it); `trainSft` from the package's entry and
   * `text2sql train` pass node-llama-cpp's (src/serve/eval-decoder.ts).
   */
  decodeSql?: EvalDecoder;
  /** human-readable progress of the preparation phases */
  onLog?: (msg: string) => void;
  /** abort: the current micro-step finishes, a checkpoint is saved, the summary says interrupted */
  signal?: AbortSignal;
  /** continue from the latest valid checkpoint in output.dir */
  resume?: boolean;
  /** start afresh in a non-empty output.dir, replacing its run (without it or resume, such a folder is refused) */
  overwrite?: boolean;
  /** how the run was started, for the resume hint */
  command?: string;
}

/** trainSft's options: a YAML config file and/or settings in the config's shape (they win). */
export type TrainOptions = DeepPartial<TrainConfig> & { config?: string };

/** What every trainer's summary opens with (TrainSummary, GrpoSummary). */
export interface RunSummary {
  outputDir: string;
  finalModel: string | null;
  interrupted: boolean;
  resumeCommand?: string;
  steps: number;
  totalSteps: number;
}
