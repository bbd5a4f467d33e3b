
// What a dialed string means: `*68<orbit>` parks, `*88<orbit>` retrieves.
export const dialing = {
  checkParams(params) {},

  parse(ctx) {
    const dialed = ctx.dialed.trim();
    if (ctx.dialedIsOrbit) {
      // Transferred to a bare orbit: park there; dialed: retrieve.
      if (ctx.referredBy !== undefined || ctx.hasReplaces) return { tag: 'park-orbit', val: dialed };
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
