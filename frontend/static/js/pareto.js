// Pareto front of (time saving, accuracy delta): both higher is better.

/** Indices of the points no other point beats on both axes, ordered by x. O(n log n). */
export function paretoFront(points, x = (p) => p.x, y = (p) => p.y) {
  const idx = points.map((_, i) => i).filter((i) => Number.isFinite(x(points[i])) && Number.isFinite(y(points[i])));
  // Sweep from the largest x down; a point is on the front when its y beats every y seen so far.
  idx.sort((a, b) => x(points[b]) - x(points[a]) || y(points[b]) - y(points[a]));
  const front = [];
  let bestY = -Infinity;
  for (const i of idx) {
    if (y(points[i]) > bestY) { front.push(i); bestY = y(points[i]); }
  }
  return front.reverse();
}
