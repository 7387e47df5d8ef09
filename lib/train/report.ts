// The --compare report: one self-contained HTML file (no scripts, no external resources) with
// the loss curves of both optimizers on one inline SVG chart, the steps and training time to the
// target loss, the final losses and the configuration.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';

import { DataError, fsReason } from '../data/errors';
import type { TrainConfig } from './config';
import type { MetricPoint, TrainResult } from './trainer';

export interface CompareRun {
  config: TrainConfig;
  result: TrainResult;
}

const COLORS: Record<string, string> = { muon: '#1f77b4', 'newton-muon': '#d62728', adamw: '#2ca02c' };

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function niceTicks(lo: number, hi: number, n: number): number[] {
  const span = hi - lo || 1;
  const raw = span / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= n) ?? 10 * mag;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

/** The loss chart: solid val loss with markers, faint train loss, a dashed target line. */
export function lossChartSvg(runs: readonly CompareRun[], target: number | null): string {
  const W = 760, H = 420, L = 60, R = 20, T = 20, B = 50;
  const all: MetricPoint[] = runs.flatMap((r) => r.result.metrics);
  const maxStep = Math.max(1, ...all.map((m) => m.step));
  const losses = all.flatMap((m) => [m.train_loss, m.val_loss]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  // Start the y range just above the first evaluations so the interesting part is visible.
  const firstTrain = all.filter((m) => m.train_loss !== null).map((m) => m.train_loss as number);
  let yHi = Math.max(...losses, target ?? -Infinity);
  if (firstTrain.length > 3) yHi = Math.min(yHi, Math.max(...all.filter((m) => m.val_loss !== undefined).map((m) => m.val_loss as number)));
  let yLo = Math.min(...losses, target ?? Infinity);
  if (!Number.isFinite(yLo) || !Number.isFinite(yHi)) { yLo = 0; yHi = 1; }
  const pad = (yHi - yLo) * 0.05 || 0.1;
  yLo -= pad; yHi += pad;
  const x = (s: number) => L + ((W - L - R) * s) / maxStep;
  const y = (v: number) => T + ((H - T - B) * (yHi - Math.min(Math.max(v, yLo), yHi))) / (yHi - yLo);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="loss curves">`);
  parts.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#fff"/>`);
  for (const t of niceTicks(yLo, yHi, 8)) {
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" stroke="#eee"/>`);
    parts.push(`<text x="${L - 6}" y="${(y(t) + 4).toFixed(1)}" font-size="11" text-anchor="end" fill="#444">${t}</text>`);
  }
  for (const s of niceTicks(0, maxStep, 10)) {
    parts.push(`<line x1="${x(s).toFixed(1)}" x2="${x(s).toFixed(1)}" y1="${T}" y2="${H - B}" stroke="#f4f4f4"/>`);
    parts.push(`<text x="${x(s).toFixed(1)}" y="${H - B + 16}" font-size="11" text-anchor="middle" fill="#444">${s}</text>`);
  }
  parts.push(`<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="none" stroke="#888"/>`);
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 10}" font-size="12" text-anchor="middle">step</text>`);
  parts.push(`<text x="14" y="${(T + H - B) / 2}" font-size="12" text-anchor="middle" transform="rotate(-90 14 ${(T + H - B) / 2})">loss</text>`);
  if (target !== null) {
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y(target).toFixed(1)}" y2="${y(target).toFixed(1)}" stroke="#555" stroke-dasharray="6 4"/>`);
    parts.push(`<text x="${W - R - 4}" y="${(y(target) - 4).toFixed(1)}" font-size="11" text-anchor="end" fill="#555">target ${target}</text>`);
  }
  runs.forEach((run, i) => {
    const color = COLORS[run.config.optimizer] ?? '#333';
    const train = run.result.metrics.filter((m) => m.train_loss !== null);
    if (train.length > 0) {
      parts.push(`<polyline fill="none" stroke="${color}" stroke-opacity="0.3" stroke-width="1" points="${train.map((m) => `${x(m.step).toFixed(1)},${y(m.train_loss as number).toFixed(1)}`).join(' ')}"/>`);
    }
    const val = run.result.metrics.filter((m) => m.val_loss !== undefined);
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2.5" points="${val.map((m) => `${x(m.step).toFixed(1)},${y(m.val_loss as number).toFixed(1)}`).join(' ')}"/>`);
    for (const m of val) parts.push(`<circle cx="${x(m.step).toFixed(1)}" cy="${y(m.val_loss as number).toFixed(1)}" r="3" fill="${color}"/>`);
    const ly = T + 18 + i * 36;
    parts.push(`<line x1="${W - R - 190}" x2="${W - R - 160}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2.5"/>`);
    parts.push(`<text x="${W - R - 154}" y="${ly + 4}" font-size="12">${escapeHtml(run.config.optimizer)} val</text>`);
    parts.push(`<line x1="${W - R - 190}" x2="${W - R - 160}" y1="${ly + 16}" y2="${ly + 16}" stroke="${color}" stroke-opacity="0.3"/>`);
    parts.push(`<text x="${W - R - 154}" y="${ly + 20}" font-size="12">${escapeHtml(run.config.optimizer)} train</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

function fmt(v: number | null | undefined, digits = 4): string {
  return v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits);
}

export function compareReportHtml(runs: readonly CompareRun[]): string {
  const target = runs[0]?.config.targetLoss ?? null;
  const rows = runs.map(({ config, result }) => {
    const tps = result.elapsedS > 0 ? Math.round(result.tokens / result.elapsedS).toLocaleString('en-US') : '–';
    return `<tr><td><b style="color:${COLORS[config.optimizer] ?? '#333'}">${escapeHtml(config.optimizer)}</b></td>` +
      `<td>${config.lr}${config.optimizer === 'adamw' ? '' : ` (matrices ${Number((config.lr * config.matrixLrScale).toPrecision(6))})`}</td>` +
      `<td>${result.target === null ? 'not reached' : result.target.step}</td>` +
      `<td>${result.target === null ? '–' : `${result.target.elapsedS.toFixed(1)} s`}</td>` +
      `<td>${fmt(result.initialValLoss)}</td><td>${fmt(result.finalValLoss)}</td><td>${fmt(result.finalTrainLoss)}</td>` +
      `<td>${result.steps}</td><td>${result.elapsedS.toFixed(1)} s</td><td>${tps}</td></tr>`;
  }).join('\n');
  const config = runs[0]?.config;
  const configRows = config === undefined ? '' : Object.entries(config)
    .filter(([k]) => k !== 'optimizer' && k !== 'lr')
    .map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td><code>${escapeHtml(JSON.stringify(v))}</code></td></tr>`).join('\n');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>newton-muon: Muon vs Newton-Muon</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 980px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 4px 10px; text-align: left; font-size: 14px; }
th { background: #f6f6f6; }
code { font-size: 12px; }
.note { color: #555; font-size: 13px; }
</style>
</head>
<body>
<h1>Muon vs Newton-Muon</h1>
<p class="note">Same model, data order and seed; only the optimizer of the block matrices differs (AdamW on the tied embedding in both).
Generated ${escapeHtml(new Date().toISOString())} by newton-muon-train --compare.</p>
${lossChartSvg(runs, target)}
<h2>Results</h2>
<table>
<tr><th>optimizer</th><th>lr</th><th>steps to val loss ${target ?? '–'}</th><th>training time to it</th><th>val loss at step 0</th><th>final val loss</th><th>final train loss</th><th>steps</th><th>training time</th><th>tokens/s</th></tr>
${rows}
</table>
<p class="note">Training time excludes evaluation and checkpoint writing. Val loss: mean cross entropy (nats/token) in fp32 on the first ${config ? config.valTokens.toLocaleString('en-US') : '?'} val tokens (fewer if the val data holds fewer).</p>
<h2>Configuration</h2>
<table>
${configRows}
</table>
</body>
</html>
`;
}

/** Writes the report atomically; returns its path. */
export function writeCompareReport(file: string, runs: readonly CompareRun[]): string {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`);
  try {
    fs.writeFileSync(tmp, compareReportHtml(runs));
    fs.renameSync(tmp, file);
  } catch (error) {
    fs.rmSync(tmp, { force: true });
    throw new DataError(`cannot write '${file}': ${fsReason(error)}`);
  }
  return file;
}
