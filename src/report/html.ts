import type { Chart } from './charts.js';
import type { ReportData } from './data.js';
import { escapeHtml } from './escape.js';

export { escapeHtml };

// Private-use characters stand in for backslash-escaped punctuation while emphasis and code are found.
const ESCAPED = /\\([!-/:-@[-`{-~])/g;
const PLACEHOLDER = /\uE000(\d+)\uE001/g;

/** One line of the Markdown subset: `\x` escapes, **bold** and `code`; everything else is text. */
function inline(s: string): string {
  const escaped: string[] = [];
  const marked = s.replace(ESCAPED, (_m, c: string) => `\uE000${escaped.push(c) - 1}\uE001`);
  return escapeHtml(marked)
    .replace(/\*\*([^*]+)\*\*/g, '<strong>$1</strong>')
    .replace(/`([^`]+)`/g, '<code>$1</code>')
    .replace(PLACEHOLDER, (_m, i: string) => escapeHtml(escaped[Number(i)] ?? ''));
}

/**
 * The small Markdown subset summary.md uses: headings, bullets, quotes, bold, code. With `fold`,
 * bullet lists (the per-measure numbers) fold under a summary line so the page stays short on a phone.
 */
export function markdownToHtml(md: string, fold = false): string {
  const out: string[] = [];
  let list = false;
  let code = false;
  for (const line of md.split('\n')) {
    if (line.startsWith('```')) {
      out.push(code ? '</code></pre>' : '<pre><code>');
      code = !code;
      continue;
    }
    if (code) {
      out.push(`${escapeHtml(line)}\n`);
      continue;
    }
    if (list && !line.startsWith('- ')) {
      out.push(fold ? '</ul></details>' : '</ul>');
      list = false;
    }
    const h = /^(#{1,4}) (.*)$/.exec(line);
    if (h) out.push(`<h${(h[1]?.length ?? 1) + 1}>${inline(h[2] ?? '')}</h${(h[1]?.length ?? 1) + 1}>`);
    else if (line.startsWith('- ')) {
      if (!list) out.push(fold ? '<details><summary>the numbers</summary><ul>' : '<ul>');
      list = true;
      out.push(`<li>${inline(line.slice(2))}</li>`);
    } else if (line.startsWith('> ')) out.push(`<blockquote>${inline(line.slice(2))}</blockquote>`);
    else if (line.trim() !== '') out.push(`<p>${inline(line)}</p>`);
  }
  if (list) out.push(fold ? '</ul></details>' : '</ul>');
  return out.join('\n');
}

const CSS = `
*{box-sizing:border-box}
body{font-family:"DejaVu Sans",system-ui,sans-serif;margin:0;color:#222;background:#fafafa;line-height:1.45}
header,main{max-width:1100px;margin:0 auto;padding:0 1rem}
header{padding-top:1rem}
h1{font-size:1.5rem;margin:.5rem 0}
h2{font-size:1.25rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
h3{font-size:1.05rem}
.meta{color:#555;font-size:.9rem}
.warn{background:#fff3cd;border:1px solid #e0c36a;padding:.6rem .8rem;border-radius:4px}
blockquote{background:#fff3cd;border-left:4px solid #e0c36a;margin:.5rem 0;padding:.5rem .8rem}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,520px),1fr));gap:1rem}
figure.chart{margin:0;background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:.5rem;overflow-x:auto}
figure.chart svg{display:block;max-width:100%;height:auto}
figcaption{font-size:.8rem;color:#666;margin-top:.3rem}
figcaption a{color:#4c78a8}
pre{background:#f0f0f0;padding:.6rem;overflow-x:auto;border-radius:4px}
code{font-family:"DejaVu Sans Mono",monospace;font-size:.85em}
table{border-collapse:collapse;font-size:.85rem;width:100%}
td,th{border-bottom:1px solid #e3e3e3;padding:.25rem .4rem;text-align:left;vertical-align:top}
.scroll{overflow-x:auto}
li{margin:.2rem 0}
details{margin:.2rem 0 .8rem}
summary{cursor:pointer;color:#4c78a8;font-size:.9rem}
@media (max-width:600px){body{font-size:15px}h1{font-size:1.2rem}figure.chart{padding:.25rem}}
`;

export interface RenderedChart {
  chart: Chart;
  svg: string;
}

/** One self-contained page: inline CSS and SVG, no script, no network. */
export function reportHtml(data: ReportData, charts: RenderedChart[], conclusionMd: string): string {
  const runs = data.runs
    .map((r) => {
      const facts = r.hostFacts as {
        hostname?: string;
        kernel?: string;
        cpu?: { model?: string; logicalCpus?: number };
        qemu?: { version?: string };
        fio?: { version?: string };
        libvirtHost?: { libvirt?: string };
        firmware?: unknown;
        remote?: unknown;
        unmeasured?: unknown;
        failed?: unknown;
      };
      // A host kvmio could not measure fully says so here, next to the charts it is missing from.
      const missing = Array.isArray(facts.unmeasured)
        ? facts.unmeasured.map((m) => `<strong>${escapeHtml(String(m))}</strong>`)
        : [];
      const bits = [
        `run <code>${escapeHtml(r.id)}</code>`,
        escapeHtml(r.name),
        r.imported ? 'imported fio results (no VM configuration)' : '',
        `status ${escapeHtml(r.status)}`,
        r.accelerator ? `accelerator <strong>${escapeHtml(r.accelerator)}</strong>` : '',
        facts.hostname ? `host ${escapeHtml(facts.hostname)}` : '',
        facts.cpu?.model ? `${escapeHtml(facts.cpu.model)} (${facts.cpu.logicalCpus ?? '?'} CPUs)` : '',
        facts.kernel ? `kernel ${escapeHtml(facts.kernel)}` : '',
        facts.qemu?.version ? `QEMU ${escapeHtml(facts.qemu.version)}` : '',
        facts.fio?.version ? `fio ${escapeHtml(facts.fio.version.replace(/^fio-/, ''))}` : '',
        facts.libvirtHost?.libvirt ? `libvirt ${escapeHtml(facts.libvirtHost.libvirt)}` : '',
        typeof facts.firmware === 'string' ? `guest firmware ${escapeHtml(facts.firmware)}` : '',
        typeof facts.remote === 'string' ? `reached as ${escapeHtml(facts.remote)}` : '',
        typeof facts.failed === 'string' ? `<strong>host failed: ${escapeHtml(facts.failed)}</strong>` : '',
        ...missing,
        r.started ? escapeHtml(r.started) : '',
      ].filter(Boolean);
      return `<li>${bits.join(' · ')}</li>`;
    })
    .join('\n');
  const sections: string[] = [];
  for (const section of [...new Set(charts.map((c) => c.chart.section))]) {
    const figs = charts
      .filter((c) => c.chart.section === section)
      .map(
        (c) =>
          `<figure class="chart" id="chart-${escapeHtml(c.chart.id)}" data-chart="${escapeHtml(c.chart.id)}" data-kind="${escapeHtml(c.chart.kind)}">${c.svg}<figcaption>${escapeHtml(c.chart.title)} — <a href="charts/${encodeURIComponent(c.chart.id)}.svg">SVG</a> · <a href="charts/${encodeURIComponent(c.chart.id)}.png">PNG</a></figcaption></figure>`,
      );
    sections.push(`<h2>${escapeHtml(section)}</h2>\n<div class="charts">\n${figs.join('\n')}\n</div>`);
  }
  const failures =
    data.failures.length === 0
      ? ''
      : `<h2>Failed points</h2><div class="scroll"><table><tr><th>run</th><th>variant</th><th>workload</th><th>step</th><th>rep</th><th>reason</th><th>console (tail)</th></tr>${[
          ...data.failures,
        ]
          // Grouped by variant: a crash that repeats on one variant reads as one finding.
          .sort((a, b) => a.variant.localeCompare(b.variant))
          .map(
            (f) =>
              `<tr><td>${escapeHtml(f.run)}</td><td>${escapeHtml(f.variant)}</td><td>${escapeHtml(f.workload)}</td><td>${escapeHtml(String(f.step ?? ''))}</td><td>${f.rep ?? ''}</td><td>${escapeHtml(f.reason).replace(/\n/g, '<br>')}</td><td><pre>${escapeHtml((f.consoleTail ?? '').split('\n').slice(-8).join('\n'))}</pre></td></tr>`,
          )
          .join('')}</table></div>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>kvmio report — ${escapeHtml(data.runs.map((r) => r.name).join(', '))}</title>
<style>${CSS}</style></head>
<body><header><h1>kvmio report</h1><ul class="meta">${runs}</ul></header>
<main>
<section class="conclusion">${markdownToHtml(conclusionMd.replace(/^# .*\n/, ''), true)}</section>
${sections.join('\n')}
${failures}
<p class="meta">Generated by kvmio. Error bars: 95% confidence intervals over repetitions (Student t).</p>
</main></body></html>
`;
}
