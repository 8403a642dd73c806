/**
 * The applier's Lambda bundle holds the applier's side only: built with esbuild as the stack
 * builds it (cdk/replica.ts, applierBundling), its metafile lists every module it holds, and
 * none may come from the publisher's side (COPY reading and encoding, pg-copy-streams), the
 * operator tools (installer, bootstrap, redrive) or dev tooling.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { applierBundling } from '../../cdk/replica.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

async function applierBundle(): Promise<{ inputs: string[]; bytes: number }> {
  const settings = applierBundling();
  const result = await build({
    entryPoints: [join(ROOT, 'functions/applier/handler.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: settings.target,
    minify: settings.minify,
    external: settings.externalModules,
    mainFields: settings.mainFields,
    banner: { js: settings.banner },
    metafile: true,
    write: false,
    outfile: 'index.mjs',
    logLevel: 'silent',
  });
  const bytes = result.outputFiles.reduce((sum, f) => sum + f.contents.byteLength, 0);
  return { inputs: Object.keys(result.metafile.inputs), bytes };
}

describe('applier bundle', () => {
  it('holds the apply core and none of the publisher side, the operator tools or dev tooling', async () => {
    const { inputs, bytes } = await applierBundle();
    // It is the real applier: the apply core and the envelope are in it.
    expect(inputs).toContain('functions/core/replica/apply.ts');
    expect(inputs).toContain('functions/core/wire/envelope.ts');
    const forbidden = inputs.filter((i) =>
      /(^|\/)node_modules\/pg-copy-streams\/|^functions\/core\/source\/|^functions\/publisher\/|^functions\/ops\/|^functions\/cli\/|^local\/|^testing\/|^sql\//.test(i),
    );
    expect(forbidden).toEqual([]);
    expect(bytes).toBeGreaterThan(0);
  });
});
