// A small SVG of the loss curves (train and eval against step), with eval_ex (execution accuracy)
// on a second axis at the right when there is one, with no plotting dependency.

export type Series = [number, number][];

function niceTicks(lo: number, hi: number, n: number): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

export function lossCurveSvg(train: Series, evals: Series, title = "loss", evalEx: Series = []): string {
  const hasEx = evalEx.some((p) => Number.isFinite(p[1]));
  const W = 720,
    H = 400,
    L = 60,
    R = hasEx ? 56 : 20,
    T = 36,
    B = 44;
  const all = [...train, ...evals];
  const maxStep = Math.max(1, ...all.map((p) => p[0]), ...evalEx.map((p) => p[0]));
  const ys = all.map((p) => p[1]).filter(Number.isFinite);
  const yLo = Math.min(0, ...ys);
  const yHi = ys.length ? Math.max(...ys) * 1.05 : 1;
  const x = (s: number) => L + (s / maxStep) * (W - L - R);
  const y = (v: number) => T + (1 - (v - yLo) / (yHi - yLo || 1)) * (H - T - B);
  const path = (s: Series) =>
    s
      .filter((p) => Number.isFinite(p[1]))
      .map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`)
      .join(" ");
  const grid = niceTicks(yLo, yHi, 5)
    .map(
      (v) =>
        `<line x1="${L}" x2="${W - R}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#ddd"/><text x="${L - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${v}</text>`,
    )
    .join("");
  const xt = niceTicks(0, maxStep, 6)
    .map((s) => `<text x="${x(s).toFixed(1)}" y="${H - B + 16}" text-anchor="middle">${s}</text>`)
    .join("");
  // eval_ex: 0-100% on the right axis
  const yEx = (v: number) => T + (1 - v) * (H - T - B);
  const exPath = evalEx
    .filter((p) => Number.isFinite(p[1]))
    .map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${yEx(p[1]).toFixed(1)}`)
    .join(" ");
  const exLayer = hasEx
    ? `<line x1="${W - R}" x2="${W - R}" y1="${T}" y2="${H - B}" stroke="#2ca02c"/>` +
      [0, 0.25, 0.5, 0.75, 1].map((v) => `<text x="${W - R + 6}" y="${(yEx(v) + 4).toFixed(1)}" fill="#2ca02c">${v * 100}%</text>`).join("") +
      `<path d="${exPath}" fill="none" stroke="#2ca02c" stroke-width="1.5"/>` +
      evalEx
        .filter((p) => Number.isFinite(p[1]))
        .map((p) => `<rect x="${(x(p[0]) - 3).toFixed(1)}" y="${(yEx(p[1]) - 3).toFixed(1)}" width="6" height="6" fill="#2ca02c"/>`)
        .join("") +
      `<g transform="translate(${W - R - 150},${T + 42})"><line x1="0" x2="24" y1="0" y2="0" stroke="#2ca02c" stroke-width="2"/><text x="30" y="4">eval_ex (right axis)</text></g>`
    : "";
  const dots = evals
    .filter((p) => Number.isFinite(p[1]))
    .map((p) => `<circle cx="${x(p[0]).toFixed(1)}" cy="${y(p[1]).toFixed(1)}" r="3.5" fill="#d62728"/>`)
    .join("");
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">
<rect width="${W}" height="${H}" fill="#fff"/>
<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${title}</text>
${grid}${xt}
<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#333"/><line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#333"/>
<text x="${W / 2}" y="${H - 8}" text-anchor="middle">optimizer step</text>
<path d="${path(train)}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>
<path d="${path(evals)}" fill="none" stroke="#d62728" stroke-width="1.5" stroke-dasharray="5,3"/>${dots}
<g transform="translate(${W - R - 150},${T + 6})"><line x1="0" x2="24" y1="0" y2="0" stroke="#1f77b4" stroke-width="2"/><text x="30" y="4">train loss</text>
<line x1="0" x2="24" y1="18" y2="18" stroke="#d62728" stroke-width="2" stroke-dasharray="5,3"/><text x="30" y="22">eval loss</text></g>${exLayer}
</svg>
`;
}
