
// Where an unretrieved call rings: its parker, then the `fallback` param.
export const recall = {
  checkParams(params) {
    const fallback = param(params, 'fallback') ?? '';
    if (fallback !== '' && !/^(sips?|tel):/.test(fallback)) {
      throw `fallback \`${fallback}\` is not a sip:, sips: or tel: URI`;
    }
  },

  plan(call) {
    const step = (target) => ({ target, ringMs: 30000, display: `Park ${call.orbit}` });
    const steps = [];
    if (call.parker !== '') steps.push(step(call.parker));
    const fallback = param(call.params, 'fallback');
    if (fallback) steps.push(step(fallback));
    return { steps, end: { tag: 'disconnect' } };
  },
};
