
// Told of park events, after the fact: when the `notify` param names a SIP
// URI, a MESSAGE there for every parked call. Nothing here delays a call.
export const events = {
  checkParams(params) {
    const notify = param(params, 'notify');
    if (notify !== undefined && !/^sips?:/.test(notify)) {
      throw `notify \`${notify}\` is not a sip: or sips: URI`;
    }
  },

  observe(event) {
    const notify = param(event.params, 'notify');
    if (event.kind === 'parked' && notify !== undefined) {
      const text = `Call from ${event.parkedUri} parked on ${event.orbit}`;
      return [{ tag: 'send-message', val: { to: notify, text } }];
    }
    return [];
  },
};
