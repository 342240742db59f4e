import { renderAsync } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { FONT } from './specs.js';

/**
 * Vega-Lite → Vega → SVG, headless (no canvas: renderer 'none', text measured by estimate). Vega
 * logs a failing dataflow operator and still returns an SVG without the marks: such an error rejects.
 */
export async function specToSvg(spec: object): Promise<string> {
  const vgSpec = compile(spec as TopLevelSpec).spec;
  const errors: unknown[] = [];
  const logger = vega.logger(vega.Error);
  logger.error = (...args: readonly unknown[]) => {
    errors.push(args.at(-1));
    return logger;
  };
  const view = new vega.View(vega.parse(vgSpec), { renderer: 'none', logger });
  try {
    const svg = await view.toSVG();
    if (errors.length > 0) throw errors[0] instanceof Error ? errors[0] : new Error(String(errors[0]));
    return svg;
  } finally {
    view.finalize();
  }
}

/**
 * PNG at 2× for slides; system fonts (DejaVu on Debian) so the text matches the SVG. Async: resvg
 * renders on libuv's thread pool, so several charts rasterise in parallel.
 */
export async function svgToPng(svg: string): Promise<Buffer> {
  const image = await renderAsync(svg, {
    fitTo: { mode: 'zoom', value: 2 },
    font: { loadSystemFonts: true, defaultFontFamily: FONT },
    background: 'white',
  });
  return image.asPng();
}

/**
 * Makes the ids inside one SVG unique to its chart (clip paths, gradients), so that several SVGs
 * inlined in one HTML page never resolve each other's url(#…) references.
 */
export function scopeSvgIds(svg: string, prefix: string): string {
  return svg
    .replace(/\bid="([^"]+)"/g, (_m, id: string) => `id="${prefix}-${id}"`)
    .replace(/url\(#([^)]+)\)/g, (_m, id: string) => `url(#${prefix}-${id})`)
    .replace(/href="#([^"]+)"/g, (_m, id: string) => `href="#${prefix}-${id}"`);
}
