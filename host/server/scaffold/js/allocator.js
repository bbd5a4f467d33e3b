
// Which orbit a call is parked on: the first free candidate.
export const allocator = {
  checkParams(params) {
    // Refuse what you cannot work with (throw "why"): this runs once, at load.
  },

  allocate(req) {
    const free = (o) => o.enabled && o.occupied < o.capacity;
    const reject = (code, reason) => ({ tag: 'rejected', val: { code, reason } });
    if (req.target.tag === 'orbit') {
      // A person who dialed an orbit gets that orbit, or a refusal.
      const number = req.target.val;
      const orbit = req.candidates.find((o) => o.number === number);
      if (orbit === undefined) return reject('not-found', `orbit ${number} does not exist`);
      if (!free(orbit)) return reject('busy', `orbit ${number} is busy`);
      return { tag: 'orbit', val: number };
    }
    const orbit = req.candidates.find(free);
    if (orbit === undefined) return reject('full', 'every orbit is taken');
    return { tag: 'orbit', val: orbit.number };
  },
};
