// mulberry32: a small seeded generator in [0, 1), so a seed reproduces a whole test tensor.
// Plain CommonJS so the suites, child processes and workers share this one copy.
'use strict';

/** A generator of numbers in [0, 1), the same sequence for the same seed. */
function generator(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

module.exports = { generator };
