// Plain text formatting of sizes and durations for messages and progress lines (the lowest layer:
// imports nothing from src/).

/** 2.2 GB, 512.0 MB, 3.4 kB (decimal units, like the hub's pages). */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return "?";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** 1h05m, 3m07s, 42s; "?" while unknown (null, Infinity, NaN). */
export function formatDuration(s: number | null): string {
  if (s === null || !Number.isFinite(s)) return "?";
  const h = Math.floor(s / 3600),
    m = Math.floor((s % 3600) / 60),
    sec = Math.floor(s % 60);
  return h ? `${h}h${String(m).padStart(2, "0")}m` : m ? `${m}m${String(sec).padStart(2, "0")}s` : `${sec}s`;
}
