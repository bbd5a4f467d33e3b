// A top-down allocator for callpark, in JavaScript (componentize-js).
//
// Parks in a group or the lot fill from the highest orbit down, so that the
// low numbers people know by heart (701, 702) stay free for a directed
// park (`*68701`) for as long as possible. A directed park lands where it
// was asked, as with the built-in allocator.
//
// Params (`[plugins.params.allocator]`):
//
//   keep_free = "2"   // leave this many of the lowest free orbits to
//                     // directed parks; a group or lot park that would
//                     // need one of them is refused as full (default 0)
import { log } from 'callpark:policy/log@0.1.0';

function keepFree(params) {
  for (const [k, v] of params) {
    if (k === 'keep_free') {
      const n = Number(v);
      if (!/^\d+$/.test(v) || n > 1000) {
        throw `keep_free: \`${v}\` is not a number of orbits (0..1000)`;
      }
      return n;
    }
  }
  return 0;
}

const free = (o) => o.enabled && o.occupied < o.capacity;
const rejected = (code, reason) => ({ tag: 'rejected', val: { code, reason } });

export const allocator = {
  checkParams(params) {
    keepFree(params);
  },

  allocate(req) {
    if (req.target.tag === 'orbit') {
      const wanted = req.target.val;
      const orbit = req.candidates.find((o) => o.number === wanted);
      if (orbit === undefined || !orbit.enabled) {
        return rejected('not-found', `orbit ${wanted} does not exist`);
      }
      if (!free(orbit)) return rejected('busy', `orbit ${wanted} is busy`);
      return { tag: 'orbit', val: wanted };
    }
    let keep;
    try {
      keep = keepFree(req.params);
    } catch (e) {
      // Refused at load; a host that still sends them gets the default.
      keep = 0;
    }
    const open = req.candidates.filter(free);
    if (open.length <= keep) {
      return rejected('full', `no free orbit beyond the ${keep} kept for directed parks`);
    }
    const orbit = open[open.length - 1];
    log('debug', `top-down: orbit ${orbit.number}, ${open.length - 1} left free`);
    return { tag: 'orbit', val: orbit.number };
  },
};
