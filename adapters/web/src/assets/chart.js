// The account dialog's charts, drawn as small inline SVGs by our own code (no chart
// library, nothing from a CDN): credits spent per day as bars, and the balance at the
// end of each day as a line, from one `GET /api/me/usage` report. Every mark carries
// its figures in a <title> (shown on hover) and in data attributes; colours come from
// app.css, so the strict Content Security Policy (no inline styles) holds.

const NS = 'http://www.w3.org/2000/svg';
const W = 560;
const H = 130;
const LEFT = 56; // room for the y labels
const RIGHT = 8;
const TOP = 10;
const BOTTOM = 20; // room for the x labels

function svg(tag, attrs = {}, text) {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  if (text != null) n.textContent = text;
  return n;
}

/** Credits for a label: at most 4 decimals, no trailing zeros. */
export function fmtCredits(x) {
  return String(Number(Number(x).toFixed(4)));
}

/** An empty chart: its frame, y labels for `lo`..`hi`, the first and last dates. */
function frame(title, lo, hi, first, last) {
  const root = svg('svg', {
    viewBox: `0 0 ${W} ${H}`,
    class: 'chart',
    role: 'img',
    'aria-label': title,
  });
  root.append(svg('title', {}, title));
  const bottom = H - BOTTOM;
  root.append(svg('line', { x1: LEFT, y1: bottom, x2: W - RIGHT, y2: bottom, class: 'chart-axis' }));
  root.append(svg('line', { x1: LEFT, y1: TOP, x2: LEFT, y2: bottom, class: 'chart-axis' }));
  root.append(svg('text', { x: LEFT - 6, y: TOP + 4, class: 'chart-label', 'text-anchor': 'end' }, fmtCredits(hi)));
  root.append(svg('text', { x: LEFT - 6, y: bottom, class: 'chart-label', 'text-anchor': 'end' }, fmtCredits(lo)));
  root.append(svg('text', { x: LEFT, y: H - 4, class: 'chart-label' }, first));
  root.append(svg('text', { x: W - RIGHT, y: H - 4, class: 'chart-label', 'text-anchor': 'end' }, last));
  return root;
}

/** Bars of the credits spent each day (`days`: [{date, cost, runs}], oldest first). */
function spentChart(days) {
  const max = Math.max(0, ...days.map((d) => d.cost));
  const hi = max > 0 ? max : 1;
  const root = frame('Credits spent per day', 0, max, days[0].date, days[days.length - 1].date);
  const slot = (W - LEFT - RIGHT) / days.length;
  const bottom = H - BOTTOM;
  days.forEach((d, i) => {
    const h = ((bottom - TOP) * d.cost) / hi;
    const bar = svg('rect', {
      x: (LEFT + i * slot + slot * 0.15).toFixed(1),
      y: (bottom - h).toFixed(1),
      width: Math.max(slot * 0.7, 1).toFixed(1),
      height: h.toFixed(1),
      class: 'chart-bar',
      'data-date': d.date,
      'data-cost': d.cost,
    });
    const replies = d.runs === 1 ? '1 reply' : `${d.runs} replies`;
    bar.append(svg('title', {}, `${d.date}: ${fmtCredits(d.cost)} credits, ${replies}`));
    root.append(bar);
  });
  return root;
}

/** The line of the balance at the end of each day ([{date, balance}], oldest first). */
function balanceChart(points) {
  const values = points.map((p) => p.balance);
  let lo = Math.min(0, ...values);
  let hi = Math.max(0, ...values);
  if (hi === lo) hi = lo + 1;
  const root = frame('Balance at the end of each day', lo, hi, points[0].date, points[points.length - 1].date);
  const bottom = H - BOTTOM;
  const slot = (W - LEFT - RIGHT) / points.length;
  const xy = points.map((p, i) => [
    LEFT + i * slot + slot / 2,
    bottom - ((bottom - TOP) * (p.balance - lo)) / (hi - lo),
  ]);
  root.append(
    svg('polyline', {
      points: xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' '),
      class: 'chart-line',
    }),
  );
  points.forEach((p, i) => {
    const dot = svg('circle', {
      cx: xy[i][0].toFixed(1),
      cy: xy[i][1].toFixed(1),
      r: 2.5,
      class: 'chart-dot',
      'data-date': p.date,
      'data-balance': p.balance,
    });
    dot.append(svg('title', {}, `${p.date}: ${fmtCredits(p.balance)} credits`));
    root.append(dot);
  });
  return root;
}

/** Draws `report` (a `GET /api/me/usage` answer) into `container`. */
export function drawUsage(container, report) {
  const points = report.balance_by_day || [];
  if (points.length === 0) {
    container.replaceChildren();
    return;
  }
  const byDay = new Map((report.by_day || []).map((d) => [d.key, d]));
  const days = points.map((p) => {
    const u = byDay.get(p.date);
    return { date: p.date, cost: u ? u.cost : 0, runs: u ? u.runs : 0 };
  });
  container.replaceChildren(spentChart(days), balanceChart(points));
}
