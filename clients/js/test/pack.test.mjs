// The package as a user gets it: `npm pack`, install the tarball into a
// scratch project (offline: it has no dependencies), import it from Node,
// and type-check TypeScript game code against it with both module
// resolutions a bundling project uses (nodenext, and bundler as in Vite).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const PKG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TSC = path.join(PKG, 'node_modules', 'typescript', 'bin', 'tsc');
const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

const GAME_TS = `import { connect, RendezvousError, type Room, type Welcome } from 'rendezvous-client';
export async function play(url: string): Promise<Room> {
  const client = await connect(url, { name: 'ann' });
  const welcome: Welcome | null = client.welcome;
  if (welcome?.features?.includes('tickets')) await client.request('queue_match', { max_players: 2 });
  client.on('player_joined', ({ player }) => console.log(player.name));
  try {
    return (await client.findMatch({ maxPlayers: 2 })).room;
  } catch (err) {
    if (err instanceof RendezvousError) console.log(err.code);
    throw err;
  }
}
// @ts-expect-error: a typo in an option is caught
connect('ws://x/ws', { nmae: 'ann' });
`;

test('npm pack gives a tarball that installs, imports and type-checks', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rendezvous-pack-'));
  try {
    const [packed] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', dir], PKG));
    const files = packed.files.map((f) => f.path).sort();
    assert.deepEqual(files, ['README.md', 'package.json', 'rendezvous.d.ts', 'rendezvous.js']);

    const project = path.join(dir, 'game');
    run('mkdir', ['-p', project], dir);
    writeFileSync(path.join(project, 'package.json'),
      JSON.stringify({ name: 'game', version: '1.0.0', private: true, type: 'module' }));
    run('npm', ['install', '--offline', '--no-audit', '--no-fund', path.join(dir, packed.filename)], project);

    const installed = path.join(project, 'node_modules', 'rendezvous-client', 'rendezvous.js');
    assert.equal(readFileSync(installed, 'utf8'), readFileSync(path.join(PKG, 'rendezvous.js'), 'utf8'));

    writeFileSync(path.join(project, 'main.mjs'), `import * as rv from 'rendezvous-client';
console.log(JSON.stringify({ names: Object.keys(rv).sort(), version: rv.PROTOCOL_VERSION,
  code: new rv.RendezvousError('room_full').code }));`);
    const out = JSON.parse(run('node', ['main.mjs'], project));
    assert.deepEqual(out, {
      names: ['Client', 'Mesh', 'PROTOCOL_VERSION', 'RendezvousError', 'connect'],
      version: 1,
      code: 'room_full',
    });

    writeFileSync(path.join(project, 'game.ts'), GAME_TS);
    for (const [module, resolution] of [['nodenext', 'nodenext'], ['esnext', 'bundler']]) {
      writeFileSync(path.join(project, 'tsconfig.json'), JSON.stringify({
        compilerOptions: {
          target: 'es2022', module, moduleResolution: resolution, lib: ['es2022', 'dom'],
          strict: true, noEmit: true, types: [],
        },
        files: ['game.ts'],
      }));
      run('node', [TSC, '-p', 'tsconfig.json'], project);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
