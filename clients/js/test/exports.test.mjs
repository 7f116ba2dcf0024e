// rendezvous.d.ts against the real module: the names it declares as values
// are exactly the module's exports, and the public members of Client and
// Mesh (methods, getters, and fields set by the constructors) are exactly
// the declared ones. A method added to rendezvous.js without a declaration,
// or a declaration of something that does not exist, fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import * as mod from '../rendezvous.js';

const DTS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'rendezvous.d.ts');

let cached = null;

/** The d.ts as the compiler reads it (once: the DOM library is slow to check). */
function declarations() {
  cached ??= readDeclarations();
  return cached;
}

function readDeclarations() {
  const program = ts.createProgram([DTS], { strict: true, skipDefaultLibCheck: true, lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'], noEmit: true });
  const diagnostics = ts.getPreEmitDiagnostics(program);
  assert.deepEqual(diagnostics.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')), []);
  const checker = program.getTypeChecker();
  const file = program.getSourceFile(DTS);
  const exports = checker.getExportsOfModule(checker.getSymbolAtLocation(file));
  const values = exports.filter((s) => s.flags & ts.SymbolFlags.Value).map((s) => s.name).sort();
  const members = (name) => {
    const symbol = exports.find((s) => s.name === name);
    const type = checker.getDeclaredTypeOfSymbol(symbol);
    return checker.getPropertiesOfType(type).map((p) => p.name).sort();
  };
  return { values, members };
}

/** Public names of an instance: own fields, and prototype methods and getters up the chain. */
function runtimeMembers(instance) {
  const names = new Set(Object.keys(instance));
  for (let proto = Object.getPrototypeOf(instance); proto && proto !== Object.prototype;
    proto = Object.getPrototypeOf(proto)) {
    for (const name of Object.getOwnPropertyNames(proto)) names.add(name);
  }
  names.delete('constructor');
  return [...names].filter((n) => !n.startsWith('_')).sort();
}

test('the declared values are the module exports', () => {
  assert.deepEqual(declarations().values, Object.keys(mod).sort());
});

test('Client and Mesh declare exactly their public members', () => {
  const { members } = declarations();
  const client = new mod.Client('ws://127.0.0.1:9/ws', { name: 'ann' });
  assert.deepEqual(members('Client'), runtimeMembers(client));
  globalThis.RTCPeerConnection ??= class {};
  const mesh = new mod.Mesh(client, {});
  assert.deepEqual(members('Mesh'), runtimeMembers(mesh));
  const error = new mod.RendezvousError('room_full', 'full', { request: 'join_room' });
  const declared = members('RendezvousError');
  for (const field of Object.keys(error)) assert.ok(declared.includes(field), `RendezvousError.${field}`);
});
