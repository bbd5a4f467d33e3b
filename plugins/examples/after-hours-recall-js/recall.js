// An after-hours recall plan for callpark, in JavaScript (componentize-js).
//
// In office hours an unretrieved call rings its parker, then the fallback,
// as the built-in plan does. Outside them it rings the after-hours number
// (the answering service, an on-call phone) and nobody else, so a parker
// who went home is not rung at all.
//
// Params (`[plugins.params.recall]`, over the `[recall]` settings the host
// lays under them: `ring_time`, `fallback`, `ring_pattern`):
//
//   office_hours = "08:00-18:00"     // local time, start-end
//   utc_offset   = "60"              // minutes east of UTC
//   weekdays     = "1-5"             // ISO days (1 = Monday) with office hours
//   after_hours  = "sip:night@pbx.example.com"
import { log } from 'callpark:policy/log@0.1.0';

function param(params, key) {
  for (const [k, v] of params) {
    if (k === key) return v;
  }
  return undefined;
}

function minutes(text) {
  const m = /^(\d{1,2}):(\d{2})$/.exec(text.trim());
  if (!m || Number(m[1]) > 23 || Number(m[2]) > 59) return undefined;
  return Number(m[1]) * 60 + Number(m[2]);
}

function duration(text, fallbackMs) {
  if (text === undefined || text === '') return fallbackMs;
  const m = /^(\d+)(ms|s|m)$/.exec(text.trim());
  if (!m) return undefined;
  const scale = { ms: 1, s: 1000, m: 60000 }[m[2]];
  return Number(m[1]) * scale;
}

// Throws a message when a param is wrong; answers the settings otherwise.
function settings(params) {
  const hours = (param(params, 'office_hours') ?? '08:00-18:00').split('-');
  const open = hours.length === 2 ? minutes(hours[0]) : undefined;
  const close = hours.length === 2 ? minutes(hours[1]) : undefined;
  if (open === undefined || close === undefined || open >= close) {
    throw `office_hours: \`${param(params, 'office_hours')}\` is not like 08:00-18:00`;
  }
  const offset = Number(param(params, 'utc_offset') ?? '0');
  if (!Number.isInteger(offset) || Math.abs(offset) > 14 * 60) {
    throw `utc_offset: \`${param(params, 'utc_offset')}\` is not minutes east of UTC`;
  }
  const days = (param(params, 'weekdays') ?? '1-5').split('-').map(Number);
  if (days.length !== 2 || days.some((d) => !Number.isInteger(d) || d < 1 || d > 7)) {
    throw `weekdays: \`${param(params, 'weekdays')}\` is not like 1-5`;
  }
  const afterHours = param(params, 'after_hours') ?? '';
  if (afterHours !== '' && !/^(sips?|tel):/.test(afterHours)) {
    throw `after_hours: \`${afterHours}\` is not a sip:, sips: or tel: URI`;
  }
  const ringMs = duration(param(params, 'ring_time'), 30000);
  if (ringMs === undefined || ringMs < 1000 || ringMs > 600000) {
    throw `ring_time: \`${param(params, 'ring_time')}\` is not 1s..10m`;
  }
  return {
    open,
    close,
    offset,
    days,
    afterHours,
    ringMs,
    fallback: param(params, 'fallback') ?? '',
    ringPattern: param(params, 'ring_pattern') ?? 'normal',
  };
}

const ALERT_INFO = {
  'long-long': '<http://127.0.0.1/Bellcore-dr2>',
  'short-short-long': '<http://127.0.0.1/Bellcore-dr3>',
  'short-long-short': '<http://127.0.0.1/Bellcore-dr4>',
};

function inOfficeHours(s, nowMs) {
  const local = new Date(Number(nowMs) + s.offset * 60000);
  const day = local.getUTCDay() === 0 ? 7 : local.getUTCDay();
  const minute = local.getUTCHours() * 60 + local.getUTCMinutes();
  return day >= s.days[0] && day <= s.days[1] && minute >= s.open && minute < s.close;
}

export const recall = {
  checkParams(params) {
    settings(params);
  },

  plan(call) {
    let s;
    try {
      s = settings(call.params);
    } catch (e) {
      // Refused at load; a host that still sends them gets the defaults.
      s = settings([]);
    }
    const display = `Park ${call.orbit}: ${call.parkedDisplay || call.parkedUri}`.slice(0, 128);
    const step = (target) => ({
      target,
      ringMs: s.ringMs,
      alertInfo: ALERT_INFO[s.ringPattern],
      display,
    });
    const steps = [];
    if (inOfficeHours(s, call.nowMs)) {
      if (call.parker !== '') steps.push(step(call.parker));
      if (s.fallback !== '') steps.push(step(s.fallback));
    } else {
      log('debug', `orbit ${call.orbit}: after hours`);
      const target = s.afterHours || s.fallback;
      if (target !== '') steps.push(step(target));
    }
    return { steps, end: { tag: 'disconnect' } };
  },
};
