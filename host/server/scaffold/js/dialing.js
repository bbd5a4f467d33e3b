
// What a dialed string means: `*68<orbit>` parks, `*88<orbit>` retrieves,
// and a bare orbit parks when it is empty or the call was transferred there,
// and retrieves otherwise. The host asks `parseDialed`, with the dialed
// orbit's state; `parse` is the 0.1.0 form.
export const dialing = {
  checkParams(params) {},

  parse(ctx) {
    return dialing.parseDialed(ctx, undefined);
  },

  parseDialed(ctx, orbit) {
    const dialed = ctx.dialed.trim();
    if (ctx.dialedIsOrbit) {
      const transferred = ctx.referredBy !== undefined || ctx.hasReplaces;
      const empty = orbit !== undefined && orbit.occupied === 0;
      if (transferred || empty) return { tag: 'park-orbit', val: dialed };
      return { tag: 'retrieve', val: dialed };
    }
    for (const code of ['*68', '*88']) {
      if (!dialed.startsWith(code)) continue;
      const rest = dialed.slice(code.length);
      // Orbit numbers and names are at most 64 characters.
      if (rest.length > 64) return { tag: 'not-feature' };
      if (code === '*68') {
        return rest === '' ? { tag: 'park-group', val: undefined } : { tag: 'park-orbit', val: rest };
      }
      return { tag: 'retrieve', val: rest === '' ? undefined : rest };
    }
    return { tag: 'not-feature' };
  },
};
