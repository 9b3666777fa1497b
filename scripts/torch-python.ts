// The benchmarks' PyTorch side (bench:vs-torch, bench:bf16-products): which python3 has torch.
import { spawnSync } from "node:child_process";

/** The interpreter that runs the PyTorch side: `python` (--python), else the first of python3 and /usr/bin/python3 that imports torch. */
export function findTorchPython(python?: string): string {
  const candidates = python ? [python] : ["python3", "/usr/bin/python3"];
  const tried: string[] = [];
  for (const py of candidates) {
    const r = spawnSync(py, ["-c", "import torch; print(torch.__version__)"], { encoding: "utf8", timeout: 60_000 });
    if (!r.error && r.status === 0) return py;
    const why = r.error ? r.error.message : (r.stderr.trim().split("\n").pop() ?? `exit ${r.status}`);
    tried.push(`${py} (${why})`);
  }
  throw new Error(
    `no python3 with torch found; tried ${tried.join(", ")}. Install Debian's python3-torch (apt install python3-torch) or name an interpreter with --python`,
  );
}
