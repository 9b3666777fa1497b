// The training schedule, as the trainer owns it: how many optimizer steps a run takes, the order
// the examples come in each epoch, and the learning rate at each step.
import type { TrainConfig } from "./config.js";
import { shuffled } from "./data.js";
import type { Encoded } from "./prompt.js";

type TrainSettings = TrainConfig["train"];

/** Examples in one optimizer step: micro-batches of batch_size, grad_accum of them. */
export function examplesPerStep(tc: TrainSettings): number {
  return tc.batch_size * tc.grad_accum;
}

/** train.max_steps, or enough steps for train.epochs passes over nTrain examples (at least one). */
export function totalSteps(nTrain: number, tc: TrainSettings): number {
  const stepsPerEpoch = Math.ceil(nTrain / examplesPerStep(tc));
  return tc.max_steps ?? Math.max(1, Math.ceil(tc.epochs * stepsPerEpoch));
}

/** The learning rate of step `step` (0-based) of `total`: linear warmup, then constant, linear or cosine. */
export function lrAt(step: number, total: number, c: TrainSettings): number {
  const w = c.warmup_steps;
  if (step < w) return (c.lr * step) / Math.max(1, w);
  if (c.lr_schedule === "constant") return c.lr;
  const progress = (step - w) / Math.max(1, total - w);
  if (c.lr_schedule === "linear") return c.lr * Math.max(0, 1 - progress);
  return c.lr * 0.5 * (1 + Math.cos(Math.PI * progress));
}

/** Indices of the training examples in the order epoch `epoch` uses them (the same for the same seed). */
export function epochOrder(train: Encoded[], epoch: number, tc: TrainSettings, groupByLength: boolean): number[] {
  const idx = Array.from({ length: train.length }, (_, i) => i);
  const order = shuffled(idx, tc.seed + epoch);
  if (!groupByLength) return order;
  // within chunks of 16 steps, sort by length so each micro-batch holds similar lengths
  // (less padding), then shuffle the order of the steps
  const perStep = examplesPerStep(tc);
  const chunk = perStep * 16;
  const steps: number[][] = [];
  for (let i = 0; i < order.length; i += chunk) {
    const sorted = order.slice(i, i + chunk).sort((a, b) => train[b].tokens.length - train[a].tokens.length);
    for (let j = 0; j < sorted.length; j += perStep) steps.push(sorted.slice(j, j + perStep));
  }
  return shuffled(steps, tc.seed + epoch + 1).flat();
}
