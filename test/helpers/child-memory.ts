// The real memory of a process's descendants (Linux /proc): each one's peak resident set (VmHWM),
// sampled while they live, with a guard that kills a descendant passing a bound so that a failing
// test does not take the machine's memory with it.
import fs from "node:fs";

/** The pids whose parent chain reaches `root` (not root itself). */
export function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const e of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      // the command may hold spaces and parentheses: the fields after the last ')' are fixed
      const stat = fs.readFileSync(`/proc/${e}/stat`, "utf8");
      parent.set(Number(e), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  for (const pid of parent.keys()) {
    let p = parent.get(pid);
    for (let hops = 0; p !== undefined && p > 1 && hops < 64; hops++) {
      if (p === root) {
        out.push(pid);
        break;
      }
      p = parent.get(p);
    }
  }
  return out;
}

/** VmHWM and VmRSS of a process in bytes, or undefined when it is gone. */
export function memoryOf(pid: number): { hwm: number; rss: number } | undefined {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(s)?.[1] ?? 0) * 1024;
    return { hwm: kb("VmHWM"), rss: kb("VmRSS") };
  } catch {
    return undefined;
  }
}

export interface PeakWatch {
  /** stops sampling; the highest VmHWM seen among the descendants (bytes), per pid, and the pids killed by the guard */
  stop(): { peak: number; byPid: Map<number, number>; killed: number[] };
}

/**
 * Samples the descendants of `root` every `everyMs`: each one's VmHWM (a high-water mark, so the
 * last sample before a process ends is its peak up to then). A descendant whose RSS passes
 * `killAbove` bytes is killed with SIGKILL and listed.
 */
export function watchPeak(root: number, o: { everyMs?: number; killAbove?: number; filter?: (pid: number) => boolean } = {}): PeakWatch {
  const byPid = new Map<number, number>();
  const killed: number[] = [];
  const sample = () => {
    for (const pid of descendants(root)) {
      if (o.filter && !o.filter(pid)) continue;
      const m = memoryOf(pid);
      if (!m) continue;
      byPid.set(pid, Math.max(byPid.get(pid) ?? 0, m.hwm));
      if (o.killAbove !== undefined && m.rss > o.killAbove && !killed.includes(pid)) {
        killed.push(pid);
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone meanwhile
        }
      }
    }
  };
  sample();
  const timer = setInterval(sample, o.everyMs ?? 10);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return { peak: Math.max(0, ...byPid.values()), byPid, killed };
    },
  };
}

/** Whether a pid is a query process of src/sql/query-process.ts (its command line runs better-sqlite3 with -e). */
export function isQueryProcess(pid: number): boolean {
  try {
    const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return cmd.includes("-e") && cmd.some((a) => a.includes("better-sqlite3"));
  } catch {
    return false;
  }
}
