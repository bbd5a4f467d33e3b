
// Which orbit a call is parked on: the first free candidate. The host asks
// `pick` (numbered candidates, answered by index: no string per orbit);
// `allocate` is the 0.1.0 form, which the host does not call on this
// plugin, answered the same way.
export const allocator = {
  checkParams(params) {
    // Refuse what you cannot work with (throw "why"): this runs once, at load.
  },

  pick(req) {
    // Candidate i is numbers[i], occupied[i], capacity[i] (0: disabled),
    // typed arrays; an orbit whose number is not a number is in labels.
    const c = req.candidates;
    const labels = new Map(c.labels);
    const numbers = Array.from(c.numbers, (n, i) => labels.get(i) ?? String(n));
    const free = Array.from(c.numbers, (_, i) => c.occupied[i] < c.capacity[i]);
    const chosen = choose(req.target, free, numbers);
    if (typeof chosen !== 'number') return { tag: 'rejected', val: chosen };
    return { tag: 'candidate', val: chosen };
  },

  allocate(req) {
    const free = req.candidates.map((o) => o.enabled && o.occupied < o.capacity);
    const chosen = choose(req.target, free, req.candidates.map((o) => o.number));
    if (typeof chosen !== 'number') return { tag: 'rejected', val: chosen };
    return { tag: 'orbit', val: req.candidates[chosen].number };
  },
};

// The decision: a candidate's index, or a rejection.
function choose(target, free, numbers) {
  if (target.tag === 'orbit') {
    // A person who dialed an orbit gets that orbit, or a refusal.
    const wanted = target.val;
    const i = numbers.indexOf(wanted);
    if (i < 0) return { code: 'not-found', reason: `orbit ${wanted} does not exist` };
    if (!free[i]) return { code: 'busy', reason: `orbit ${wanted} is busy` };
    return i;
  }
  const i = free.indexOf(true);
  if (i < 0) return { code: 'full', reason: 'every orbit is taken' };
  return i;
}
