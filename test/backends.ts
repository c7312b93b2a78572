// The backends every suite runs against: js always, native whenever the binary loads.
// CI sets BATCHNORM_REQUIRE_NATIVE=1 so a broken build cannot silently test only js.
import { type Backend, js, native, nativeLoadError } from '../index';

if (process.env.BATCHNORM_REQUIRE_NATIVE === '1' && !native) {
  throw new Error(`native backend required but did not load: ${nativeLoadError?.message}`);
}

export const backends: Backend[] = native ? [js, native] : [js];
