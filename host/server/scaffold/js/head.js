// {{name}}: a callpark policy plugin (world `{{world}}` of
// callpark:policy@0.2.0). Every input a decision needs arrives as a
// parameter, and the answer is checked by the host: see wit/policy.wit.
// Records have camelCase fields, u64 values are BigInts, variants are
// { tag, val }; throw a string from checkParams to refuse params.
import { log } from 'callpark:policy/log@0.2.0';

// The value of a parameter, if the configuration sets it.
function param(params, key) {
  for (const [k, v] of params) {
    if (k === key) return v;
  }
  return undefined;
}
