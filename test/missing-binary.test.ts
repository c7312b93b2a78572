// The advice a user gets when no native binary loads: install the platform package where one
// is published (package.json's napi.targets), build from source where none is.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { missingBinaryAdvice, platformOfTarget } from '../src/native';

const targets: string[] = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')).napi.targets;

describe('a platform without a native binary', () => {
  it('maps the release targets to the platform packages in npm/', () => {
    expect(targets.map(platformOfTarget)).toEqual([
      'linux-x64-gnu',
      'linux-x64-musl',
      'linux-arm64-gnu',
      'darwin-x64',
      'darwin-arm64',
      'win32-x64-msvc',
    ]);
    for (const platform of targets.map(platformOfTarget)) {
      const manifest = JSON.parse(readFileSync(join(__dirname, '..', 'npm', platform, 'package.json'), 'utf8'));
      expect(manifest.name).toBe(`batchnorm-${platform}`);
    }
  });

  it('a published platform is told to install its package', () => {
    const advice = missingBinaryAdvice('linux-arm64-gnu', targets.map(platformOfTarget));
    expect(advice).toContain('install batchnorm-linux-arm64-gnu');
  });

  it('an unpublished one is told how to build, not to install a package that does not exist', () => {
    const advice = missingBinaryAdvice('freebsd-x64', targets.map(platformOfTarget));
    expect(advice).not.toContain('install batchnorm-freebsd-x64');
    expect(advice).toContain('There is no prebuilt binary for freebsd-x64 (prebuilt: linux-x64-gnu, linux-x64-musl');
    expect(advice).toContain('npm run build:native');
    expect(advice).toContain('BATCHNORM_NATIVE_PATH');
  });
});
